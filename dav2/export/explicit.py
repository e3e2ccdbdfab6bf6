"""Precision-explicit ONNX graphs, made with NVIDIA Model Optimizer's ONNX API on any CPU.

TensorRT 10.x and 11.x build strongly typed engines: the precision of every tensor comes from
the ONNX graph, not from builder flags (TensorRT 11 removed those, and implicit INT8
calibration with them). So every precision decision is made here, in a graph that ONNX
Runtime and OpenVINO run on a CPU, where CI measures it:

- FP16: Model Optimizer's AutoCast converts the FP32 graph to FP16 with FP32 islands (the
  `--keep-fp32` groups: LayerNormalization, Softmax, the attention score path q·kᵀ -> softmax
  -> ·v, and the head's last convolutions by default) and FP32 input/output. TensorRT 10.3
  (JetPack 6) computes DAv2's FP16 attention/LayerNorm wrongly on Orin where 10.12+ does not
  (depth-anything-tensorrt #49); with these islands the graph does not depend on its fusions.
  It also keeps in FP32 any node whose activations exceed FP16's safe range on a real image
  (its `data_max` rule), which is why it gets one reference input. Its AbsRel against the
  FP32 graph: benchmarks/results/amd-epyc-2-cores-explicit-graphs-fp32-islands.md.
- INT8: Model Optimizer's post-training quantization inserts explicit QuantizeLinear /
  DequantizeLinear pairs (entropy calibration on the calibration set) on the encoder's
  MatMul/Conv; the attention MatMuls (softmax(q k^T) v) and the whole DPT head stay in higher
  precision (FP16), LayerNormalization and Softmax in FP32 (INT8_FP32_OP_TYPES). With the
  head's convolutions quantized too, ONNX Runtime ran the graph accurately but OpenVINO
  2025/2026 computed it wrongly, by an order of magnitude (the project's trials; no results
  file records them); without the head both are accurate
  (benchmarks/results/amd-epyc-2-cores-explicit-graphs-fp32-islands.md).

Install without its `[onnx]` extra, which pulls onnxruntime-gpu over onnxruntime (setup.py
says why; docs/install.md lists the extras): the `modelopt` extra of dav2 lists what its ONNX
API needs.
"""

import contextlib
import logging
import re
import tempfile
from pathlib import Path

import numpy as np

from dav2 import console, optional, processing
from dav2.calibration.dataset import CalibrationSet
from dav2.calibration.nncf import FLOAT_GROUPS
from dav2.errors import Dav2Error
from dav2.export import parity
from dav2.export.context import Built, ExportContext
from dav2.export.graph import artifact_stem, check_sizes, onnx_built, onnxruntime_runner, save_onnx
from dav2.export.preprocess import parse_camera_size
from dav2.export.reference import make_reference, reference_path, trusted_onnxruntime
from dav2.metadata import QuantizationRecipe
from dav2.vocabulary import INPUT_NAME, ArtifactFormat, Precision

# --keep-fp32 groups -> what AutoCast leaves in FP32
FP32_GROUPS = {
    "layernorm": {"op_types": ["LayerNormalization"]},
    "softmax": {"op_types": ["Softmax"]},
    # the attention score path: q and k scaled (Mul, Mul_1), q·kᵀ (MatMul), softmax, ·v (MatMul_1)
    "attention": {"nodes": [r".*/attn/(Mul|Mul_1|MatMul|MatMul_1|Softmax)$"]},
    "head": {"nodes": [r"/depth_head/output_conv.*"]},
}
DEFAULT_FP32_GROUPS = ("layernorm", "softmax", "attention", "head")
# the Q/DQ INT8 graph: op types kept in FP32 where the rest of the unquantized graph is FP16.
# Not MatMul: Model Optimizer then puts a Cast between every DequantizeLinear and its MatMul,
# which breaks TensorRT's Q/DQ fusion; it has no per-node FP16 exclusion, so the attention
# MatMuls of the INT8 graph stay FP16 (the FP16 graph keeps them FP32).
INT8_FP32_OP_TYPES = ["LayerNormalization", "Softmax"]

INT8_OP_TYPES = ["MatMul", "Conv", "ConvTranspose"]
INT8_EXCLUDED = [
    r".*/attn/MatMul.*",  # q k^T and attn v (the qkv and proj projections are /attn/qkv/, /attn/proj/)
    r"/depth_head/.*",  # the DPT head: see the module docstring
]


def require_modelopt() -> None:
    """Model Optimizer's ONNX API, or one line naming the extra."""
    optional.require("modelopt.onnx", "precision-explicit ONNX (FP16 AutoCast, INT8 Q/DQ)")
    optional.require("onnx_graphsurgeon", "precision-explicit ONNX (FP16 AutoCast, INT8 Q/DQ)")


