"""PyTorch -> LiteRT (.tflite) at one fixed size: FP32, FP16 weights, INT8 (dynamic or static).

Converted with litert-torch from the torch module (LiteRT's converter does not read ONNX),
in the fixed-size, converter-friendly copy of `dav2.export.edge`. The model's signature takes
`image` (1, 3, H, W) float32 and returns `depth` (1, H, W), the names of every dav2 artifact.

- FP32: the plain conversion; checked for parity with PyTorch like every FP32 artifact.
- FP16: FP32 conversion, then ai-edge-quantizer casts the weights to float16 (FLOAT_CASTING,
  weight-only): half the file; the interpreter computes in float32 on the CPU (XNNPACK may run
  FP16 where the ARM core has it). Measured against PyTorch FP32 like every FP16 artifact.
- INT8 "dynamic": int8 weights (per channel) with activations quantized at run time; no
  calibration images. INT8 "static": full integer, activation ranges from the calibration set
  (PT2E: prepare, calibrate, convert); the model's input and output are then int8 and the
  dav2 backend converts at the border (`dav2.runtime.backends.litert`).
"""

import contextlib
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

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
from dav2.export.formats import LITERT_INT8_MODES as INT8_MODES
from dav2.export.target import ExportTarget
from dav2.metadata import QuantizationRecipe
from dav2.vocabulary import INPUT_NAME, OUTPUT_NAME, ArtifactFormat, Precision

if TYPE_CHECKING:
    from dav2.export.formats import ExportFormat

SUFFIX = ".tflite"


class NamedDepth(torch.nn.Module):
    """The model with dav2's tensor names in its signature: `image` in, `depth` out."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return {OUTPUT_NAME: self.model(image)}


def convert_litert(
    model: torch.nn.Module,
    path: Path,
    height: int,
    width: int,
    precision: str = Precision.FP32,
    calibration: Iterable[np.ndarray] | None = None,
    int8: str = "dynamic",
) -> Path:
    """Write `model` as a LiteRT flatbuffer for height x width at `precision`; return `path`.

    `calibration`: preprocessed (B, 3, H, W) batches, needed for INT8 "static" only."""
    litert_torch = optional.require("litert_torch", "LiteRT export")
    precision = Precision(precision)
    named = NamedDepth(fixed_size_model(model, height, width)).eval()
    example = example_input(height, width)
    quant = {}
    if precision == Precision.INT8:
        if int8 not in INT8_MODES:
            raise Dav2Error(f"LiteRT INT8 is {' or '.join(INT8_MODES)}, not {int8!r}")
        named, quant["quant_config"] = quantize_pt2e(named, example, calibration, dynamic=int8 == "dynamic")
    # litert-torch prints its progress on stdout, where dav2-export prints only the artifacts it wrote
    with contextlib.redirect_stdout(sys.stderr):
        edge = litert_torch.convert(named, sample_kwargs={INPUT_NAME: example}, **quant)
        edge.export(str(path))
    if precision == Precision.FP16:
        cast_weights_fp16(path)
    return path


def quantize_pt2e(named: torch.nn.Module, example: torch.Tensor, calibration, dynamic: bool):
    """(quantized module, QuantConfig) with litert-torch's symmetric per-channel recipe.

    Static INT8 observes activation ranges on the calibration batches; dynamic INT8 needs one
    forward to place its observers (ranges are taken at run time)."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if not dynamic and calibration is None:
        raise Dav2Error("LiteRT static INT8 needs calibration images (--calib-dir)")
    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic)
    quantizer = PT2EQuantizer().set_global(config)
    exported = torch.export.export(named, (), {INPUT_NAME: example}).module()
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for tensor in [example] if dynamic else calibration_tensors(calibration):
            for one in tensor.split(1):  # the traced program takes batches of one
                prepared(image=one)
    converted = convert_pt2e(prepared, fold_quantize=False)
    move_exported_model_to_eval(converted)
    return converted, QuantConfig(pt2e_quantizer=quantizer)


def cast_weights_fp16(path: Path) -> None:
    """Rewrite `path` with float16 weights (ai-edge-quantizer's FLOAT_CASTING, weight-only)."""
    quantizer_module = optional.require("ai_edge_quantizer.quantizer", "LiteRT FP16 (ai-edge-quantizer)")
    from ai_edge_quantizer.recipe import AlgorithmName, TFLOperationName

    quantizer = quantizer_module.Quantizer(str(path))
    quantizer.add_weight_only_config(
        regex=".*",
        operation_name=TFLOperationName.ALL_SUPPORTED,
        num_bits=16,
        algorithm_key=AlgorithmName.FLOAT_CASTING,
    )
    result = quantizer.quantize(enable_progress_report=False)
    path.write_bytes(bytes(result.quantized_model))


class LiteRtTarget(ExportTarget):
    """`dav2-export --litert P` (fixed size): FP32 checked for parity, FP16/INT8 measured by
    the pipeline's accuracy report; INT8's mode comes from --litert-int8."""

    def __init__(self, row: "ExportFormat", precision: str, int8: str = INT8_MODES[0]):
        super().__init__(row, precision)
        if int8 not in INT8_MODES:
            raise Dav2Error(f"--litert-int8 must be one of {', '.join(INT8_MODES)}, not {int8!r}")
        self.int8 = int8

    @classmethod
    def from_request(cls, row: "ExportFormat", precision: Precision, request: ExportRequest) -> "LiteRtTarget":
        return cls(row, precision, request.litert_int8)

    def needs_calibration(self, request: ExportRequest) -> bool:
        """Only full-integer INT8 observes activation ranges; dynamic INT8 needs no images."""
        return self.precision == Precision.INT8 and self.int8 == "static"

    def preflight(self, request: ExportRequest) -> None:
        require_fixed_size(request, self.name)
        optional.require("litert_torch", "LiteRT export")
        optional.require("ai_edge_litert", "checking LiteRT artifacts (pip install 'dav2[litert]')")
        if self.precision == Precision.FP16:
            optional.require("ai_edge_quantizer", "LiteRT FP16 (ai-edge-quantizer, with litert-torch)")

    def build(self, context: ExportContext) -> list[Built]:
        from dav2.runtime.backends.litert import LiteRtBackend

        options = context.options
        path = artifact_path(context, self.format.key, self.precision, SUFFIX)
        static = self.needs_calibration(context.request)
        calibration = context.calibration.batches(1) if static else None
        mode = f", {self.int8}" if self.precision == Precision.INT8 else ""
        with console.step(f"converting to LiteRT ({self.precision.upper()}{mode}, {options.shape_label})"):
            convert_litert(context.model, path, options.height, options.width, self.precision, calibration, self.int8)
        tools = {"litert-torch": optional.version("litert-torch") or "?"}
        metadata = edge_metadata(context, path, ArtifactFormat.LITERT, self.precision, tools)
        metadata.quantization = self.recipe()
        metadata.calibration = context.calibration_record if static else None
        if self.precision == Precision.FP32:
            metadata.parity = check_fp32_parity(LiteRtBackend(path, None), context, "LiteRT model")
        return [Built(path, metadata)]

    def recipe(self) -> QuantizationRecipe | None:
        """The sidecar's quantization entry: what was reduced, and with which tool."""
        if self.precision == Precision.FP16:
            return QuantizationRecipe("ai-edge-quantizer FLOAT_CASTING", "fp16-weights", high_precision="float32")
        if self.precision == Precision.INT8:
            return QuantizationRecipe("litert-torch PT2E", self.int8, high_precision="float32")
        return None
