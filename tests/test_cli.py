"""dav2-run and dav2-export as a user runs them: real photographs, a real video, bad input."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import IMAGES, VIDEO
from dav2 import processing
from dav2.cli import run_main
from dav2.runtime.backends import open_backend


def dav2_run(*args: str):
    return CliRunner().invoke(run_main, [str(a) for a in args])


def test_image_to_colour_png(dynamic_onnx, tmp_path):
    out = tmp_path / "depth.png"
    result = dav2_run("--model", dynamic_onnx, "--source", IMAGES / "demo08.jpg", "--save", out, "--input-size", 266)
    assert result.exit_code == 0, result.output
    picture = cv2.imread(str(out))
    assert picture.shape == (425, 640, 3)
    assert len({tuple(p) for p in picture.reshape(-1, 3)[::97]}) > 10  # a colour map, not a flat image


@pytest.mark.slow
def test_npy_is_upstreams_infer_image_result(dynamic_onnx, tmp_path):
    out = tmp_path / "d.npy"
    image = cv2.imread(str(IMAGES / "demo08.jpg"))
    result = dav2_run(
        "--model",
        dynamic_onnx,
        "--input-size",
        700,
        "--source",
        IMAGES / "demo08.jpg",
        "--format",
        "npy",
        "--save",
        out,
    )
    assert result.exit_code == 0, result.output
    depth = np.load(out)
    assert depth.dtype == np.float32 and depth.shape == image.shape[:2]
    backend = open_backend(dynamic_onnx)
    tensor = processing.preprocess(image, 700)
    assert tensor.shape[2:] == (700, 1050)
    np.testing.assert_allclose(depth, processing.postprocess(backend.infer(tensor), image.shape[:2]), atol=1e-5)


def test_folder_to_png16_skips_non_images(dynamic_onnx, tmp_path):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    shutil.copy(IMAGES / "demo08.jpg", photos / "a.jpg")
    shutil.copy(IMAGES / "demo17.jpg", photos / "sub" / "b.jpg")
    (photos / "notes.txt").write_text("not an image")
    (photos / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    result = dav2_run(
        "--model", dynamic_onnx, "--source", photos, "--save", out, "--format", "png16", "--input-size", 196, "--json"
    )
    assert result.exit_code == 0, result.output
    assert "skipping 1 file(s)" in result.stderr and "broken.png" in result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "sub/b.png"]
    depth, info = processing.decode_png16((out / "a.png").read_bytes())
    assert depth.shape == (425, 640) and info["unit"] == "disparity"
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 2
    assert {"read", "preprocess", "inference", "postprocess", "write"} <= set(summary["stages"])
    assert summary["inference_fps"] > 0 and summary["end_to_end_fps"] > 0


@pytest.mark.parametrize("fmt,width", [("color", 320), ("side-by-side", 320 + 10 + 320)])
def test_video_to_depth_video(dynamic_onnx, tmp_path, fmt, width):
    out = tmp_path / "depth.mp4"
    result = dav2_run(
        "--model",
        dynamic_onnx,
        "--source",
        VIDEO,
        "--save",
        out,
        "--format",
        fmt,
        "--input-size",
        154,
        "--max-frames",
        4,
    )
    assert result.exit_code == 0, result.output
    video = cv2.VideoCapture(str(out))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    assert int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == width
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.slow
def test_static_model_on_other_aspect_stretches(static_onnx, tmp_path):
    result = dav2_run(
        "--model",
        static_onnx,
        "--source",
        IMAGES / "demo13.jpg",
        "--save",
        tmp_path / "d.npy",
        "--format",
        "npy",
        "--input-size",
        364,
    )
    assert result.exit_code == 0, result.output
    assert "--input-size is ignored" in result.stderr
    assert np.load(tmp_path / "d.npy").shape == cv2.imread(str(IMAGES / "demo13.jpg")).shape[:2]


@pytest.mark.slow
def test_sample_scene_is_the_default_source(static_onnx, tmp_path):
    result = dav2_run("--model", static_onnx, "--save", tmp_path / "sample.png", "--format", "gray")
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(tmp_path / "sample.png")).shape == (480, 640, 3)


def test_torch_backend_agrees_with_onnx(vits_checkpoint, dynamic_onnx, tmp_path):
    for model, name in ((vits_checkpoint, "torch.npy"), (dynamic_onnx, "onnx.npy")):
        result = dav2_run(
            "--model",
            model,
            "--source",
            IMAGES / "demo08.jpg",
            "--format",
            "npy",
            "--save",
            tmp_path / name,
            "--input-size",
            266,
        )
        assert result.exit_code == 0, result.output
    assert np.abs(np.load(tmp_path / "torch.npy") - np.load(tmp_path / "onnx.npy")).max() < 1e-3


# --- bad input: one line, non-zero exit, nothing half-written ---------------------------------


def assert_user_error(result, message: str):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert message in result.stderr


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "source not found"),
        (b"", "cannot read"),
        (b"\xff\xd8\xff garbage", "cannot read"),
    ],
)
def test_bad_image(dynamic_onnx, tmp_path, content, message):
    image = tmp_path / "photo.jpg"
    if content is not None:
        image.write_bytes(content)
    out = tmp_path / "depth.png"
    assert_user_error(dav2_run("--model", dynamic_onnx, "--source", image, "--save", out), message)
    assert not out.exists()


@pytest.mark.parametrize("flavour", ["grey", "rgba", "16-bit"])
def test_grey_rgba_and_16_bit_images_are_handled(dynamic_onnx, tmp_path, flavour):
    image = cv2.imread(str(IMAGES / "demo08.jpg"))
    converted = {
        "grey": cv2.cvtColor(image, cv2.COLOR_BGR2GRAY),
        "rgba": cv2.cvtColor(image, cv2.COLOR_BGR2BGRA),
        "16-bit": image.astype(np.uint16) * 257,
    }[flavour]
    cv2.imwrite(str(tmp_path / "in.png"), converted)
    result = dav2_run(
        "--model",
        dynamic_onnx,
        "--source",
        tmp_path / "in.png",
        "--save",
        tmp_path / "d.npy",
        "--format",
        "npy",
        "--input-size",
        154,
    )
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "d.npy").shape == (425, 640)


def test_corrupt_onnx_model(tmp_path):
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not a protobuf at all")
    assert_user_error(dav2_run("--model", model), "not a loadable ONNX model")


def test_missing_model(tmp_path):
    assert_user_error(dav2_run("--model", tmp_path / "none.onnx"), "model file not found")


def test_camera_that_cannot_be_opened(dynamic_onnx):
    assert_user_error(dav2_run("--model", dynamic_onnx, "--source", "97"), "could not open camera index 97")


def test_show_without_a_display_is_one_error(dynamic_onnx, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert_user_error(dav2_run("--model", dynamic_onnx, "--show"), "--show needs a display")


def test_empty_folder(dynamic_onnx, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_user_error(dav2_run("--model", dynamic_onnx, "--source", tmp_path / "empty"), "no images found")


def test_format_and_extension_disagree(dynamic_onnx, tmp_path):
    result = dav2_run(
        "--model", dynamic_onnx, "--source", IMAGES / "demo08.jpg", "--save", tmp_path / "d.png", "--format", "npy"
    )
    assert_user_error(result, "writes .npy files")


def frames_in(path) -> int:
    """How many frames OpenCV actually decodes (not what the container header claims)."""
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count


def test_truncated_video_is_reported_and_kept(dynamic_onnx, tmp_path):
    """A clip cut short (an interrupted copy): its header promises 48 frames, fewer arrive. The run
    says so and keeps the depth video of the frames that did arrive."""
    # AVI keeps its header at the front, so a cut file still opens (a cut .mp4 loses its index and does not)
    whole = tmp_path / "whole.avi"
    source = cv2.VideoCapture(str(VIDEO))
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"mp4v"), 12, (320, 180))
    while True:
        ok, frame = source.read()
        if not ok:
            break
        writer.write(frame)
    writer.release()
    data = whole.read_bytes()
    truncated = tmp_path / "cut.avi"
    truncated.write_bytes(data[: len(data) // 2])
    arriving = frames_in(truncated)
    assert 5 < arriving < 48 and int(cv2.VideoCapture(str(truncated)).get(cv2.CAP_PROP_FRAME_COUNT)) == 48

    out = tmp_path / "depth.mp4"
    result = dav2_run("--model", dynamic_onnx, "--source", truncated, "--save", out, "--input-size", 112)
    assert result.exit_code == 0, result.output
    assert f"ended after {arriving} of 48 frames" in result.stderr
    assert out.is_file() and frames_in(out) == arriving
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_WIDTH)) == 320
    assert not list(tmp_path.glob(".*tmp*"))


def test_existing_output_survives_a_failed_run(dynamic_onnx, tmp_path):
    out = tmp_path / "depth.png"
    out.write_bytes(b"previous result")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    assert_user_error(dav2_run("--model", dynamic_onnx, "--source", bad, "--save", out), "cannot read")
    assert out.read_bytes() == b"previous result"


@pytest.mark.slow
def test_installed_command_runs_like_the_readme(static_onnx, tmp_path):
    """The console script itself, in a subprocess: exit code, files, the JSON line on stdout."""
    exe = shutil.which("dav2-run")
    command = [exe] if exe else [sys.executable, "-c", "from dav2.cli import run_main; run_main()"]
    done = subprocess.run(
        command + ["--model", str(static_onnx), "--save", str(tmp_path / "depth.png"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["frames"] == 1
    assert (tmp_path / "depth.png").is_file()
