"""dav2-calibrate: a metric scale fitted once, stored in a derived artifact's sidecar, applied by
every run of it without flags.

The RGB-D set is made here from the model's own disparity d on three photographs: measured
metres = 1 / (SCALE * d + SHIFT), written as millimetre PNGs, with a few pixels made wrong on
purpose. A right fit must find SCALE and SHIFT despite them, and dav2-run on the calibrated
artifact must then give those metres.
"""

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import IMAGES
from dav2.cli import run_main
from dav2.cli.calibrate import calibrate_main
from dav2.errors import Dav2Error
from dav2.evaluation.predict import ModelPredictor
from dav2.metadata import ArtifactMetadata, sidecar_path

pytestmark = pytest.mark.slow  # calibration runs

SIZE = "56"
SCALE, SHIFT = 0.2, 0.05  # metres = 1 / (SCALE * d + SHIFT): 1 to 20 m for the seeded model's d
PHOTOS = ("demo02.jpg", "demo03.jpg", "demo04.jpg")


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def one_error(result) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def disparity(model, image) -> np.ndarray:
    with ModelPredictor(model, IMAGES, int(SIZE)) as predict:
        return predict(image)


@pytest.fixture(scope="module")
def rgbd(dynamic_onnx, tmp_path_factory):
    """rgb/ and depth/ (png-mm) whose metres are 1 / (SCALE d + SHIFT), 2% of pixels 3x too far."""
    folder = tmp_path_factory.mktemp("rgbd")
    (folder / "rgb").mkdir()
    (folder / "depth").mkdir()
    rng = np.random.default_rng(1)
    for index, photo in enumerate(PHOTOS):
        shutil.copy(IMAGES / photo, folder / "rgb" / f"{index:03d}.jpg")
        metres = 1.0 / (SCALE * disparity(dynamic_onnx, photo).astype(np.float64) + SHIFT)
        wrong = rng.random(metres.shape) < 0.02
        metres[wrong] *= 3.0  # e.g. a depth sensor's reflections
        millimetres = np.clip(np.round(metres * 1000), 0, 65535).astype(np.uint16)
        assert cv2.imwrite(str(folder / "depth" / f"{index:03d}.png"), millimetres)
    return folder


@pytest.fixture(scope="module")
def calibrated(dynamic_onnx, rgbd, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibrated")
    result = ok(invoke(calibrate_main, "--model", dynamic_onnx, "--rgbd", rgbd, "--input-size", SIZE,
                       "--intrinsics", "500,500,320,240,640,480", "--output", out, "--json"))  # fmt: skip
    return out / dynamic_onnx.name, result


def test_the_fit_finds_the_scale_despite_wrong_pixels(calibrated):
    artifact, result = calibrated
    record = ArtifactMetadata.read(artifact).metric_calibration
    assert record.method == "rgbd" and record.frames == 2 and record.points == 2000
    assert record.scale == pytest.approx(SCALE, rel=2e-3) and record.shift == pytest.approx(SHIFT, rel=2e-2)
    assert record.inliers < record.points  # the wrong pixels lost their weight
    assert record.heldout_points > 10_000 and record.heldout_abs_rel < 0.05  # the wrong 2% alone cost about 0.013
    assert record.heldout_abs_rel_before is None  # a relative model has no metres before
    assert record.camera == {"fx": 500, "fy": 500, "cx": 320, "cy": 240, "width": 640, "height": 480}
    printed = json.loads(result.stdout.splitlines()[-2])
    assert printed["metric_calibration"]["scale"] == record.scale
    assert "held out (002.jpg" in result.stderr


def test_the_calibrated_artifact_gives_metres_without_flags(dynamic_onnx, calibrated, tmp_path):
    artifact, _ = calibrated
    assert artifact.read_bytes() == dynamic_onnx.read_bytes()
    original = ArtifactMetadata.read(dynamic_onnx)
    assert original.metric_calibration is None  # the source artifact is untouched
    common = ["--source", IMAGES / "demo05.jpg", "--input-size", SIZE, "--format", "npy"]
    raw = ok(invoke(run_main, "--model", dynamic_onnx, *common, "--save", tmp_path / "d.npy"))
    run = ok(invoke(run_main, "--model", artifact, *common, "--save", tmp_path / "m.npy"))
    assert "metres from the calibration stored in" not in raw.stderr
    assert run.stderr.count("metres from the calibration stored in") == 1
    record = ArtifactMetadata.read(artifact).metric_calibration
    expected = 1.0 / (record.scale * np.load(tmp_path / "d.npy").astype(np.float64) + record.shift)
    np.testing.assert_allclose(np.load(tmp_path / "m.npy"), expected, rtol=1e-5)
    # a point cloud needs metres: the calibrated relative model gives them with no --anchors
    ok(invoke(run_main, "--model", artifact, *common[:4], "--format", "ply", "--save", tmp_path / "p.ply"))
    assert "a relative model gives disparity" in one_error(
        invoke(run_main, "--model", dynamic_onnx, *common[:4], "--format", "ply", "--save", tmp_path / "q.ply")
    )


def test_anchors_given_at_run_time_replace_the_stored_calibration(calibrated, tmp_path):
    artifact, _ = calibrated
    anchors = tmp_path / "a.csv"
    anchors.write_text("u,v,metres\n10,10,2\n300,200,5\n600,400,9\n")
    args = ["--model", artifact, "--source", IMAGES / "demo05.jpg", "--input-size", SIZE, "--anchors", anchors]
    result = invoke(run_main, *args, "--format", "npy", "--save", tmp_path / "a.npy")
    assert "--anchors replace the calibration stored in" in result.stderr
    assert "metres from the calibration stored" not in result.stderr


def test_anchor_files_calibrate_too(dynamic_onnx, tmp_path):
    """One image and its anchors: every third anchor is held out to check the fit."""
    d = disparity(dynamic_onnx, "demo06.jpg")
    rng = np.random.default_rng(2)
    rows = ["u,v,metres"]
    for _ in range(30):
        u, v = int(rng.integers(0, d.shape[1])), int(rng.integers(0, d.shape[0]))
        rows.append(f"{u},{v},{1.0 / (SCALE * float(d[v, u]) + SHIFT):.6f}")
    csv = tmp_path / "tape.csv"
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    args = ["--model", dynamic_onnx, "--anchors", IMAGES / "demo06.jpg", csv, "--input-size", SIZE, "--output", out]
    ok(invoke(calibrate_main, *args))
    record = ArtifactMetadata.read(out / dynamic_onnx.name).metric_calibration
    assert record.method == "anchors" and record.points == 20 and record.heldout_points == 10
    assert record.scale == pytest.approx(SCALE, rel=1e-4) and record.heldout_abs_rel < 1e-4


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give either --anchors"),
        (["--rgbd", "RGBD", "--anchors", "x.jpg", "x.csv"], "give either --anchors"),
        (["--rgbd", "MODEL_DIR"], "needs the folders rgb/ and depth/"),
        (["--rgbd", "RGBD", "--min-depth", "0"], "--min-depth"),
    ],
)
def test_bad_requests_are_one_line_and_write_nothing(dynamic_onnx, rgbd, tmp_path, args, message):
    args = [str(rgbd) if a == "RGBD" else str(dynamic_onnx.parent) if a == "MODEL_DIR" else a for a in args]
    out = tmp_path / "out"
    assert message in one_error(invoke(calibrate_main, "--model", dynamic_onnx, *args, "--output", out))
    assert not out.exists() or not list(out.iterdir())


