"""Metric scale from anchors: exact on synthetic data, robust to a wrong measurement, strict about bad input,
and on real frames (../shared/depth-gt) better than the seeded metric model."""

import numpy as np
import pytest

from conftest import DATA
from dav2.errors import Dav2Error
from dav2.geometry import Anchor, fit_anchors, read_anchors
from dav2.geometry.anchors import WARN_MEDIAN_REL, sample_bilinear
from dav2.runtime.session import AnchorScale


def disparity_map(height: int = 60, width: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width]
    smooth = 0.5 + u / width + 0.5 * np.sin(v / 7.0) ** 2
    return (smooth + 0.05 * rng.random((height, width))).astype(np.float32)


def anchors_from(truth_m: np.ndarray, pixels: list[tuple[int, int]]) -> list[Anchor]:
    return [Anchor(u, v, float(truth_m[v, u])) for u, v in pixels]


PIXELS = [(3, 4), (70, 10), (40, 30), (10, 55), (79, 59), (25, 18), (60, 45), (5, 30), (50, 2), (33, 50)]


def test_relative_fit_is_exact_on_synthetic_data():
    disparity = disparity_map()
    scale, shift = 0.37, 0.05
    truth = 1.0 / (scale * disparity.astype(np.float64) + shift)
    fit = fit_anchors(disparity, anchors_from(truth, PIXELS), "relative")
    assert fit.scale == pytest.approx(scale, rel=1e-9) and fit.shift == pytest.approx(shift, rel=1e-7)
    np.testing.assert_allclose(fit.apply(disparity), truth, rtol=1e-6)
    assert fit.rms_m < 1e-9 and fit.median_rel < 1e-9 and fit.inliers == fit.anchors == 10
    assert "10 of 10 inliers" in fit.describe()


def test_metric_scale_correction_is_exact():
    depth = 1.0 / disparity_map()  # a metric model's output, 1.6 times too far
    truth = depth.astype(np.float64) / 1.6
    fit = fit_anchors(depth, anchors_from(truth, PIXELS[:3]), "metric")
    assert fit.shift == 0.0 and 1 / fit.scale == pytest.approx(1 / 1.6, rel=1e-9)
    np.testing.assert_allclose(fit.apply(depth), truth, rtol=1e-6)
    assert "scale correction x0.625" in fit.describe()


def test_one_wrong_measurement_does_not_drag_the_fit():
    disparity = disparity_map()
    truth = 1.0 / (0.37 * disparity.astype(np.float64) + 0.05)
    anchors = anchors_from(truth, PIXELS)
    anchors[3] = Anchor(anchors[3].u, anchors[3].v, anchors[3].metres * 3)  # misread tape
    fit = fit_anchors(disparity, anchors, "relative")
    plain = np.linalg.lstsq(
        np.stack([sample_bilinear(disparity, anchors), np.ones(10)], axis=1),
        1 / np.array([a.metres for a in anchors]),
        rcond=None,
    )[0]
    assert abs(fit.scale - 0.37) < 0.1 * abs(plain[0] - 0.37)  # robust beats plain least squares
    assert fit.inliers == 9
    np.testing.assert_allclose(fit.apply(disparity), truth, rtol=2e-2)


def test_subpixel_anchors_are_sampled_bilinearly():
    image = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert sample_bilinear(image, [Anchor(0.5, 0.5, 1.0), Anchor(1, 0, 1.0), Anchor(0.25, 1, 1)]).tolist() == [
        1.5,
        1.0,
        2.25,
    ]


def test_two_anchors_suffice_for_relative_one_for_metric():
    disparity = disparity_map()
    truth = 1.0 / (2.0 * disparity.astype(np.float64) + 0.1)
    fit = fit_anchors(disparity, anchors_from(truth, PIXELS[:2]), "relative")
    np.testing.assert_allclose(fit.apply(disparity), truth, rtol=1e-6)
    with pytest.raises(Dav2Error, match="at least 2 anchor"):
        fit_anchors(disparity, anchors_from(truth, PIXELS[:1]), "relative")
    with pytest.raises(Dav2Error, match="at least 1 anchor"):
        fit_anchors(disparity, [], "metric")


def test_degenerate_anchors_are_refused():
    flat = np.ones((10, 10), np.float32)
    with pytest.raises(Dav2Error, match="same disparity at every anchor"):
        fit_anchors(flat, [Anchor(1, 1, 2.0), Anchor(5, 5, 3.0)], "relative")
    disparity = disparity_map()
    truth = 1.0 / (0.3 * disparity.astype(np.float64) + 0.05)
    backwards = [Anchor(a.u, a.v, 1 / a.metres) for a in anchors_from(truth, PIXELS)]  # far where the model says near
    with pytest.raises(Dav2Error, match="contradict the model's ordering"):
        fit_anchors(disparity, backwards, "relative")
    with pytest.raises(Dav2Error, match=r"anchor \(80, 3\) lies outside the 80x60 image"):
        fit_anchors(disparity, [Anchor(80, 3, 1.0), Anchor(3, 3, 2.0)], "relative")