def check_fp32_groups(groups: list[str]) -> list[str]:
    unknown = [g for g in groups if g not in FP32_GROUPS]
    if unknown:
        raise Dav2Error(f"unknown --keep-fp32 group(s) {', '.join(unknown)}; choose from {', '.join(FP32_GROUPS)}")
    return list(groups)


def autocast_fp16(
    source: Path, target: Path, groups: list[str], sample: np.ndarray, external: bool
) -> QuantizationRecipe:
    """Write the FP16 graph with FP32 islands to `target`; `sample` is one real network input."""
    from modelopt.onnx.autocast import convert_to_mixed_precision

    op_types = [op for g in groups for op in FP32_GROUPS[g].get("op_types", [])]
    nodes = [n for g in groups for n in FP32_GROUPS[g].get("nodes", [])]
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".autocast-") as tmp:
        reference = Path(tmp) / "reference.npz"
        np.savez(reference, **{INPUT_NAME: sample})
        with quiet_modelopt():
            model = convert_to_mixed_precision(
                str(source),
                low_precision_type="fp16",
                op_types_to_exclude=op_types,
                nodes_to_exclude=nodes,
                keep_io_types=True,
                calibration_data=str(reference),
            )
    save_onnx(model, target, external)
    return QuantizationRecipe(
        "nvidia-modelopt AutoCast", "autocast-fp16", op_types, list(groups), nodes, high_precision="fp32"
    )


def excluded_nodes(float_groups: list[str]) -> list[str]:
    """INT8_EXCLUDED plus the node patterns of the --int8-float groups (the names of the FP32
    ONNX graph are the OpenVINO IR's: the IR is converted from it)."""
    extra = [p for group in float_groups for p in FLOAT_GROUPS[group].get("patterns", []) if group != "head"]
    return INT8_EXCLUDED + [p for p in extra if p not in INT8_EXCLUDED]


def quantize_int8(
    source: Path, target: Path, calibration: CalibrationSet, float_groups: list[str] | None = None
) -> QuantizationRecipe:
    """Write the explicit Q/DQ INT8 graph to `target`, calibrated (entropy) on `calibration`,
    with the --int8-float groups left in higher precision too."""
    from modelopt.onnx.quantization import quantize

    from dav2.calibration.graph import (
        shape_only_nodes,  # onnx: seconds to import; dav2-export's --help reads this module
    )

    # a dynamic graph's positional-embedding resize (Model Optimizer matches names with re.match)
    excluded = excluded_nodes(float_groups or []) + [re.escape(name) + "$" for name in shape_only_nodes(source)]

    data = np.concatenate(list(calibration.tensors()))
    with quiet_modelopt(), onnxruntime_quantizer_restored():
        quantize(
            str(source),
            quantize_mode="int8",
            calibration_data=data,
            calibration_method="entropy",
            calibration_eps=["cpu"],
            op_types_to_quantize=INT8_OP_TYPES,
            nodes_to_exclude=excluded,
            high_precision_dtype="fp16",
            op_types_to_exclude_fp16=INT8_FP32_OP_TYPES,
            output_path=str(target),
            log_level="ERROR",
        )
    if not target.is_file():
        raise Dav2Error("Model Optimizer did not write the INT8 graph (see its messages above)")
    groups = list(float_groups or [])
    return QuantizationRecipe("nvidia-modelopt PTQ", "qdq-int8", INT8_OP_TYPES, groups, excluded, high_precision="fp16")


# What Model Optimizer's ort_utils.configure_ort / ort_patching.patch_ort_modules change in ONNX
# Runtime's quantization package: operator registries (LayerNormalization gets a Q/DQ handler)
# and calibrator/quantizer methods, replaced for the whole process.
ORT_PATCHED = {
    "onnxruntime.quantization.calibrate": (
        "create_calibrator",
        "CalibraterBase.__init__",
        "CalibraterBase.create_inference_session",
        "CalibraterBase.select_tensors_to_calibrate",
        "MinMaxCalibrater.augment_graph",
        "MinMaxCalibrater.collect_data",
        "MinMaxCalibrater.compute_data",
        "MinMaxCalibrater.merge_range",
        "HistogramCalibrater.augment_graph",
        "HistogramCalibrater.collect_data",
        "HistogramCollector.collect",
        "HistogramCollector.collect_value",
        "HistogramCollector.collect_absolute_value",
    ),
    "onnxruntime.quantization.qdq_quantizer": ("QDQQuantizer.check_opset_version",),
    "onnxruntime.quantization.base_quantizer": ("BaseQuantizer.adjust_tensor_ranges",),
}
ORT_REGISTRIES = ("QDQRegistry", "QLinearOpsRegistry", "IntegerOpsRegistry")


