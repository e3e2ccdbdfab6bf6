"""NNCF post-training quantization of an OpenVINO model from the calibration set.

The transformer preset (model_type=TRANSFORMER) is NNCF's recipe for ViT blocks: it quantizes
the MatMuls (with SmoothQuant on their inputs) and leaves LayerNorm, Softmax and GELU in the
runtime's float precision. `keep_head` leaves the whole DPT head unquantized: measured on
vits at 518, quantizing the head accounts for about half of the INT8 error (AbsRel 0.034 ->
0.016) and a fifth of the speed-up.

`quantize_openvino_within` is the same recipe under NNCF's accuracy control: NNCF quantizes
everything, measures AbsRel against the FP32 model on the validation images, ranks the
quantized operations by how much AbsRel each one costs, and returns them to float, worst
first, until the budget is met. The result is a mixed-precision model whose float layers were
chosen by measurement on these weights, not by a fixed list.

NNCF validates with the float parts in f32 (its engine forces the f32 inference precision), so
the budget it meets is the INT8 error alone. A CPU that runs float layers in BF16 (OpenVINO's
default where the CPU has it) adds its own error on top; the export's accuracy report measures
the artifact as it will run, and `float_precision` (below) chooses which way it runs.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from dav2 import accuracy, optional
from dav2.calibration.dataset import CalibrationSet

HEAD_PATTERN = r".*depth_head.*"
COMPUTE_OPS = ("MatMul", "Convolution", "ConvolutionBackpropData", "GroupConvolution")
RANKING_SUBSET = 3  # validation images NNCF ranks the operations on (each rank costs one inference per image)


@dataclass
class ControlledQuantization:
    """What accuracy control did: recorded in the artifact's sidecar (`quantization`)."""

    max_abs_rel: float
    validation_images: int
    validation_abs_rel: float  # of the returned model, float parts in f32, on the validation images
    int8_ops: list[str] = field(default_factory=list)  # compute operations with INT8 inputs
    float_ops: list[str] = field(default_factory=list)  # compute operations left in float
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "tool": "nncf quantize_with_accuracy_control",
            "mode": "int8-mixed",
            "max_abs_rel": self.max_abs_rel,
            "validation_images": self.validation_images,
            "validation_abs_rel": self.validation_abs_rel,
            "int8_ops": len(self.int8_ops),
            "float_ops": self.float_ops,
            "why_float": "NNCF accuracy control: these cost the most AbsRel on the validation images",
            "seconds": round(self.seconds, 1),
        }


def quantize_openvino(ov_model, calibration: CalibrationSet, keep_head: bool = False):
    """An INT8 copy of `ov_model` (openvino.Model), calibrated on `calibration`."""
    nncf = optional.require("nncf", "OpenVINO INT8")
    dataset = nncf.Dataset(list(calibration.tensors()))
    return nncf.quantize(
        ov_model,
        dataset,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),
        ignored_scope=head_scope(nncf, keep_head),
    )


def quantize_openvino_within(ov_model, calibration: CalibrationSet, max_abs_rel: float, keep_head: bool = False):
    """(mixed-precision model, ControlledQuantization): INT8 where it keeps AbsRel within
    `max_abs_rel` against the FP32 model on the calibration set's validation images."""
    nncf = optional.require("nncf", "OpenVINO INT8 with accuracy control")
    ov = optional.require("openvino", "OpenVINO INT8 with accuracy control")
    start = time.perf_counter()
    tensors = calibration.validation_tensors()
    reference_model = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    references = [reference_model(tensor)[0][0] for tensor in tensors]
    validation = nncf.Dataset(list(zip(tensors, references)), lambda item: item[0])
    restorer = nncf.AdvancedAccuracyRestorerParameters(
        ranking_subset_size=min(RANKING_SUBSET, len(tensors)), num_ranking_workers=1
    )
    quantized = nncf.quantize_with_accuracy_control(
        ov_model,
        nncf.Dataset(list(calibration.tensors())),
        validation,
        validate,
        max_drop=max_abs_rel,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),
        ignored_scope=head_scope(nncf, keep_head),
        advanced_accuracy_restorer_parameters=restorer,
    )
    checked = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    abs_rel = -validate(checked, zip(tensors, references))[0]
    int8, kept = split_by_precision(quantized)
    record = ControlledQuantization(max_abs_rel, len(tensors), abs_rel, int8, kept, time.perf_counter() - start)
    return quantized, record


def validate(compiled_model, items) -> tuple[float, list[float]]:
    """NNCF's validation function: higher is better, so the metric is minus AbsRel against the
    FP32 reference of each (tensor, reference) item; one value per item lets NNCF rank."""
    values = [-accuracy.compare(compiled_model(tensor)[0][0], reference)["abs_rel"] for tensor, reference in items]
    return float(np.mean(values)), values


def split_by_precision(model) -> tuple[list[str], list[str]]:
    """(names of compute operations fed through FakeQuantize, names of those that are not)."""
    int8, kept = [], []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in COMPUTE_OPS:
            continue
        sources = [port.get_source_output().get_node().get_type_name() for port in op.inputs()]
        (int8 if "FakeQuantize" in sources else kept).append(op.get_friendly_name())
    return int8, kept


def head_scope(nncf, keep_head: bool):
    return nncf.IgnoredScope(patterns=[HEAD_PATTERN], validate=False) if keep_head else None
