"""The import rules of docs/ARCHITECTURE.md, checked.

DESIGN rule 1: the runtime runs artifacts without torch (a Jetson or CPU box has none). The
base modules (vocabulary, errors, files, console, optional) import nothing heavy, and the
model code never reaches into the runtime, export or CLI.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

RUNTIME_MODULES = [
    "dav2.vocabulary",
    "dav2.optional",
    "dav2.metadata",
    "dav2.processing",
    "dav2.media",
    "dav2.cli",
    "dav2.cli.export",  # a command module may be imported without its heavy libraries
    "dav2.export.context",
    "dav2.export.target",
    "dav2.export.tensorrt",  # `dav2-export --trt --from` on a Jetson without PyTorch
    "dav2.runtime.pipeline",
    "dav2.runtime.session",
    "dav2.runtime.sources",
    "dav2.runtime.sinks",
    "dav2.runtime.fps",
    "dav2.runtime.backends",
    "dav2.runtime.backends.onnxruntime",
    "dav2.runtime.backends.openvino",
    "dav2.runtime.backends.tensorrt",
    "dav2.runtime.viewer",  # the 3D view on a Jetson: rerun-sdk and numpy, no PyTorch
    "dav2.geometry",
    "dav2.geometry.intrinsics",
    "dav2.geometry.pointcloud",
    "dav2.geometry.anchors",
    "dav2.ros2.messages",  # the bag's and the node's message builders: numpy and OpenCV
]


def imported_after(modules: list[str]) -> set[str]:
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_runtime_modules_do_not_import_torch():
    loaded = imported_after(RUNTIME_MODULES)
    assert "torch" not in loaded
    imported_where_used = {"openvino", "tensorrt", "gradio", "ray", "modelopt", "rerun", "plyfile", "rosbags", "rclpy"}
    assert not imported_where_used & loaded


@pytest.mark.parametrize("module", ["dav2.vocabulary", "dav2.errors", "dav2.files", "dav2.console", "dav2.optional"])
def test_base_modules_import_only_the_standard_library(module):
    loaded = imported_after([module])
    assert not {"numpy", "cv2", "click", "onnxruntime"} & loaded
    assert {m for m in loaded if m.startswith("dav2.")} <= {module, "dav2.errors", "dav2.vocabulary"}


def dav2_imports(path: Path) -> set[str]:
    """The dav2 modules a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dav2"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("dav2"))
    return found


def test_models_never_reach_into_runtime_export_or_cli():
    for path in (ROOT / "dav2" / "models").glob("*.py"):
        bad = {m for m in dav2_imports(path) if m.startswith(("dav2.runtime", "dav2.export", "dav2.cli"))}
        assert not bad, f"{path.name} imports {bad}"


def test_geometry_never_reaches_into_models_runtime_export_or_cli():
    """dav2.geometry is shared by the runtime and the evaluation: numpy and OpenCV, never torch or the runtime."""
    for path in (ROOT / "dav2" / "geometry").glob("*.py"):
        bad = {
            m for m in dav2_imports(path) if m.startswith(("dav2.models", "dav2.runtime", "dav2.export", "dav2.cli"))
        }
        assert not bad, f"{path.name} imports {bad}"


def test_only_the_cli_imports_the_cli():
    for path in (ROOT / "dav2").rglob("*.py"):
        if path.parent.name == "cli":
            continue
        bad = {m for m in dav2_imports(path) if m.startswith("dav2.cli")}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
