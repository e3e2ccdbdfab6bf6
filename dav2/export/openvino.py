"""ONNX -> OpenVINO IR (.xml + .bin): FP32, FP16 (compressed weights) or INT8 (NNCF).

The IR is converted from the checked FP32 ONNX graph, not from the torch module: that graph
has already been compared with PyTorch at one or two sizes, its dynamic dimensions carry
over as they are, and one graph stays behind every artifact (converting the torch module is
as exact, and slower).

Precision on the CPU: OpenVINO runs an FP32 IR in BF16 on CPUs that have it (this project's
CI machine does) unless told otherwise, so the FP32 artifact records the inference precision
hint "f32" and the backend applies it: FP32 means FP32. FP16 and INT8 artifacts leave the
device's own reduced precision (BF16 or FP16) in place; the accuracy report measures it.
"""

import platform

import dav2
from dav2 import console, optional
from dav2.calibration.graph import dynamic_float_nodes
from dav2.calibration.nncf import quantize_openvino, quantize_openvino_within
from dav2.export import parity
from dav2.export.context import Built, ExportContext, ExportRequest
from dav2.export.graph import artifact_stem
from dav2.export.target import ExportTarget
from dav2.metadata import AccuracyControl, OpenVinoRecord, QuantizationRecipe
from dav2.runtime.backends.openvino import OpenVinoBackend
from dav2.vocabulary import ArtifactFormat, Precision

PRESET = "transformer"  # NNCF's model type: its recipe for ViT blocks (dav2.calibration.nncf)
# what the artifact asks the runtime for (None: the device's default)
INFERENCE_PRECISION = {Precision.FP32: "f32", Precision.FP16: None, Precision.INT8: None}


class OpenVinoTarget(ExportTarget):
    def preflight(self, request: ExportRequest) -> None:
        optional.require("openvino", "OpenVINO export")
        if self.precision == Precision.INT8:
            optional.require("nncf", "OpenVINO INT8 (NNCF quantization)")

    def build(self, context: ExportContext) -> list[Built]:
        ov = optional.require("openvino", "OpenVINO export")
        path = context.folder("openvino") / f"{artifact_stem(context.model, context.options, self.precision)}.xml"
        with console.step(f"converting to OpenVINO IR ({self.precision.upper()})"):
            ov_model = ov.convert_model(str(context.fp32_onnx))
        recipe = None
        if self.precision == Precision.INT8:
            ov_model, recipe = quantize(ov_model, context)
        ov.save_model(ov_model, str(path), compress_to_fp16=self.precision == Precision.FP16)
        metadata = context.describe(path, ArtifactFormat.OPENVINO, self.precision)
        metadata.openvino = OpenVinoRecord(
            inference_precision=INFERENCE_PRECISION[self.precision],
            keep_head="head" in context.float_groups if self.precision == Precision.INT8 else None,
        )
        metadata.weights_file = path.with_suffix(".bin").name
        metadata.tools.update(
            {"openvino": ov.__version__, "dav2": dav2.__version__, "python": platform.python_version()}
        )
        if self.precision == Precision.INT8:
            metadata.calibration = context.calibration_record
        metadata.quantization = recipe
        if self.precision == Precision.FP32:
            metadata.parity = check_parity(path, context)
        return [Built(path, metadata, [path.with_suffix(".bin")])]


def check_parity(path, context: ExportContext):
    """FP32 promises parity with PyTorch, like the ONNX graph it came from: checked in the
    runtime backend, as dav2-run will run it (the sidecar does not exist yet, so f32 is asked)."""
    with console.step("checking the IR against PyTorch in OpenVINO (f32)"):
        with OpenVinoBackend(path, None, inference_precision="f32") as backend:
            return parity.against_pytorch(
                backend.infer, context.model, context.image, context.options, Precision.FP32, "the OpenVINO IR"
            )


def quantize(ov_model, context: ExportContext) -> tuple[object, QuantizationRecipe]:
    """(INT8 model, its recipe for the sidecar): NNCF's transformer preset with the requested
    groups left in float, under accuracy control when --accuracy-control asks for it. Dynamic
    graphs also keep the nodes of `dynamic_float_nodes` in float (see dav2.calibration.graph)."""
    request, calibration, groups = context.request, context.calibration, context.float_groups
    nodes = dynamic_float_nodes(context.fp32_onnx, context.options.dynamic)
    kept = f", kept in float: {', '.join(groups)}" if groups else ""
    what = f"{len(calibration)} calibration images{kept}"
    if not request.accuracy_control:
        with console.step(f"quantizing with NNCF on {what}"):
            model = quantize_openvino(ov_model, calibration, groups, nodes)
        return model, QuantizationRecipe("nncf quantize", "int8", float_groups=groups, float_nodes=nodes, preset=PRESET)
    budget = f"AbsRel ≤ {request.max_abs_rel:g} on {len(calibration.validation)} validation images"
    with console.step(f"quantizing with NNCF's accuracy control on {what} ({budget}; minutes)"):
        model, record = quantize_openvino_within(
            ov_model, calibration, request.max_abs_rel, groups, nodes, kind=context.kind
        )
    console.info(
        f"  {len(record.int8_ops)} operations in INT8, {len(record.float_ops)} kept in float; "
        f"validation AbsRel {record.validation_abs_rel:.4f} (float parts in f32)"
    )
    control = AccuracyControl(
        record.max_abs_rel, record.validation_images, record.validation_abs_rel, len(record.int8_ops),
        record.float_ops, round(record.seconds, 1),
    )  # fmt: skip
    recipe = QuantizationRecipe("nncf quantize_with_accuracy_control", "int8-mixed", float_groups=groups,
                                float_nodes=nodes, preset=PRESET, control=control)  # fmt: skip
    return model, recipe
