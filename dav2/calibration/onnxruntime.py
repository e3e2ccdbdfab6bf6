"""ONNX Runtime INT8: dynamic quantization (the default) or static QDQ from the calibration set.

The two recipes, on vits at 518 on a 2-core CPU (numbers and commands in
benchmarks/results/amd-epyc-2-cores-vits.md and amd-epyc-2-cores-int8-dynamic-vs-static.md):
- dynamic (the default), MatMul weights INT8 per tensor, activations quantized per call:
  faster than the FP32 graph and the most accurate INT8 recipe; needs no calibration images.
- static QDQ, MatMul/Gemm only, per-channel weights, calibrated (MinMax): less accurate than
  dynamic, and in the project's trials slower than FP32 on the CPU execution provider,
  because every attention MatMul then runs between QuantizeLinear/DequantizeLinear pairs;
  kept for runtimes that fuse QDQ (TensorRT, other execution providers) and selectable with
  --ort-int8 static.
- static QDQ of every op (ONNX Runtime's default) lost far more accuracy in the project's
  trials (no results file records them): not offered.

Gemm is listed with MatMul because ONNX Runtime's graph optimisation fuses a linear layer's
MatMul and bias Add into a Gemm when the shapes are static: with MatMul alone, a static
graph's qkv/proj/fc1/fc2 stayed in float (only the attention MatMuls were INT8) while a
dynamic graph's were INT8, so the two were different recipes (issue 19). The nodes
dav2.calibration.graph.shape_only_nodes names (a dynamic graph's positional-embedding
resize) are never quantized.
"""

import tempfile
from pathlib import Path

from dav2.calibration.dataset import CalibrationSet
from dav2.errors import Dav2Error

MODES = ("dynamic", "static")
QUANTIZED_OPS = ["MatMul", "Gemm"]  # Gemm: a static graph's fused linear layers


def _reader(calibration: CalibrationSet):
    from onnxruntime.quantization import CalibrationDataReader

    class TensorReader(CalibrationDataReader):
        """Feeds the calibration tensors to ONNX Runtime's calibrator, one image at a time."""

        def __init__(self):
            self.tensors = calibration.tensors()

        def get_next(self):
            tensor = next(self.tensors, None)
            return None if tensor is None else {"image": tensor}

    return TensorReader()


def quantize_onnx(source: Path, target: Path, mode: str, calibration: CalibrationSet | None = None) -> None:
    """Write an INT8 copy of the FP32 graph `source` to `target`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from dav2.calibration.graph import shape_only_nodes  # onnx: seconds to import; dav2-export --help reads MODES

    if mode not in MODES:
        raise Dav2Error(f"ONNX Runtime INT8 mode must be one of {', '.join(MODES)}, not {mode!r}")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # shape inference and graph optimisation first, as onnxruntime.quantization recommends
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        # a dynamic graph's positional-embedding resize: constants at any one size, never quantized
        excluded = shape_only_nodes(prepared)
        if mode == "dynamic":
            quantize_dynamic(
                str(prepared),
                str(target),
                op_types_to_quantize=QUANTIZED_OPS,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
            )
            return
        if calibration is None:
            raise Dav2Error("--ort-int8 static needs calibration images: add --calib-dir DIR")
        quantize_static(
            str(prepared),
            str(target),
            _reader(calibration),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=QUANTIZED_OPS,
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True},
        )
