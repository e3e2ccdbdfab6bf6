"""AbsRel, δ1 and max difference: values that arithmetic predicts."""

import numpy as np
import pytest

from dav2.accuracy import compare, summarize


@pytest.fixture
def reference():
    rng = np.random.default_rng(0)
    return rng.uniform(1.0, 10.0, size=(40, 60)).astype(np.float32)


def test_identical_maps_are_perfect(reference):
    assert compare(reference, reference, "metric") == {"abs_rel": 0.0, "delta1": 1.0, "max_abs_diff": 0.0}
    aligned = compare(reference, reference, "relative")
    assert aligned["abs_rel"] < 1e-9 and aligned["delta1"] == 1.0 and aligned["max_abs_diff"] == 0.0


def test_relative_maps_are_compared_after_scale_and_shift(reference):
    result = compare(reference * 2.5 + 3.0, reference, "relative")
    assert result["abs_rel"] < 1e-6 and result["delta1"] == 1.0
    assert result["max_abs_diff"] == pytest.approx(float((reference * 1.5 + 3.0).max()), rel=1e-5)


def test_metric_maps_are_compared_as_they_are(reference):
    result = compare(reference * 1.1, reference, "metric")
    assert result["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert result["delta1"] == 1.0
    assert compare(reference * 1.3, reference, "metric")["delta1"] == 0.0


def test_delta1_counts_the_pixels_within_a_factor_of_1_25(reference):
    pred = reference.copy()
    pred[:10] *= 2.0  # a quarter of the rows off by a factor 2
    result = compare(pred, reference, "metric")
    assert result["delta1"] == pytest.approx(0.75)
    assert result["abs_rel"] == pytest.approx(0.25, rel=1e-6)


def test_near_zero_reference_pixels_are_left_out(reference):
    ref = reference.copy()
    ref[0, 0] = 0.0  # sky: disparity 0
    pred = ref.copy()
    pred[0, 0] = 5.0
    result = compare(pred, ref, "metric")
    assert result["abs_rel"] == 0.0 and result["delta1"] == 1.0
    assert result["max_abs_diff"] == 5.0


def test_summary_averages_and_takes_the_worst():
    per_image = [
        {"abs_rel": 0.1, "delta1": 0.9, "max_abs_diff": 2.0},
        {"abs_rel": 0.3, "delta1": 0.7, "max_abs_diff": 1.0},
    ]
    summary = summarize(per_image)
    assert summary == pytest.approx({"abs_rel": 0.2, "delta1": 0.8, "max_abs_diff": 2.0, "images": 2})


def test_shape_mismatch_is_an_error(reference):
    with pytest.raises(ValueError, match="shape"):
        compare(reference[:10], reference)