def test_the_model_folder_is_not_an_output(dynamic_onnx, rgbd):
    line = one_error(invoke(calibrate_main, "--model", dynamic_onnx, "--rgbd", rgbd, "--output", dynamic_onnx.parent))
    assert "the model's own folder" in line


@pytest.mark.parametrize(
    "change, message",
    [
        ({"scale": -1.0}, "'metric_calibration.scale' must be positive"),
        ({"scale": "2"}, "'metric_calibration.scale' must be a number"),
        ({"method": "guess"}, "must be anchors or rgbd"),
    ],
)
def test_a_tampered_calibration_is_refused_in_one_line(calibrated, tmp_path, change, message):
    artifact, _ = calibrated
    copy = tmp_path / artifact.name
    shutil.copy(artifact, copy)
    data = json.loads(sidecar_path(artifact).read_text())
    data["metric_calibration"].update(change)
    sidecar_path(copy).write_text(json.dumps(data))
    with pytest.raises(Dav2Error, match=message):
        ArtifactMetadata.read(copy)


@pytest.mark.shared("depth-gt")
def test_a_metric_model_calibrated_on_nyu_improves_on_the_held_out_frame(vits_metric_checkpoint, tmp_path):
    """The seeded metric model's metres are far off; a scale fitted on two NYU frames brings the
    third one's AbsRel down (benchmarks/results/calibrate_depth_gt.md has the numbers)."""
    from conftest import SHARED, export

    model = export(vits_metric_checkpoint, tmp_path / "m", "--kind", "metric", "--onnx", "--dynamic")
    nyu = SHARED / "depth-gt" / "metric3d" / "nyu_demo"
    ok(invoke(calibrate_main, "--model", model, "--rgbd", nyu, "--input-size", "140", "--output", tmp_path / "c"))
    record = ArtifactMetadata.read(tmp_path / "c" / model.name).metric_calibration
    assert record.heldout_abs_rel < 0.5 * record.heldout_abs_rel_before


def test_dav2_batch_stages_write_the_calibrated_metres(dynamic_onnx, calibrated, tmp_path):
    """dav2-batch's stages (run here without Ray, as tests/test_batch_stages.py does) apply the stored
    calibration as dav2-run does: the same .npy bytes."""
    from test_batch_stages import run_stages

    artifact, _ = calibrated
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(IMAGES / "demo05.jpg", photos / "demo05.jpg")
    record = ArtifactMetadata.read(artifact).metric_calibration
    run_stages(artifact, photos, tmp_path / "out", "npy", calibration=record, kind="relative")
    ok(invoke(run_main, "--model", artifact, "--source", photos / "demo05.jpg", "--input-size", "56",
              "--preprocess", "exact", "--format", "npy", "--save", tmp_path / "run.npy"))  # fmt: skip
    assert (tmp_path / "out" / "demo05.npy").read_bytes() == (tmp_path / "run.npy").read_bytes()
