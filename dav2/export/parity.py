"""Parity, checked once for every target: an artifact that promises to compute what its
reference computes (the FP32 graph, the OpenVINO FP32 IR and the FP16 graph against PyTorch, a
uint8-input wrapper against the float artifact it wraps) is measured here into one
`ParityReport` and held to its tolerance by `ParityReport.validate` (one ParityError).

Reduced-precision artifacts promise less: they get an `AccuracyReport` (dav2.export.accuracy)
and the accuracy gate instead. torch-free at import (PyTorch is imported by the check that
runs the model), so the uint8 check and `--from` can use it.
"""

import numpy as np

from dav2 import console, processing
from dav2.export.context import GraphOptions
from dav2.export.graph import Runner, check_sizes
from dav2.metadata import ParityError, ParityReport
from dav2.vocabulary import Precision

# max |artifact - reference| / max(1, max |reference|): FP32 graphs agree far within their bound
# (each export prints and records what it measured); FP16 graphs need the looser one
TOLERANCE = {Precision.FP32: 1e-3, Precision.FP16: 1e-2}
PYTORCH = "PyTorch FP32 (CPU)"


def relative_difference(actual: np.ndarray, expected: np.ndarray, what: str) -> float:
    """max |actual - expected| / max(1, max |expected|); a shape mismatch is a ParityError."""
    if actual.shape != expected.shape:
        raise ParityError(f"{what} returned shape {actual.shape} where its reference returned {expected.shape}")
    return float(np.abs(actual - expected).max()) / max(1.0, float(np.abs(expected).max()))


def against_pytorch(run: Runner, model, image: np.ndarray, options: GraphOptions, precision: str, what: str):
    """`run` (an artifact) against `model` on `image` at each check size (two for dynamic
    graphs: one that bakes in the traced size still runs at the traced one); printed,
    validated, returned."""
    import torch

    diffs = {}
    for net_hw in check_sizes(image.shape[:2], options):
        tensor = processing.preprocess(image, fixed_hw=net_hw)
        with torch.no_grad():
            expected = model(torch.from_numpy(tensor)).numpy()
        diffs[f"{net_hw[0]}x{net_hw[1]}"] = relative_difference(run(tensor), expected, what)
    return checked(ParityReport(diffs, TOLERANCE[Precision(precision)], PYTORCH), what)


def checked(report: ParityReport, what: str) -> ParityReport:
    """Print the report's differences, then validate it (a ParityError when one is over)."""
    for size, value in report.max_abs_diff_relative.items():
        console.info(
            f"  {what}: max abs difference at {size}: {value:.2e} of the output's scale "
            f"(tolerance {report.tolerance:.0e})"
        )
    return report.validate(what)
