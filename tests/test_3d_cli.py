"""dav2-run in 3D, through the command line: point clouds with intrinsics, metres from anchors, the
Rerun recording; and the refusals (a relative model without a scale, bad intrinsics, anchors off the
image, a live viewer without a display) as one `error:` line with nothing written."""

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import IMAGES, VIDEO, export
from dav2 import processing
from dav2.cli import run_main

pytestmark = pytest.mark.slow  # dav2-run in subprocesses

PHOTO = IMAGES / "demo08.jpg"  # 640 x 425
SIZE = "196"  # network short side: small, so each run is quick


def dav2_run(*args):
    return CliRunner().invoke(run_main, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def assert_one_error(result, message: str) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def metric_onnx(vits_metric_checkpoint, tmp_path_factory):
    """A dynamic metric artifact traced at 196 (the seeded metric weights, max_depth 20)."""
    folder = tmp_path_factory.mktemp("metric")
    return export(vits_metric_checkpoint, folder, "--kind", "metric", "--onnx", "--height", "196", "--width", "196")


def depth_of(model, source, tmp_path, *extra) -> np.ndarray:
    """The run's float32 depth (--format npy), for comparisons."""
    out = tmp_path / f"depth{len(list(tmp_path.glob('depth*.npy')))}.npy"
    ok(dav2_run("--model", model, "--source", source, "--input-size", SIZE, "--format", "npy", "--save", out, *extra))
    return np.load(out)


def read_ply(path):
    plyfile = pytest.importorskip("plyfile")
    vertex = plyfile.PlyData.read(str(path))["vertex"]
    points = np.stack([vertex[axis] for axis in "xyz"], axis=1).astype(np.float64)
    colors = np.stack([vertex[c] for c in ("red", "green", "blue")], axis=1)
    return points, colors


@pytest.mark.parametrize(
    "spec,k",
    [
        ("600,600,320,240", (600.0, 600.0, 320.0, 240.0)),
        ("1200,1100,639.5,424.5,1280,850", (600.0, 550.0, 319.5, 212.0)),  # calibrated at 2x: scaled to the frame
    ],
)
def test_ply_from_a_metric_model_reprojects_onto_the_image(metric_onnx, tmp_path, spec, k):
    pytest.importorskip("plyfile")
    out = tmp_path / "room.ply"
    args = ["--model", metric_onnx, "--source", PHOTO, "--input-size", SIZE, "--format", "ply"]
    ok(dav2_run(*args, "--intrinsics", spec, "--save", out))
    depth = depth_of(metric_onnx, PHOTO, tmp_path)
    points, colors = read_ply(out)
    fx, fy, cx, cy = k
    x, y, z = points.T
    u, v = x * fx / z + cx, y * fy / z + cy
    pixels = np.round(u).astype(int), np.round(v).astype(int)
    assert len(points) == int((depth > 0).sum()) == 640 * 425
    assert np.abs(u - pixels[0]).max() < 0.5 and np.abs(v - pixels[1]).max() < 0.5  # each point on its pixel
    np.testing.assert_allclose(z, depth[pixels[1], pixels[0]], rtol=1e-6)  # its depth is the depth map's
    image = cv2.imread(str(PHOTO))
    np.testing.assert_array_equal(colors, image[pixels[1], pixels[0]][:, ::-1])


def test_ply_for_a_folder_and_a_video_is_one_file_per_frame(metric_onnx, tmp_path):
    pytest.importorskip("plyfile")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("demo08.jpg", "demo17.jpg"):
        shutil.copy(IMAGES / name, photos / name)
    result = ok(
        dav2_run(
            "--model",
            metric_onnx,
            "--source",
            photos,
            "--input-size",
            SIZE,
            "--format",
            "ply",
            "--save",
            tmp_path / "clouds",
        )
    )
    assert sorted(p.name for p in (tmp_path / "clouds").iterdir()) == ["demo08.ply", "demo17.ply"]
    assert result.stderr.count("assuming upstream's default camera (fx 470.4") == 1  # said once, not per file
    args = ["--model", metric_onnx, "--source", VIDEO, "--input-size", SIZE, "--format", "ply", "--max-frames", 2]
    ok(dav2_run(*args, "--intrinsics", "300,300,160,90", "--save", tmp_path / "frames"))
    assert len(list((tmp_path / "frames").glob("*.ply"))) == 2


def write_anchors(path, rows) -> None:
    path.write_text("u,v,metres\n# measured with a tape\n" + "".join(f"{u},{v},{m!r}\n" for u, v, m in rows))


def test_anchors_make_a_relative_model_metric(dynamic_onnx, tmp_path):
    """Anchors that follow 1/z = s*d + t exactly: the written metres match them and the whole map is 1/(s*d + t)."""
    disparity = depth_of(dynamic_onnx, PHOTO, tmp_path)
    lo, hi = float(disparity.min()), float(disparity.max())
    scale, shift = 0.4 / (hi - lo), 0.1 - 0.4 * lo / (hi - lo)  # metres from 10 m (farthest) to 2 m (nearest)
    pixels = [(20, 30), (600, 40), (320, 212), (100, 400), (500, 380), (250, 150)]
    anchors = [(u, v, float(1 / (scale * disparity[v, u] + shift))) for u, v in pixels]
    write_anchors(tmp_path / "tape.csv", anchors)
    out = tmp_path / "d.npy"
    args = ["--model", dynamic_onnx, "--source", PHOTO, "--input-size", SIZE, "--format", "npy", "--save", out]
    result = ok(dav2_run(*args, "--anchors", tmp_path / "tape.csv", "--json"))
    metres = np.load(out)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["unit"] == "m" and summary["anchors"]["anchors"] == 6
    assert result.stderr.count("anchors: scale") == 1
    residual = summary["anchors"]["rms_m"]
    assert residual < 1e-3
    for u, v, m in anchors:
        assert abs(metres[v, u] - m) <= residual + 1e-4 * m
    np.testing.assert_allclose(metres, 1 / (scale * disparity + shift), rtol=1e-4)


def test_anchored_png16_and_ply_are_in_metres(dynamic_onnx, tmp_path):
    pytest.importorskip("plyfile")
    disparity = depth_of(dynamic_onnx, PHOTO, tmp_path)
    write_anchors(
        tmp_path / "a.csv",
        [(u, v, float(1 / (0.05 * disparity[v, u] + 0.1))) for u, v in [(10, 10), (600, 400), (320, 200)]],
    )
    base = ["--model", dynamic_onnx, "--source", PHOTO, "--input-size", SIZE, "--anchors", tmp_path / "a.csv"]
    ok(dav2_run(*base, "--format", "png16", "--save", tmp_path / "d.png"))
    _, info = processing.decode_png16((tmp_path / "d.png").read_bytes())
    assert info["unit"] == "m"
    ok(dav2_run(*base, "--format", "ply", "--save", tmp_path / "d.ply"))
    points, _ = read_ply(tmp_path / "d.ply")
    assert len(points) > 0 and points[:, 2].max() <= 10.0 + 1e-3


def test_viewer_save_records_frames_and_points(metric_onnx, tmp_path):
    rr = pytest.importorskip("rerun")
    pytest.importorskip("rerun.chunk")
    path = tmp_path / "run.rrd"
    args = ["--model", metric_onnx, "--source", VIDEO, "--input-size", SIZE, "--max-frames", 2]
    result = ok(dav2_run(*args, "--intrinsics", "300,300,160,90", "--viewer-save", path))
    assert "neither --save nor --show" not in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["run.rrd"]
    entities = {c.entity_path for c in rr.chunk.RrdReader(path).stream().collect().stream()}
    assert {"/world/camera/image", "/depth", "/world/camera", "/world/points"} <= entities


# -- refusals: one line, nothing written ----------------------------------------------------------


def test_relative_model_without_anchors_gives_no_point_cloud(dynamic_onnx, tmp_path):
    pytest.importorskip("plyfile")
    result = dav2_run("--model", dynamic_onnx, "--source", PHOTO, "--format", "ply", "--save", tmp_path / "x.ply")
    assert_one_error(result, "give --anchors FILE")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "spec,message",
    [
        ("600,600", "4 or 6 numbers, got 2"),
        ("600,0,320,240", "focal lengths must be positive"),
        ("camera.yaml", "neither fx,fy,cx,cy nor an existing calibration file"),
        ("600,600,320,240,640,480", "different aspect ratio"),  # 4:3 calibration, 640x425 photo
    ],
)
def test_bad_intrinsics_are_one_line(metric_onnx, tmp_path, spec, message):
    out = tmp_path / "out"
    args = ["--model", metric_onnx, "--source", PHOTO, "--input-size", SIZE, "--format", "ply", "--save", out]
    assert_one_error(dav2_run(*args, "--intrinsics", spec), message)
    assert not out.exists() or not list(out.iterdir())


