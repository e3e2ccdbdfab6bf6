"""dav2-eval: ground-truth readers, dense metrics, DA-2K scoring, run as a user runs them.

../shared/depth-gt holds real measured depth in five encodings. Ground truth used as its own
prediction must score perfectly, and known perturbations must score what arithmetic says.
"""

import json
import shutil

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

GT = SHARED / "depth-gt"
pytestmark = pytest.mark.skipif(not GT.is_dir(), reason=f"no measured depth at {GT}")
NYU = GT / "metric3d" / "nyu_demo"
KITTI = GT / "metric3d" / "kitti_demo"


# -- readers ---------------------------------------------------------------------------------


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
    return read_depth(NYU / "depth" / "sync_depth_00000.png", "png-mm")


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
    assert evaluate_dense(gt, gt, valid, "metric", max_depth=2.0)["valid_pixels"] < valid.sum()


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
    """A small DA-2K-format set: NYU frames as 'indoor', KITTI frames as 'outdoor'."""
    images = tmp_path / "images"
    annotations, truth = {}, {}
    for scene, folder, fmt in (("indoor", NYU, "png-mm"), ("outdoor", KITTI, "png-kitti")):
        (images / scene).mkdir(parents=True)
        for rgb, depth_file in zip(sorted((folder / "rgb").iterdir()), sorted((folder / "depth").iterdir())):
            shutil.copy(rgb, images / scene / rgb.name)
            depth, valid = read_depth(depth_file, fmt)
            name = f"{scene}/{rgb.name}"
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


def test_da2k_command_with_a_real_model(da2k_set, dynamic_onnx):
    path, images, _, _ = da2k_set
    args = ["da2k", "--annotations", str(path), "--images", str(images), "--model", str(dynamic_onnx)]
    result = CliRunner().invoke(eval_main, [*args, "--input-size", "266", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["pairs"] == 60 and 0.0 <= summary["accuracy"] <= 1.0
    assert set(summary["scenes"]) == {"indoor", "outdoor"}
    assert "DA-2K accuracy" in result.stdout and "indoor:" in result.stdout
    same = CliRunner().invoke(eval_main, [*args, "--input-size", "266", "--reference", str(dynamic_onnx), "--json"])
    assert same.exit_code == 0, same.output
    assert json.loads(same.stdout.strip().splitlines()[-1])["accuracy"] == 1.0


def test_dense_command_against_measured_depth_and_another_model(dynamic_onnx):
    args = ["dense", "--images", str(NYU / "rgb"), "--model", str(dynamic_onnx), "--input-size", "266", "--json"]
    result = CliRunner().invoke(eval_main, [*args, "--depth", str(NYU / "depth")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["images"] == 3 and 0 < summary["abs_rel"] and 0 <= summary["delta1"] <= 1
    assert summary["delta1"] <= summary["delta2"] <= summary["delta3"]
    assert set(summary["per_image"]) == {"rgb_00000.jpg", "rgb_00050.jpg", "rgb_00100.jpg"}
    itself = CliRunner().invoke(eval_main, [*args, "--reference", str(dynamic_onnx)])
    assert itself.exit_code == 0, itself.output
    compared = json.loads(itself.stdout.strip().splitlines()[-1])
    assert compared["abs_rel"] < 1e-6 and compared["delta1"] == 1.0


def test_dense_command_errors(dynamic_onnx):
    base = ["dense", "--images", str(NYU / "rgb"), "--model", str(dynamic_onnx)]
    result = CliRunner().invoke(eval_main, base)
    assert result.exit_code == 1 and "--depth" in result.output
    result = CliRunner().invoke(eval_main, [*base, "--depth", str(KITTI.parent)])
    assert result.exit_code == 1 and "paired in sorted order" in result.output
