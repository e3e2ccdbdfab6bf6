"""dav2-eval: ground-truth readers, dense metrics, DA-2K scoring, run as a user runs them.

The built-in sample scene has exact depth (dav2.sample): written in each encoding it must read
back as the same metres, used as its own prediction it must score perfectly, and known
perturbations must score what arithmetic says. The optional ../shared/depth-gt (DAV2_SHARED)
adds real measured depth in five encodings (tests marked `shared`).
"""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import SHARED
from dav2.cli import eval_main
from dav2.errors import Dav2Error
from dav2.evaluation.da2k import da2k_accuracy, da2k_agreement
from dav2.evaluation.dense import evaluate_dense
from dav2.evaluation.groundtruth import read_depth
from dav2.evaluation.predict import ModelPredictor
from dav2.sample import render_sample

GT = SHARED / "depth-gt"
NYU = GT / "metric3d" / "nyu_demo"
KITTI = GT / "metric3d" / "kitti_demo"
measured_depth = pytest.mark.shared("depth-gt")


def sample_scene(h: int = 240, w: int = 320, flip: bool = False):
    """(BGR image, metres, valid): the sample scene, with a band of pixels marked invalid as sensors leave them."""
    image, depth = render_sample(h, w)
    if flip:
        image, depth = image[:, ::-1].copy(), depth[:, ::-1].copy()
    valid = np.ones(depth.shape, bool)
    valid[: h // 10] = False  # no reading on the top rows
    return image, depth.astype(np.float32), valid


def write_encoded(path, depth, valid, fmt):
    """The sample depth in one dataset encoding (see dav2.evaluation.groundtruth)."""
    if fmt == "nyu-raw":
        raw = np.where(valid, np.round(1092.5 - 351.3 / depth.astype(np.float64)), 2047).astype("<u2")
        path.write_bytes(b"P5\n# raw Kinect\n%d %d\n65535\n" % (depth.shape[1], depth.shape[0]) + raw.tobytes())
        return 1092.5 - raw.astype(np.float64)  # what the reader divides by
    scale = {"png-mm": 1000.0, "png-kitti": 256.0, "png-tum": 5000.0, "sun": 1000.0}[fmt]
    raw = np.where(valid, np.round(depth.astype(np.float64) * scale), 0).astype(np.uint32)
    if fmt == "sun":
        stored = ((raw << 3) | (raw >> 13)) & 0xFFFF  # the inverse of the reader's rotation
    else:
        stored = raw
    assert cv2.imwrite(str(path), stored.astype(np.uint16))
    return raw / scale


@pytest.mark.parametrize("fmt", ["png-mm", "png-kitti", "png-tum", "sun", "nyu-raw"])
def test_every_encoding_reads_back_the_metres_written(tmp_path, fmt):
    _, depth, valid = sample_scene()
    path = tmp_path / ("depth.pgm" if fmt == "nyu-raw" else "depth.png")
    stored = write_encoded(path, depth, valid, fmt)
    metres, read_valid = read_depth(path, fmt)
    assert metres.dtype == np.float32 and metres.shape == depth.shape
    assert (read_valid == valid).all()
    assert (metres[~valid] == 0).all()
    if fmt == "nyu-raw":
        np.testing.assert_allclose(metres[valid], 351.3 / stored[valid], rtol=1e-6)
        # the raw value is rounded to whole units: at most half a unit, i.e. z -> 351.3 / (351.3 / z - 0.5)
        z = depth[valid].astype(np.float64)
        assert (np.abs(metres[valid] - z) <= 351.3 / (351.3 / z - 0.5) - z + 1e-5).all()
    else:
        np.testing.assert_allclose(metres[valid], stored[valid], rtol=1e-6)
        quantum = 1 / {"png-mm": 1000.0, "png-kitti": 256.0, "png-tum": 5000.0, "sun": 1000.0}[fmt]
        assert np.abs(metres[valid] - depth[valid]).max() <= quantum / 2 + 1e-5


def test_unknown_format_and_8_bit_files_are_refused(tmp_path):
    with pytest.raises(Dav2Error, match="unknown depth format"):
        read_depth(tmp_path / "x.png", "exr")
    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(Dav2Error, match="16-bit"):
        read_depth(tmp_path / "photo.png", "png-mm")


# -- readers ---------------------------------------------------------------------------------


@measured_depth
@pytest.mark.parametrize(
    "path, fmt, low, high",
    [
        (NYU / "depth" / "sync_depth_00000.png", "png-mm", 0.5, 10.0),
        (KITTI / "depth" / "0000000005.png", "png-kitti", 1.0, 90.0),
        (GT / "open3d" / "other_formats" / "TUM_depth.png", "png-tum", 0.3, 10.0),
        (GT / "open3d" / "other_formats" / "SUN_depth.png", "sun", 0.3, 10.0),
        (GT / "open3d" / "other_formats" / "NYU_depth.pgm", "nyu-raw", 0.3, 10.0),
        (GT / "promptda" / "arkit_depth.png", "png-mm", 0.5, 5.0),
    ],
)
def test_readers_give_plausible_metres(path, fmt, low, high):
    metres, valid = read_depth(path, fmt)
    assert metres.dtype == np.float32 and valid.dtype == bool and metres.shape == valid.shape
    assert 0.05 < valid.mean() <= 1.0
    assert low <= np.median(metres[valid]) <= high
    assert metres[valid].min() > 0 and metres[valid].max() < 120


@measured_depth
def test_formats_follow_their_definitions():
    raw = cv2.imread(str(KITTI / "depth" / "0000000005.png"), cv2.IMREAD_UNCHANGED)
    metres, valid = read_depth(KITTI / "depth" / "0000000005.png", "png-kitti")
    np.testing.assert_allclose(metres, raw / 256.0, rtol=1e-6)
    assert (valid == (raw > 0)).all()
    sun_raw = cv2.imread(str(GT / "open3d" / "other_formats" / "SUN_depth.png"), cv2.IMREAD_UNCHANGED)
    sun, _ = read_depth(GT / "open3d" / "other_formats" / "SUN_depth.png", "sun")
    rotated = ((sun_raw.astype(np.uint32) >> 3) | (sun_raw.astype(np.uint32) << 13)) & 0xFFFF
    np.testing.assert_allclose(sun, rotated / 1000.0, rtol=1e-6)
    kinect, kinect_valid = read_depth(GT / "open3d" / "other_formats" / "NYU_depth.pgm", "nyu-raw")
    assert not kinect_valid[0, 0] and kinect[0, 0] == 0.0  # the file starts with 2047: no reading
    with pytest.raises(Dav2Error, match="16-bit"):
        read_depth(NYU / "rgb" / "rgb_00000.jpg", "png-mm")


# -- dense metrics ---------------------------------------------------------------------------


@pytest.fixture
def nyu_gt():
    """Exact depth with an invalid band (the name is historical: any ground truth will do)."""
    _, depth, valid = sample_scene(480, 640)
    return np.where(valid, depth, 0).astype(np.float32), valid


def test_ground_truth_as_prediction_is_perfect(nyu_gt):
    gt, valid = nyu_gt
    metric = evaluate_dense(gt, gt, valid, "metric")
    assert metric["abs_rel"] == 0.0 and metric["rmse"] == 0.0 and metric["delta1"] == 1.0
    disparity = np.where(valid, 1.0 / np.maximum(gt, 1e-3), 0.0)
    for alignment, pred in (("least-squares", 3.0 * disparity + 0.2), ("median", 2.5 * disparity)):
        relative = evaluate_dense(pred, gt, valid, "relative", alignment)
        assert relative["abs_rel"] < 1e-6 and relative["delta1"] == 1.0 and relative["rmse"] < 1e-5


def test_known_perturbations_score_what_arithmetic_says(nyu_gt):
    gt, valid = nyu_gt
    scaled = evaluate_dense(gt * 1.1, gt, valid, "metric")
    assert scaled["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert scaled["rmse"] == pytest.approx(0.1 * np.sqrt(np.mean(gt[valid].astype(np.float64) ** 2)), rel=1e-4)
    assert scaled["delta1"] == 1.0
    far = evaluate_dense(gt * 1.3, gt, valid, "metric")
    assert far["delta1"] == 0.0 and far["delta2"] == 1.0  # 1.25 < 1.3 < 1.5625
    half = gt.copy()
    rows = np.arange(gt.shape[0])[:, None] < gt.shape[0] // 2
    half[rows & valid] *= 2.0  # depth doubled on the upper half
    result = evaluate_dense(half, gt, valid, "metric")
    share = (rows & valid).sum() / valid.sum()
    assert result["abs_rel"] == pytest.approx(share, rel=1e-5)
    assert result["delta1"] == pytest.approx(1 - share, rel=1e-6)


def test_invalid_pixels_do_not_count(nyu_gt):
    gt, valid = nyu_gt
    pred = gt.copy()
    pred[~valid] = 1000.0
    assert evaluate_dense(pred, gt, valid, "metric")["abs_rel"] == 0.0
    near = evaluate_dense(gt, gt, valid, "metric", max_depth=6.0)  # the sample scene spans 3.1-12 m
    assert near["valid_pixels"] == (valid & (gt < 6.0)).sum() < valid.sum()


# -- DA-2K -----------------------------------------------------------------------------------


def gt_pairs(depth, valid, count, seed):
    """Point pairs with clearly different measured depth; point1 is the closer one."""
    rng = np.random.default_rng(seed)
    rows, cols = np.nonzero(valid)
    pairs = []
    while len(pairs) < count:
        i, j = rng.integers(0, rows.size, size=2)
        a, b = (int(rows[i]), int(cols[i])), (int(rows[j]), int(cols[j]))
        if abs(depth[a] - depth[b]) > 0.2:
            near, far = (a, b) if depth[a] < depth[b] else (b, a)
            pairs.append({"point1": list(near), "point2": list(far), "closer_point": "point1"})
    return pairs


@pytest.fixture
def da2k_set(tmp_path):
    """A small DA-2K-format set of sample scenes at three sizes: upright as 'indoor', mirrored as 'outdoor'."""
    images = tmp_path / "images"
    annotations, truth = {}, {}
    for scene, flip in (("indoor", False), ("outdoor", True)):
        (images / scene).mkdir(parents=True)
        for h, w in ((240, 320), (180, 320), (300, 300)):
            image, depth, valid = sample_scene(h, w, flip)
            name = f"{scene}/scene_{h}x{w}.png"
            cv2.imwrite(str(images / name), image)
            annotations[name] = gt_pairs(depth, valid, 10, len(annotations))
            truth[name] = depth
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(annotations))
    return path, images, annotations, truth


def test_measured_depth_orders_every_pair_right(da2k_set):
    _, _, annotations, truth = da2k_set
    result = da2k_accuracy(annotations, truth.__getitem__, "metric")
    assert result["accuracy"] == 1.0 and result["pairs"] == 60
    assert set(result["scenes"]) == {"indoor", "outdoor"}
    # read as disparity (larger = nearer) the same maps get every pair wrong
    assert da2k_accuracy(annotations, truth.__getitem__, "relative")["accuracy"] == 0.0
    flipped = {k: [{**p, "closer_point": "point2"} for p in v] for k, v in annotations.items()}
    assert da2k_accuracy(flipped, truth.__getitem__, "metric")["accuracy"] == 0.0
    disparity = {k: 1.0 / np.maximum(v, 1e-3) for k, v in truth.items()}
    assert (
        da2k_agreement(annotations, truth.__getitem__, "metric", disparity.__getitem__, "relative")["accuracy"] == 1.0
    )


def test_points_outside_the_image_are_an_error(da2k_set):
    _, _, annotations, truth = da2k_set
    name = next(iter(annotations))
    bad = {name: [{"point1": [5000, 1], "point2": [1, 1]}]}
    with pytest.raises(Dav2Error, match="outside"):
        da2k_accuracy(bad, truth.__getitem__, "metric")


def last_json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_da2k_command_with_a_real_model(da2k_set, dynamic_onnx, tmp_path):
    path, images, annotations, _ = da2k_set
    args = ["da2k", "--images", str(images), "--model", str(dynamic_onnx), "--input-size", "140", "--json"]
    result = CliRunner().invoke(eval_main, [*args, "--annotations", str(path)])
    summary = last_json(result)
    assert summary["pairs"] == 60 and set(summary["scenes"]) == {"indoor", "outdoor"}
    assert "DA-2K accuracy" in result.stdout and "indoor:" in result.stdout
    # the command scores what the library scores with the same model
    with ModelPredictor(dynamic_onnx, images, 140) as predictor:
        direct = da2k_accuracy(annotations, predictor, predictor.kind)
    assert summary["accuracy"] == pytest.approx(direct["accuracy"])
    # every pair flipped: each right answer becomes wrong and back (float depth: no ties)
    flipped = tmp_path / "flipped.json"
    flipped.write_text(json.dumps({k: [{**p, "closer_point": "point2"} for p in v] for k, v in annotations.items()}))
    wrong = last_json(CliRunner().invoke(eval_main, [*args, "--annotations", str(flipped)]))
    assert summary["accuracy"] + wrong["accuracy"] == pytest.approx(1.0)
    same = CliRunner().invoke(eval_main, [*args, "--annotations", str(path), "--reference", str(dynamic_onnx)])
    assert last_json(same)["accuracy"] == 1.0


@pytest.fixture
def dense_set(tmp_path):
    """Sample scenes as photos, their exact depth as millimetre PNGs, paired by sorted name."""
    rgb, depth_dir = tmp_path / "rgb", tmp_path / "depth"
    rgb.mkdir()
    depth_dir.mkdir()
    for i, (h, w, flip) in enumerate(((240, 320, False), (240, 320, True), (210, 280, False))):
        image, depth, valid = sample_scene(h, w, flip)
        cv2.imwrite(str(rgb / f"rgb_{i:05d}.png"), image)
        write_encoded(depth_dir / f"depth_{i:05d}.png", depth, valid, "png-mm")
    return rgb, depth_dir


@pytest.mark.slow
def test_dense_command_against_measured_depth_and_another_model(dynamic_onnx, dense_set):
    rgb, depth_dir = dense_set
    args = ["dense", "--images", str(rgb), "--model", str(dynamic_onnx), "--input-size", "266", "--json"]
    summary = last_json(CliRunner().invoke(eval_main, [*args, "--depth", str(depth_dir)]))
    names = ["rgb_00000.png", "rgb_00001.png", "rgb_00002.png"]
    assert summary["images"] == 3 and sorted(summary["per_image"]) == names
    # the command scores what the library scores: same pairing, format, alignment and mask
    with ModelPredictor(dynamic_onnx, rgb, 266) as predictor:
        for i, name in enumerate(names):
            gt, valid = read_depth(depth_dir / f"depth_{i:05d}.png", "png-mm")
            expected = evaluate_dense(predictor(name, gt.shape), gt, valid, "relative", "least-squares")
            assert summary["per_image"][name] == pytest.approx(expected)
    for key in ("abs_rel", "delta1", "rmse"):
        assert summary[key] == pytest.approx(np.mean([m[key] for m in summary["per_image"].values()]))
    itself = last_json(CliRunner().invoke(eval_main, [*args, "--reference", str(dynamic_onnx)]))
    assert itself["abs_rel"] < 1e-6 and itself["delta1"] == 1.0


def test_dense_command_errors(dynamic_onnx, dense_set, tmp_path):
    rgb, depth_dir = dense_set
    base = ["dense", "--images", str(rgb), "--model", str(dynamic_onnx)]
    result = CliRunner().invoke(eval_main, base)
    assert result.exit_code == 1 and "--depth" in result.output
    fewer = tmp_path / "fewer"
    fewer.mkdir()
    (fewer / "depth_00000.png").write_bytes((depth_dir / "depth_00000.png").read_bytes())
    result = CliRunner().invoke(eval_main, [*base, "--depth", str(fewer)])
    assert result.exit_code == 1 and "paired in sorted order" in result.output


def test_help_lists_every_command():
    """`dav2-eval --help` names each subcommand (temporal was missing from its description)."""
    result = CliRunner().invoke(eval_main, ["--help"])
    assert result.exit_code == 0, result.output
    description, commands = result.output.split("Commands:")
    assert set(eval_main.commands) == {"da2k", "dense", "temporal"}
    for name in eval_main.commands:
        assert f"({name})" in " ".join(description.split())
        assert any(line.split()[:1] == [name] for line in commands.splitlines())
    assert "..." not in commands  # each command's one-line help fits, not cut short
