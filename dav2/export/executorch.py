"""PyTorch -> ExecuTorch (.pte, XNNPACK delegate) at one fixed size: FP32 or INT8.

The program is lowered from `torch.export` of the fixed-size, converter-friendly copy of
`dav2.export.edge` (plain matmul attention, so XNNPACK takes the attention too) with
`to_edge_transform_and_lower` and the XNNPACK partitioner, then serialised with
`to_executorch()`. The same .pte runs in ExecuTorch's Python runtime (checked here), its
Android and iOS runtimes and its C++ runner on a Pi.

INT8: PT2E quantization with ExecuTorch's XNNPACKQuantizer (symmetric, per-channel weights,
static activations) calibrated on the calibration set: prepare, calibrate, convert, then the
same lowering, which hands the quantized ops to XNNPACK.
"""

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from dav2 import console, optional
from dav2.errors import Dav2Error
from dav2.export.context import Built, ExportContext, ExportRequest
from dav2.export.edge import (
    artifact_path,
    calibration_tensors,
    check_fp32_parity,
    edge_metadata,
    example_input,
    fixed_size_model,
    require_fixed_size,
)
from dav2.export.target import ExportTarget
from dav2.metadata import QuantizationRecipe
from dav2.vocabulary import ArtifactFormat, Precision

SUFFIX = ".pte"
PRECISIONS = (Precision.FP32, Precision.INT8)


def convert_executorch(
    model: torch.nn.Module,
    path: Path,
    height: int,
    width: int,
    precision: str = Precision.FP32,
    calibration: Iterable[np.ndarray] | None = None,
) -> Path:
    """Write `model` as an XNNPACK-delegated ExecuTorch program for height x width; return `path`.

    `calibration`: preprocessed (B, 3, H, W) batches, needed for INT8."""
    exir = optional.require("executorch.exir", "ExecuTorch export")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    precision = Precision(precision)
    if precision not in PRECISIONS:
        raise Dav2Error(f"ExecuTorch export is {' or '.join(PRECISIONS)}, not {precision}")
    fixed = fixed_size_model(model, height, width)
    example = example_input(height, width)
    if precision == Precision.INT8:
        fixed = quantize_pt2e(fixed, example, calibration)
    program = torch.export.export(fixed, (example,))
    lowered = exir.to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    path.write_bytes(lowered.to_executorch().buffer)
    return path


def quantize_pt2e(fixed: torch.nn.Module, example: torch.Tensor, calibration) -> torch.nn.Module:
    """The module with INT8 weights and activations, ranges observed on the calibration batches."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if calibration is None:
        raise Dav2Error("ExecuTorch INT8 needs calibration images (--calib-dir)")
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(fixed, (example,)).module(), quantizer)
    with torch.no_grad():
        for tensor in calibration_tensors(calibration):
            for one in tensor.split(1):  # the traced program takes batches of one
                prepared(one)
    converted = convert_pt2e(prepared)
    move_exported_model_to_eval(converted)
    return converted


class ExecuTorchTarget(ExportTarget):
    """`dav2-export --executorch P` (fixed size): FP32 checked for parity, INT8 calibrated and
    measured by the pipeline's accuracy report."""

    def preflight(self, request: ExportRequest) -> None:
        require_fixed_size(request, self.name)
        optional.require("executorch.exir", "ExecuTorch export")

    def build(self, context: ExportContext) -> list[Built]:
        from dav2.runtime.backends.executorch import ExecuTorchBackend

        options = context.options
        path = artifact_path(context, self.format.key, self.precision, SUFFIX)
        int8 = self.precision == Precision.INT8
        calibration = context.calibration.batches(1) if int8 else None
        with console.step(f"lowering to ExecuTorch with XNNPACK ({self.precision.upper()}, {options.shape_label})"):
            convert_executorch(context.model, path, options.height, options.width, self.precision, calibration)
        tools = {"executorch": optional.version("executorch") or "?"}
        metadata = edge_metadata(context, path, ArtifactFormat.EXECUTORCH, self.precision, tools)
        if int8:
            metadata.calibration = context.calibration_record
            metadata.quantization = QuantizationRecipe("XNNPACKQuantizer PT2E", "static", high_precision="float32")
        else:
            metadata.parity = check_fp32_parity(ExecuTorchBackend(path, None), context, "ExecuTorch program")
        return [Built(path, metadata)]
