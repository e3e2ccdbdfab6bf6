"""ONNX INT8 for ONNX Runtime on CPUs: dynamic MatMul quantization, or static QDQ (--ort-int8).

The quantization itself is `dav2.calibration.onnxruntime`; this target wraps it as an
artifact with its metadata. Dynamic mode needs no calibration images; static mode does.
"""

from dav2 import console
from dav2.calibration.onnxruntime import MODES, QUANTIZED_OPS, quantize_onnx
from dav2.errors import Dav2Error
from dav2.export.context import Built, ExportContext, ExportRequest
from dav2.export.onnx import artifact_stem, weights_file
from dav2.export.target import ExportTarget
from dav2.vocabulary import ArtifactFormat, Precision


class OnnxInt8Target(ExportTarget):
    name = "ONNX Runtime INT8"
    suffix = ".onnx"

    def __init__(self, mode: str = "dynamic"):
        super().__init__(Precision.INT8)
        if mode not in MODES:
            raise Dav2Error(f"ONNX Runtime INT8 mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode

    def needs_calibration(self, request: ExportRequest) -> bool:
        return self.mode == "static"

    def preflight(self, request: ExportRequest) -> None:
        """onnxruntime.quantization ships with onnxruntime, a runtime requirement."""

    def build(self, context: ExportContext) -> Built:
        folder = context.folder("onnx-int8")
        path = folder / f"{artifact_stem(context.model, context.options, Precision.INT8)}.onnx"
        calibration = context.calibration if self.mode == "static" else None
        what = f"on {len(calibration)} calibration images" if calibration else "weights only, activations per call"
        with console.step(f"quantizing for ONNX Runtime ({self.mode} INT8, MatMul, {what})"):
            quantize_onnx(context.fp32_onnx, path, self.mode, calibration)
        metadata = context.describe(path, ArtifactFormat.ONNX, Precision.INT8)
        metadata.quantization = {"tool": "onnxruntime.quantization", "mode": self.mode, "ops": list(QUANTIZED_OPS)}
        metadata.calibration = calibration.identity() if calibration else None
        metadata.weights_file = weights_file(path)
        companions = [path.with_name(metadata.weights_file)] if metadata.weights_file else []
        return Built(path, metadata, companions)