@contextlib.contextmanager
def onnxruntime_quantizer_restored():
    """Undo Model Optimizer's process-wide patches of ONNX Runtime's quantizer afterwards.

    Why: Model Optimizer quantizes through ONNX Runtime's quantizer after replacing parts of
    it for the whole process (ORT_PATCHED, and a LayerNormalization handler in the Q/DQ
    registry); without this, a later ONNX Runtime static INT8 export in the same process
    (one dav2-export making both, dav2-bench, the tests) fails on quantization parameters it
    never asked for."""
    import importlib

    from onnxruntime.quantization import registry

    saved_registries = {name: dict(getattr(registry, name)) for name in ORT_REGISTRIES}
    saved = []
    for module_name, paths in ORT_PATCHED.items():
        module = importlib.import_module(module_name)
        for path in paths:
            *owner_path, attribute = path.split(".")
            owner = module
            for part in owner_path:
                owner = getattr(owner, part)
            # vars(): the class's own attribute (None: it was inherited, so delete the patch)
            saved.append((owner, attribute, vars(owner).get(attribute) if owner_path else getattr(owner, attribute)))
    try:
        yield
    finally:
        for owner, attribute, value in saved:
            if value is None:
                if attribute in vars(owner):
                    delattr(owner, attribute)
            else:
                setattr(owner, attribute, value)
        for name, content in saved_registries.items():
            table = getattr(registry, name)
            table.clear()
            table.update(content)


@contextlib.contextmanager
def quiet_modelopt():
    """Model Optimizer logs every step at INFO/WARNING; keep our progress lines readable."""
    names = ("", "modelopt", "modelopt.onnx", "modelopt.onnx.autocast")  # "": it also logs on the root logger
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def explicit_onnx(context: ExportContext, precision: Precision) -> Built:
    """The precision-explicit ONNX artifact (`_fp16.onnx`, `_int8_qdq.onnx`), built once per
    export: `--onnx --fp16` and `--trt fp16` (likewise INT8) share it."""
    if precision in context.explicit:
        return context.explicit[precision]
    options = context.options
    if precision == Precision.FP16:
        path = context.folder("explicit-fp16") / f"{artifact_stem(context.model, options, precision)}.onnx"
        sample = processing.preprocess(context.image, fixed_hw=check_sizes(context.image.shape[:2], options)[0])
        groups = check_fp32_groups(context.request.keep_fp32 or list(DEFAULT_FP32_GROUPS))
        with console.step(f"converting to FP16 with Model Optimizer's AutoCast (kept in FP32: {', '.join(groups)})"):
            recipe = autocast_fp16(context.fp32_onnx, path, groups, sample, options.external_data)
        with console.step("checking the FP16 graph against PyTorch in ONNX Runtime"):
            report = parity.against_pytorch(
                onnxruntime_runner(path), context.model, context.image, options, precision, "the FP16 graph"
            )
    else:
        path = context.folder("explicit-int8") / f"{artifact_stem(context.model, options, precision)}_qdq.onnx"
        what = f"{len(context.calibration)} calibration images"
        with console.step(f"quantizing to explicit INT8 Q/DQ with Model Optimizer ({what}, entropy)"):
            recipe = quantize_int8(context.fp32_onnx, path, context.calibration, context.float_groups)
        report = None
    metadata = context.describe(path, ArtifactFormat.ONNX, precision)
    metadata.parity = report
    metadata.quantization = recipe
    metadata.calibration = context.calibration_record if precision == Precision.INT8 else None
    metadata.tools["modelopt"] = optional.version("nvidia-modelopt")
    built = onnx_built(path, metadata)
    built.companions.append(write_reference(context, path))
    context.explicit[precision] = built
    return built


def write_reference(context: ExportContext, graph: Path, explicit: bool = True) -> Path:
    """The FP32 reference outputs on the held-out images, beside `graph` (dav2.export.reference):
    what `--from` checks the engine against on the target. `explicit`: `graph` is a reduced-
    precision graph whose own AbsRel is recorded too (False: it is the FP32 graph itself)."""
    options = context.options
    camera_hw = parse_camera_size(context.request.camera_size)
    traced = min(options.height, options.width)
    extra = (processing.network_size(camera_hw, traced),) if camera_hw and options.dynamic else ()
    kind = context.kind
    with console.step(f"computing the FP32 reference outputs that travel with {graph.name}"):
        fixed_hw = None if options.dynamic else (options.height, options.width)
        measured = graph if explicit else None
        reference = make_reference(context.fp32_onnx, measured, context.holdout, traced, kind, extra, fixed_hw)
    if not trusted_onnxruntime(reference.onnxruntime):
        console.warn(
            f"ONNX Runtime {reference.onnxruntime} computes FP16 QuantizeLinear wrongly: the graph's own AbsRel in "
            f"{reference_path(graph).name} is not trustworthy (use onnxruntime>=1.32 for the export)"
        )
    path = reference_path(graph)
    reference.write(path)
    return path
