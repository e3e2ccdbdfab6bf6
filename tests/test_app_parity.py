"""dav2-app's files are dav2-run's files, byte for byte, with a real model and the real command.

The app is meant to be a front end of dav2-run, not a second runtime: for the same model and
upload it must write exactly what `dav2-run --save` writes. So these tests load a real ONNX
export (seeded vits traced at 56x56, so its default input size keeps them quick) into the app's
service and run the installed `dav2-run` console script in a subprocess on the same inputs.

A photo is preprocessed "exact" by both; a video "float32" (dav2-run's choice for sequences),
which the app once lost by unpacking the run plan by hand and running videos "exact".
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IMAGES, VIDEO
from dav2 import app
from dav2.app import IMAGE_FILES, DepthService

pytestmark = pytest.mark.slow  # an export, then the app against dav2-run

PHOTO = IMAGES / "demo05.jpg"
VIDEO_FRAMES = 5  # the app's MAX_VIDEO_FRAMES for the test; dav2-run --max-frames


@pytest.fixture(scope="module")
def small_model(dynamic_onnx_56) -> Path:
    """A dynamic ONNX export whose own input size is 56 (the app has no --input-size), alone in its folder."""
    return dynamic_onnx_56


def dav2_run(*args) -> None:
    """The installed console script, as a user types it."""
    exe = shutil.which("dav2-run")
    command = [exe] if exe else [sys.executable, "-c", "from dav2.cli import run_main; run_main()"]
    done = subprocess.run(command + [str(arg) for arg in args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def service(small_model):
    with DepthService(small_model.parent) as depth_service:
        yield depth_service


def test_photo_files_equal_dav2_runs_byte_for_byte(service, small_model, tmp_path):
    result = service.image_outputs(str(PHOTO), str(small_model))
    written = {Path(path).name: Path(path).read_bytes() for path in result.files}
    assert len(written) == len(IMAGE_FILES) == 4
    for fmt, suffix in IMAGE_FILES.items():
        target = tmp_path / f"{PHOTO.stem}{suffix}"
        dav2_run("--model", small_model, "--source", PHOTO, "--save", target, "--format", fmt)
        assert target.read_bytes() == written[target.name], fmt


def test_video_equals_dav2_runs_byte_for_byte(service, small_model, tmp_path, monkeypatch):
    monkeypatch.setattr(app, "MAX_VIDEO_FRAMES", VIDEO_FRAMES)
    video, timing = service.video_outputs(str(VIDEO), str(small_model))
    assert timing.startswith(f"{VIDEO_FRAMES} frames")
    target = tmp_path / "depth.mp4"
    dav2_run("--model", small_model, "--source", VIDEO, "--save", target, "--format", "side-by-side",
             "--max-frames", VIDEO_FRAMES)  # fmt: skip
    assert Path(video).read_bytes() == target.read_bytes()
