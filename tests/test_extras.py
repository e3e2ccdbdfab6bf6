"""`pip install dav2` without extras: every command works or names, in one line, the extra it needs.

Each case runs the command in a fresh interpreter in which the optional libraries are made
unimportable (`sys.modules[name] = None` makes `import name` raise ImportError), as on a
machine where they were never installed.
"""

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IMAGES

EXTRAS = ("torch", "onnx", "openvino", "nncf", "gradio", "tensorrt", "pycuda")


def run_without(missing: tuple[str, ...], command: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        f"for name in {list(missing)!r}: sys.modules[name] = None\n"
        f"from dav2.cli import {command}\n"
        f"{command}({[str(a) for a in args]!r})\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.mark.parametrize(
    "command, args, needs, extra",
    [
        ("export_main", ["--onnx"], "dav2-export needs torch", "dav2[export]"),
        ("export_main", ["--openvino", "fp16"], "dav2-export needs torch", "dav2[export]"),
        ("bench_main", ["--sizes", "196"], "dav2-bench needs torch", "dav2[export]"),
        ("app_main", ["--models", "models"], "dav2-app needs gradio", "dav2[app]"),
    ],
)
def test_commands_that_need_an_extra_say_which(tmp_path, command, args, needs, extra):
    line = one_error_line(run_without(EXTRAS, command, args, tmp_path))
    assert needs in line and extra in line
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.slow  # a full run in a fresh interpreter
def test_the_runtime_runs_an_onnx_artifact_without_any_extra(dynamic_onnx, tmp_path):
    out = tmp_path / "depth.npy"
    args = ["--model", dynamic_onnx, "--format", "npy", "--save", out, "--json"]
    done = run_without(EXTRAS, "run_main", args, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["frames"] == 1
    assert out.stat().st_size > 0


@pytest.mark.slow  # a full run in a fresh interpreter
def test_eval_runs_without_torch(dynamic_onnx, tmp_path):
    args = ["dense", "--images", IMAGES, "--model", dynamic_onnx, "--reference", dynamic_onnx, "--input-size", "56"]
    done = run_without(EXTRAS, "eval_main", [*args, "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["abs_rel"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow  # a full run in a fresh interpreter
def test_openvino_int8_without_nncf_fails_before_any_work(vits_checkpoint, tmp_path):
    """The preflight checks NNCF: no export, no conversion, nothing written."""
    out = tmp_path / "models"
    args = ["--checkpoint", vits_checkpoint, "--openvino", "int8", "--calib-dir", IMAGES, "--output", out]
    done = run_without(("nncf",), "export_main", args, tmp_path)
    line = one_error_line(done)
    assert "OpenVINO INT8 (NNCF quantization) needs nncf" in line and "dav2[openvino]" in line
    assert "exporting" not in done.stderr and not out.exists()


def setup_extras() -> dict[str, list[str]]:
    """setup.py's EXTRAS, read without running setup()."""
    return runpy.run_path(str(Path(__file__).resolve().parents[1] / "setup.py"), run_name="dav2_setup")["EXTRAS"]


def test_every_extra_a_message_names_exists():
    """An install hint that names `dav2[x]` names an extra setup.py has."""
    root = Path(__file__).resolve().parents[1] / "dav2"
    named = {
        extra
        for path in root.rglob("*.py")
        for group in re.findall(r"dav2\[([a-z0-9,-]+)\]", path.read_text())
        for extra in group.split(",")
    }
    assert named and named <= set(setup_extras()), named - set(setup_extras())


def test_install_hints_say_how_to_get_the_right_build():
    from dav2.optional import TORCH_CPU_INDEX, install_hint

    assert TORCH_CPU_INDEX in install_hint("torch") and "dav2[export]" in install_hint("torch")
    for module in ("tensorrt", "cuda.bindings"):
        hint = install_hint(module)
        assert ("dav2[trt-cu12]" in hint and "dav2[trt-cu13]" in hint and "dav2[jetson]" in hint) or (
            "nvidia-smi says" in hint  # a machine with an NVIDIA driver gets the matching extra alone
        )
    assert "Python >= 3.11" in install_hint("modelopt")


def test_python_version_limits_are_markers_not_failures():
    """Model Optimizer (ONNX Runtime >= 1.32) and rerun-sdk have no Python 3.10 wheels: their extras
    say so with markers, and no extra requires pycuda (a source package that needs CUDA headers)."""
    extras = setup_extras()
    assert all("python_version >= '3.11'" in req for req in extras["modelopt"])
    assert any(req.startswith("onnxruntime>=1.32;") for req in extras["workstation"])
    assert [req for req in extras["viewer"] if req.startswith("rerun-sdk")][0].endswith("python_version >= '3.11'")
    assert not [req for reqs in extras.values() for req in reqs if req.startswith("pycuda")]
    assert any(req.startswith("cuda-bindings>=12") for req in extras["jetson"])
    assert not [req for req in extras["jetson"] if req.startswith("tensorrt")]  # JetPack's own
