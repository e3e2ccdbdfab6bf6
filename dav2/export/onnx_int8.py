"""ONNX INT8 (--onnx --int8, mode from --ort-int8).

- dynamic (default): ONNX Runtime's dynamic MatMul quantization, the fastest INT8 on ONNX
  Runtime's CPU provider; needs no calibration images.
- static: ONNX Runtime's static QDQ, calibrated on --calib-dir.
- qdq: the precision-explicit Q/DQ graph made by Model Optimizer (dav2.export.explicit), the
  one TensorRT builds its INT8 engine from and OpenVINO runs with INT8 kernels.
"""

from dav2 import console
from dav2.calibration.onnxruntime import MODES, QUANTIZED_OPS, quantize_onnx
from dav2.errors import Dav2Error
from dav2.export.context import Built, ExportContext, ExportRequest
from dav2.export.explicit import explicit_onnx, require_modelopt
from dav2.export.graph import artifact_stem, onnx_built
from dav2.export.target import ExportTarget
from dav2.metadata import QuantizationRecipe
from dav2.vocabulary import ArtifactFormat, Precision

QDQ = "qdq"  # explicit Q/DQ made by Model Optimizer: the INT8 graph TensorRT and OpenVINO consume
ORT_MODES = (*MODES, QDQ)  # --ort-int8's choices, the first the default
CALIBRATED_MODES = ("static", QDQ)


class OnnxInt8Target(ExportTarget):
    def __init__(self, row, precision: str = Precision.INT8, mode: str = ORT_MODES[0]):
        super().__init__(row, precision)
        if self.precision != Precision.INT8 or mode not in ORT_MODES:
            raise Dav2Error(f"ONNX INT8 mode must be one of {', '.join(ORT_MODES)}, not {mode!r}")
        self.mode = mode

    @classmethod
    def from_request(cls, row, precision, request: ExportRequest) -> "OnnxInt8Target":
        return cls(row, precision, request.ort_int8)

    def needs_calibration(self, request: ExportRequest) -> bool:
        return self.mode in CALIBRATED_MODES

    def preflight(self, request: ExportRequest) -> None:
        """onnxruntime.quantization ships with onnxruntime; qdq is made by Model Optimizer,
        and only it leaves --int8-float groups in float."""
        if self.mode == QDQ:
            require_modelopt()
        elif request.int8_float:
            raise Dav2Error(f"--int8-float shapes the Q/DQ graph: add --ort-int8 {QDQ} (or --openvino int8)")

    def build(self, context: ExportContext) -> list[Built]:
        if self.mode == QDQ:
            return [explicit_onnx(context, Precision.INT8)]
        folder = context.folder("onnx-int8")
        path = folder / f"{artifact_stem(context.model, context.options, Precision.INT8)}.onnx"
        calibration = context.calibration if self.mode == "static" else None
        what = f"on {len(calibration)} calibration images" if calibration else "weights only, activations per call"
        with console.step(f"quantizing for ONNX Runtime ({self.mode} INT8, MatMul, {what})"):
            quantize_onnx(context.fp32_onnx, path, self.mode, calibration)
        metadata = context.describe(path, ArtifactFormat.ONNX, Precision.INT8)
        metadata.quantization = QuantizationRecipe("onnxruntime.quantization", self.mode, list(QUANTIZED_OPS))
        metadata.calibration = context.calibration_record if calibration else None
        return [onnx_built(path, metadata)]
