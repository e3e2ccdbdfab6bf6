"""Every console command works from the folder that holds a clone (issue 19, part 3).

After `git clone ... ~/dav2 && pip install -e ~/dav2`, a command started in `~` has a folder
named `dav2` (the clone: setup.py and the `dav2/` package inside) in its working directory. A
child `python -m ...` puts the working directory first on its import path, finds that folder
as a namespace package before the editable install's finder is asked, and fails with
`No module named dav2.benchmarks.case`.

The commands here run as users run them: the installed console scripts in a subprocess, from
a temporary folder holding `dav2` (a link to this repository), with this repository importable
the way `pip install -e` makes it importable: a finder consulted after the path finder (a
sitecustomize on PYTHONPATH installs it; PYTHONPATH=<repository> would hide the fault, since a
regular package anywhere on the path beats a namespace one). Each does real work at tiny sizes,
or prints its help where real work would need a server.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IMAGES, ROOT

pytestmark = pytest.mark.slow  # dav2-run in subprocesses

BIN = Path(sys.executable).parent

# what `pip install -e` installs (setuptools' __editable___*_finder): dav2 from this repository,
# asked after the path finder, so a `dav2` folder in the working directory is seen first
EDITABLE_FINDER = """
import importlib.machinery
import importlib.util
import sys

PACKAGE = {package!r}


class EditableFinder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "dav2":
            return None
        return importlib.util.spec_from_file_location(
            name, PACKAGE + "/__init__.py", submodule_search_locations=[PACKAGE]
        )


sys.meta_path.insert(sys.meta_path.index(importlib.machinery.PathFinder) + 1, EditableFinder)
"""


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """The folder that holds a clone: `dav2` here is this repository (setup.py, dav2/, tests/)."""
    folder = tmp_path_factory.mktemp("home")
    (folder / "dav2").symlink_to(ROOT, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> dict:
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(EDITABLE_FINDER.format(package=str(ROOT / "dav2")))
    return {**os.environ, "PYTHONPATH": str(site)}


def command(parent: Path, environment: dict, name: str, *args: str, timeout: int = 600):
    script = BIN / name
    if not script.is_file():
        pytest.skip(f"{name} is not installed beside {sys.executable} (pip install -e .)")
    done = subprocess.run(
        [str(script), *map(str, args)], cwd=parent, env=environment, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{name} {' '.join(map(str, args))}\n{done.stdout}\n{done.stderr}"
    return done


def test_the_fault_is_reproduced_here(parent, environment):
    """The setting itself: a plain `python -m dav2...` from the parent folder imports the clone
    folder as a namespace package (the commands below must not)."""
    done = subprocess.run(
        [sys.executable, "-c", "import dav2; print(getattr(dav2, '__file__', None))"],
        cwd=parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "None", done.stderr


@pytest.fixture(scope="module")
def exported(parent, environment, vits_checkpoint) -> Path:
    """dav2-export from the parent folder, to a relative output folder."""
    done = command(parent, environment, "dav2-export", "--checkpoint", vits_checkpoint, "--onnx",
                   "--height", "56", "--width", "56", "--output", "models")  # fmt: skip
    artifact = parent / "models" / "depth_anything_v2_vits_56x56.onnx"
    assert (parent / done.stdout.strip().splitlines()[-1]).resolve() == artifact.resolve()
    return artifact


def test_export_and_run(parent, environment, exported):
    assert exported.is_file() and (parent / "models" / f"{exported.name}.json").is_file()
    done = command(parent, environment, "dav2-run", "--model", "models/" + exported.name,
                   "--source", "dav2/tests/data/images/demo02.jpg", "--save", "depth.png", "--json")  # fmt: skip
    assert json.loads(done.stdout.strip().splitlines()[-1])["frames"] == 1
    assert (parent / "depth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval(parent, environment, exported):
    done = command(parent, environment, "dav2-eval", "dense", "--images", IMAGES, "--model", exported,
                   "--reference", exported, "--json")  # fmt: skip
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["abs_rel"] == pytest.approx(0.0, abs=1e-6)


def test_bench_measures_in_its_child_processes(parent, environment, vits_checkpoint):
    """A real case: PyTorch FP32 and ONNX Runtime FP32 at 56, each measured in a child process."""
    done = command(parent, environment, "dav2-bench", "--checkpoint", vits_checkpoint, "--sizes", "56",
                   "--backends", "onnxruntime", "--precisions", "fp32", "--seconds", "0.2", "--min-runs", "2",
                   "--warmup", "1", "--cache-dir", "bench-cache", "--save", "bench")  # fmt: skip
    saved = json.loads(next((parent / "bench").glob("*.json")).read_text())
    rows = {(row["backend"], row["precision"], row["size"]): row for row in saved["cases"]}
    for key in [("torch", "fp32", 56), ("onnxruntime", "fp32", 56)]:
        assert rows[key]["status"] == "ok", rows[key].get("reason")
        assert rows[key]["latency_ms"]["median"] > 0
    assert rows[("onnxruntime", "fp32", 56)]["accuracy"]["abs_rel"] < 1e-3
    assert "| onnxruntime | fp32 | 56 |" in done.stdout


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("dav2-bench", ["pick", "--help"], "Usage: dav2-bench pick"),
        ("dav2-app", ["--help"], "Usage: dav2-app"),
        ("dav2-batch", ["--help"], "Usage: dav2-batch"),
    ],
)
def test_help(parent, environment, name, args, expected):
    assert expected in command(parent, environment, name, *args).stdout


def test_batch_on_ray_workers(parent, environment, exported):
    """Ray's workers start in the driver's working directory: they must import dav2 too."""
    pytest.importorskip("ray.data", reason="dav2-batch needs dav2[batch]")
    done = command(parent, environment, "dav2-batch", "--model", "models/" + exported.name,
                   "--input", "dav2/tests/data/images", "--output", "batch", "--json")  # fmt: skip
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["failed"] == 0 and summary["processed"] == len(list(IMAGES.glob("*.jpg")))
    assert len(list((parent / "batch").glob("*.png"))) == summary["processed"]
