"""NNCF's accuracy control judges a model as its kind is judged (issue 21).

`dav2-export --accuracy-control` gives NNCF a validation function: minus AbsRel of the INT8
model against the FP32 one. A relative model's disparity is only known up to scale and shift,
so it is aligned first; a metric model's metres are the product, and a wrong scale is an error
in metres. The validation function used to align both (accuracy.compare's default), so a
metric model whose INT8 graph was off by a constant factor passed the budget.
"""

import inspect

import numpy as np
import pytest

from dav2.calibration.nncf import quantize_openvino_within, validate


def items(count: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.random((1, 3, 28, 28), np.float32), 1.0 + rng.random((28, 28), np.float32)) for _ in range(count)]


ITEMS = items()  # (network input, FP32 reference depth) pairs, as the export builds them


def scaled_by(factor: float):
    """A compiled model's call: (outputs,) whose first is (1, H, W); here the reference times `factor`."""
    references = {id(tensor): reference for tensor, reference in ITEMS}

    def infer(tensor):
        return [references[id(tensor)][None] * factor]

    return infer


def test_metric_models_are_judged_in_metres_without_alignment():
    mean, values = validate(scaled_by(1.1), ITEMS, "metric")
    assert mean == pytest.approx(-0.1, abs=1e-6) and len(values) == len(ITEMS)  # 10 % too far: AbsRel 0.1


def test_relative_models_are_judged_after_scale_and_shift():
    mean, _ = validate(scaled_by(1.1), ITEMS, "relative")
    assert mean == pytest.approx(0.0, abs=1e-6)


def test_the_kind_must_be_given():
    """No default that would quietly judge a metric model as a relative one."""
    parameter = inspect.signature(quantize_openvino_within).parameters["kind"]
    assert parameter.default is inspect.Parameter.empty and parameter.kind is inspect.Parameter.KEYWORD_ONLY