def test_anchors_outside_the_image_are_one_line(dynamic_onnx, tmp_path):
    write_anchors(tmp_path / "a.csv", [(10, 10, 2.0), (700, 10, 5.0)])
    out = tmp_path / "d.npy"
    args = ["--model", dynamic_onnx, "--source", PHOTO, "--input-size", SIZE, "--format", "npy", "--save", out]
    assert_one_error(
        dav2_run(*args, "--anchors", tmp_path / "a.csv"), "anchor (700, 10) lies outside the 640x425 image"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_unreadable_anchors_are_one_line(dynamic_onnx, tmp_path):
    (tmp_path / "a.csv").write_text("u,v,metres\n1,2,three\n")
    assert_one_error(dav2_run("--model", dynamic_onnx, "--anchors", tmp_path / "a.csv"), "a.csv:2: expected u,v,metres")
    assert_one_error(dav2_run("--model", dynamic_onnx, "--anchors", tmp_path / "none.csv"), "cannot read anchors")


def test_live_viewer_without_a_display_points_to_viewer_save(metric_onnx, tmp_path, monkeypatch):
    pytest.importorskip("rerun")
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "d.png"
    result = dav2_run("--model", metric_onnx, "--source", PHOTO, "--viewer", "--save", out)
    assert_one_error(result, "--viewer needs a display")
    assert "--viewer-save run.rrd" in result.stderr and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "module,args,extra",
    [
        ("plyfile", ["--format", "ply", "--save", "x.ply"], "pip install 'dav2[3d]'"),
        ("rerun", ["--viewer-save", "x.rrd"], "pip install 'dav2[viewer]'"),
    ],
)
def test_a_missing_extra_is_named(metric_onnx, tmp_path, module, args, extra):
    """Without plyfile / rerun-sdk: one line naming the extra, before the run (as tests/test_extras.py)."""
    code = (
        f"import sys\nsys.modules[{module!r}] = None\nfrom dav2.cli import run_main\n"
        f"run_main({['--model', str(metric_onnx), '--source', str(PHOTO), *args]!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1 and extra in errors[0], done.stderr
    assert not list(tmp_path.iterdir())