def test_anchors_ordered_backwards_are_refused_even_with_a_positive_scale():
    """A metric model's scale correction is positive whatever the anchors say, and one far anchor
    can give a relative fit a positive slope: the pairs' order decides (Kendall's tau < 0)."""
    depth = 1.0 / disparity_map()
    truth = depth.astype(np.float64)
    reversed_metric = [Anchor(a.u, a.v, float(1 / a.metres)) for a in anchors_from(truth, PIXELS[:5])]
    with pytest.raises(Dav2Error, match=r"contradict the model's ordering \(in 10 of 10 pairs"):
        fit_anchors(depth, reversed_metric, "metric")
    model = np.array([[1.0, 2.0, 3.0, 4.0, 10.0]])
    measured_disparity = np.array([5.0, 4.0, 3.0, 2.0, 20.0])  # four backwards, one far-off point forwards
    slope = np.polyfit(model[0], measured_disparity, 1)[0]
    assert slope > 0  # least squares alone would accept it
    with pytest.raises(Dav2Error, match=r"in 6 of 10 pairs the nearer point has the smaller disparity"):
        fit_anchors(model, [Anchor(i, 0, 1 / m) for i, m in enumerate(measured_disparity)], "relative")


def test_a_poor_fit_is_flagged_and_a_good_one_is_not(capsys):
    disparity = disparity_map()
    truth = 1.0 / (0.37 * disparity.astype(np.float64) + 0.05)
    good = anchors_from(truth, PIXELS)
    assert fit_anchors(disparity, good, "relative").warning() is None
    # the same pixels with distances off by up to +-60%: in order, but far from any scale and shift
    noise = np.random.default_rng(3).uniform(0.4, 1.6, len(PIXELS))
    noisy = [Anchor(a.u, a.v, a.metres * f) for a, f in zip(good, noise)]
    fit = fit_anchors(disparity, noisy, "relative")
    assert fit.median_rel > WARN_MEDIAN_REL
    warning = fit.warning()
    assert warning is not None and "\n" not in warning
    assert f"above {100 * WARN_MEDIAN_REL:.0f}%" in warning and f"{100 * fit.median_rel:.3g}%" in warning
    # dav2-run's transform says it once, however many frames are fitted
    transform = AnchorScale(noisy, "relative")
    for _ in range(3):
        transform(disparity)
    err = capsys.readouterr().err
    assert err.count("warning: the anchors fit poorly") == 1 and err.count("anchors: scale") == 1


def test_csv_with_header_and_comments():
    anchors = read_anchors(DATA / "geometry" / "anchors.csv")
    assert anchors == [Anchor(12.5, 40, 2.35), Anchor(300, 200, 4.10), Anchor(610, 455, 1.80)]


@pytest.mark.parametrize(
    "text,message",
    [
        ("u,v,metres\n", "has no u,v,metres rows"),
        ("1,2,3\n4,5\n", r":2: expected u,v,metres"),
        ("1,2,3\n4,5,-1\n", r":2: metres must be positive"),
        ("1,2,3\n4,5,nan\n", r":2: metres must be positive"),
        ("1,2,3\nfoo,5,6\n", r":2: expected u,v,metres"),
    ],
)
def test_bad_csv_names_the_line(tmp_path, text, message):
    path = tmp_path / "a.csv"
    path.write_text(text)
    with pytest.raises(Dav2Error, match=message):
        read_anchors(path)


def test_missing_csv(tmp_path):
    with pytest.raises(Dav2Error, match="cannot read anchors"):
        read_anchors(tmp_path / "none.csv")


@pytest.mark.shared("depth-gt")
def test_anchored_relative_beats_the_seeded_metric_model_on_nyu(vits_checkpoint, vits_metric_checkpoint, monkeypatch):
    """10 ground-truth pixels as anchors on an NYU frame: the anchored relative output's AbsRel against all valid
    pixels is far below the seeded metric model's (benchmarks/results/anchors_depth_gt.md has every frame)."""
    import json

    import cv2

    from conftest import SHARED
    from dav2.evaluation.groundtruth import read_depth
    from dav2.models.checkpoint import load_model

    monkeypatch.delenv("DAV2_CHECKPOINT", raising=False)
    folder = SHARED / "depth-gt" / "metric3d"
    entry = json.loads((folder / "nyu_demo" / "test_annotations.json").read_text())["files"][0]
    image = cv2.imread(str(folder / entry["rgb"].removeprefix("data/")))
    gt, valid = read_depth(folder / entry["depth"].removeprefix("data/"), "png-mm")
    rng = np.random.default_rng(0)
    v, u = np.nonzero(valid)
    anchors = [Anchor(float(u[i]), float(v[i]), float(gt[v[i], u[i]])) for i in rng.choice(len(u), 10, replace=False)]
    relative = load_model("vits", "relative", None, str(vits_checkpoint))[0].infer_image(image)
    metric = load_model("vits", "metric", 20, str(vits_metric_checkpoint))[0].infer_image(image)

    def abs_rel(depth):
        return float(np.mean(np.abs(depth[valid] - gt[valid]) / gt[valid]))

    anchored = fit_anchors(relative, anchors, "relative").apply(relative)
    assert abs_rel(anchored) < 0.5 * abs_rel(metric)
