"""The accuracy report printed after every reduced-precision export.

The new artifact runs in its own runtime backend (exactly as dav2-run will run it) on
held-out images, never the calibration ones, and is compared with the FP32 PyTorch model at
network resolution: AbsRel and δ1 (after scale-and-shift alignment for relative models,
directly for metric ones) and the largest absolute difference. dav2.export.gate turns a
result over its precision's budget into a failed export.
"""

from pathlib import Path

import numpy as np
import torch

from dav2 import accuracy, console, processing
from dav2.errors import Dav2Error
from dav2.models.dpt import DepthAnythingV2
from dav2.vocabulary import ModelKind


def accuracy_report(artifact: Path, model: DepthAnythingV2, images: list[tuple[str, np.ndarray]]) -> dict:
    """Compare `artifact` (with its metadata sidecar beside it) with `model` on `images`."""
    from dav2.runtime.backends import open_backend

    kind = ModelKind.METRIC if model.metric else ModelKind.RELATIVE
    per_image = []
    with open_backend(artifact) as backend:
        for _name, image in images:
            tensor = processing.preprocess(image, input_size=backend.default_input_size, fixed_hw=backend.fixed_hw)
            with torch.no_grad():
                expected = model(torch.from_numpy(tensor)).numpy()
            actual = backend.infer(tensor)
            if not np.isfinite(actual).all():
                raise Dav2Error(f"{artifact.name} produced NaN or infinite values; nothing written")
            per_image.append(accuracy.compare(actual[0], expected[0], kind))
    summary = accuracy.summarize(per_image)
    alignment = "after scale-and-shift alignment" if kind == ModelKind.RELATIVE else "no alignment (metric)"
    return {**summary, "against": "PyTorch FP32 (CPU)", "alignment": alignment, "held_out": [n for n, _ in images]}


def print_report(report: dict, precision: str) -> None:
    console.info(
        f"  accuracy vs PyTorch FP32 on {report['images']} held-out image(s), {report['alignment']}: "
        f"AbsRel {report['abs_rel']:.4f}, δ1 {report['delta1']:.4f}, max abs diff {report['max_abs_diff']:.3g} "
        f"({precision.upper()})"
    )
