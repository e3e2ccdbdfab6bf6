"""DESIGN rule 1: the runtime runs artifacts without torch (a Jetson or CPU box has none)."""

import subprocess
import sys

RUNTIME_MODULES = [
    "dav2.processing",
    "dav2.cli",
    "dav2.runtime.pipeline",
    "dav2.runtime.sources",
    "dav2.runtime.sinks",
    "dav2.runtime.fps",
    "dav2.runtime.backends",
    "dav2.runtime.backends.onnxruntime",
    "dav2.metadata",
]


def test_runtime_modules_do_not_import_torch():
    code = f"import sys\nfor m in {RUNTIME_MODULES!r}: __import__(m)\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
