"""The accuracy report of every reduced-precision artifact, and the check that holds it to a budget.

The new artifact runs in its own runtime backend (exactly as dav2-run will run it) on
held-out images, never the calibration ones, and is compared with the FP32 reference at
network resolution: AbsRel and δ1 (after scale-and-shift alignment for relative models,
directly for metric ones) and the largest absolute difference. `measure` makes the one
`AccuracyReport` shape from those comparisons for every target (PyTorch at export, the FP32
reference outputs for engines); `AccuracyReport.validate` refuses one over its budget
(dav2.export.gate says which budget).
"""

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dav2 import accuracy, console, processing
from dav2.errors import Dav2Error
from dav2.metadata import AccuracyReport
from dav2.runtime.backends import open_backend
from dav2.vocabulary import ModelKind

PYTORCH = "PyTorch FP32 (CPU)"


def measure(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], kind: ModelKind | str, against: str, inputs: list[str]
) -> AccuracyReport:
    """One AccuracyReport from (artifact output, FP32 output) pairs of one (H, W) map each."""
    per_image = [accuracy.compare(actual, expected, kind) for actual, expected in pairs]
    summary = accuracy.summarize(per_image)
    alignment = "scale-and-shift" if ModelKind(kind) == ModelKind.RELATIVE else "none"
    return AccuracyReport(
        summary["abs_rel"], summary["delta1"], summary["max_abs_diff"], summary["images"], against, alignment, inputs
    )


def accuracy_report(artifact: Path, model, images: list[tuple[str, np.ndarray]]) -> AccuracyReport:
    """Compare `artifact` (with its metadata sidecar beside it) with the PyTorch `model` on `images`."""
    import torch

    def pairs(backend):
        for _name, image in images:
            tensor = processing.preprocess(image, input_size=backend.default_input_size, fixed_hw=backend.fixed_hw)
            with torch.no_grad():
                expected = model(torch.from_numpy(tensor)).numpy()
            actual = backend.infer(tensor)
            if not np.isfinite(actual).all():
                raise Dav2Error(f"{artifact.name} produced NaN or infinite values; nothing written")
            yield actual[0], expected[0]

    with open_backend(artifact) as backend:
        return measure(pairs(backend), model.kind, PYTORCH, [name for name, _ in images])


def print_report(report: AccuracyReport, label: str) -> None:
    """One line: what was measured on how many inputs, and how close it came."""
    aligned = ", after scale-and-shift alignment" if report.alignment == "scale-and-shift" else ""
    graph = f", its ONNX graph {report.graph_abs_rel:.4f}" if report.graph_abs_rel is not None else ""
    console.info(
        f"  accuracy vs {report.against} on {report.images} input(s){aligned}: AbsRel {report.abs_rel:.4f}{graph}, "
        f"δ1 {report.delta1:.4f}, max abs diff {report.max_abs_diff:.3g} ({label})"
    )
