"""NNCF post-training quantization of an OpenVINO model from the calibration set.

The transformer preset (model_type=TRANSFORMER) is NNCF's recipe for ViT blocks: it quantizes
the MatMuls (with SmoothQuant on their inputs) and leaves LayerNorm, Softmax and GELU in the
runtime's float precision. `float_groups` leave named parts of the network in float (mixed
precision): the DPT head, the attention MatMuls (softmax(q kᵀ) v), one kind of linear layer
across the blocks (qkv, proj, fc1, fc2), the patch embedding, or single blocks (block0 ...).
Which ones cost how much accuracy on these weights was measured, group by group, in
benchmarks/results/amd-epyc-2-cores-int8-error-sources.md.

On dynamic graphs the export also passes `float_nodes`
(dav2.calibration.graph.dynamic_float_nodes): the positional-embedding resize (left out by
every INT8 path) and the head's bias-free convolutions, which OpenVINO's CPU plugin computes
as zeros in INT8 once an input dimension is dynamic (issue 19).

`quantize_openvino_within` is the same recipe under NNCF's accuracy control: NNCF quantizes
everything, measures AbsRel against the FP32 model on the validation images, ranks the
quantized operations by how much AbsRel each one costs, and returns them to float, worst
first, until the budget is met. The result is a mixed-precision model whose float layers were
chosen by measurement on these weights, not by a fixed list.

NNCF validates with the float parts in f32 (its engine forces the f32 inference precision), so
the budget it meets is the INT8 error alone. A CPU that runs float layers in BF16 (OpenVINO's
default where the CPU has it) adds its own error on top (BF16 alone, on vits at 518:
benchmarks/results/amd-epyc-2-cores-int8-error-sources.md); the export's accuracy report
measures the artifact as it will run, on the held-out images, and --max-abs-rel refuses it
when that misses. On the 2-core CI machine at 518 it ranked and re-ranked without reaching
0.01 until it was stopped (docs/int8.md, "INT8 within a budget"; no results file records that
run), which is why dav2-bench pick tries the measured `float_groups` recipes instead.
"""

import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from dav2 import accuracy, optional
from dav2.calibration.dataset import CalibrationSet
from dav2.errors import Dav2Error

MAX_BLOCKS = 40  # ViT-G has 40 blocks
FLOAT_GROUPS: dict[str, dict[str, list[str]]] = {  # group -> NNCF IgnoredScope fields
    # the head's upsampling layers (ConvolutionBackpropData) carry no /depth_head/ name in the IR
    "head": {"patterns": [r".*depth_head.*"], "types": ["ConvolutionBackpropData"]},
    "patch_embed": {"patterns": [r".*/patch_embed/.*"]},
    "attention": {"patterns": [r".*/blocks\.\d+/attn/(MatMul|Gather).*"]},  # the inputs of softmax(q kᵀ) v
    "qkv": {"patterns": [r".*/blocks\.\d+/attn/qkv/.*"]},
    "proj": {"patterns": [r".*/blocks\.\d+/attn/proj/.*"]},
    "fc1": {"patterns": [r".*/blocks\.\d+/mlp/fc1/.*"]},
    "fc2": {"patterns": [r".*/blocks\.\d+/mlp/fc2/.*"]},
    **{f"block{i}": {"patterns": [rf".*/blocks\.{i}/.*"]} for i in range(MAX_BLOCKS)},
}
COMPUTE_OPS = ("MatMul", "Convolution", "ConvolutionBackpropData", "GroupConvolution")
RANKING_SUBSET = 3  # validation images NNCF ranks the operations on (each rank costs one inference per image)


@dataclass
class ControlledQuantization:
    """What accuracy control did (the export records it as `metadata.AccuracyControl`)."""

    max_abs_rel: float
    validation_images: int
    validation_abs_rel: float  # of the returned model, float parts in f32, on the validation images
    int8_ops: list[str] = field(default_factory=list)  # compute operations with INT8 inputs
    float_ops: list[str] = field(default_factory=list)  # compute operations left in float
    seconds: float = 0.0


@contextlib.contextmanager
def quiet_nncf() -> Iterator[None]:
    """NNCF logs every step at INFO (over a hundred lines per export) and draws progress bars
    on stdout; dav2 keeps stdout for results (the artifact path, a report, the --json line) and
    prints its own progress line per step. So while NNCF works, only its warnings and errors
    are shown (on stderr, with dav2's own messages) and its progress bars go nowhere."""
    logger = logging.getLogger("nncf")
    handlers = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    saved = (logger.level, [(h.level, h.stream) for h in handlers])
    logger.setLevel(logging.WARNING)
    for handler in handlers:
        handler.setLevel(logging.WARNING)
        handler.setStream(sys.stderr)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # rich writes to sys.stdout
            yield
    finally:
        logger.setLevel(saved[0])
        for handler, (level, stream) in zip(handlers, saved[1]):
            handler.setLevel(level)
            handler.setStream(stream)


def check_float_groups(groups: list[str], blocks: int = MAX_BLOCKS) -> list[str]:
    """The groups, or one Dav2Error naming the unknown ones and the choices (`blocks`: the
    encoder's depth, so vits, with 12 blocks, refuses block30 instead of quantizing everything)."""
    known = [name for name in FLOAT_GROUPS if not name.startswith("block")] + [f"block{i}" for i in range(blocks)]
    unknown = [group for group in groups if group not in known]
    if unknown:
        choices = ", ".join(known[:-blocks]) + f", block0 ... block{blocks - 1}"
        raise Dav2Error(f"unknown --int8-float group(s) {', '.join(unknown)}; choose from {choices}")
    return list(dict.fromkeys(groups))


def float_scope(nncf, groups: list[str], nodes: list[str] | None = None):
    """NNCF's IgnoredScope for the groups left in float and the named `nodes` (None: quantize
    everything); an unknown group is a Dav2Error, not a pattern that silently matches nothing.
    `nodes` are names of the FP32 ONNX graph (the IR keeps them), e.g. from
    dav2.calibration.graph.dynamic_float_nodes."""
    groups = check_float_groups(groups)
    if not groups and not nodes:
        return None
    patterns = [p for group in groups for p in FLOAT_GROUPS[group].get("patterns", [])]
    types = sorted({t for group in groups for t in FLOAT_GROUPS[group].get("types", [])})
    return nncf.IgnoredScope(names=list(nodes or []), patterns=patterns, types=types, validate=False)


def quantize_openvino(
    ov_model, calibration: CalibrationSet, float_groups: list[str] | None = None, float_nodes: list[str] | None = None
):
    """An INT8 copy of `ov_model` (openvino.Model), calibrated on `calibration`, with the
    `float_groups` (FLOAT_GROUPS) and the named `float_nodes` left in float."""
    nncf = optional.require("nncf", "OpenVINO INT8")
    dataset = nncf.Dataset(list(calibration.tensors()))
    with quiet_nncf():
        return nncf.quantize(
            ov_model,
            dataset,
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration),
            ignored_scope=float_scope(nncf, float_groups or [], float_nodes),
        )


def quantize_openvino_within(
    ov_model,
    calibration: CalibrationSet,
    max_abs_rel: float,
    float_groups: list[str] | None = None,
    float_nodes: list[str] | None = None,
    *,
    kind: str,
):
    """(mixed-precision model, ControlledQuantization): INT8 where it keeps AbsRel within
    `max_abs_rel` against the FP32 model on the calibration set's validation images; a metric
    `kind` is judged in metres as they are (accuracy.compare), not after scale-and-shift alignment."""
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
    with quiet_nncf():
        scope = float_scope(nncf, float_groups or [], float_nodes)
        judge = functools.partial(validate, kind=kind)
        quantized = accuracy_controlled(nncf, ov_model, calibration, validation, max_abs_rel, scope, restorer, judge)
    checked = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    abs_rel = -validate(checked, zip(tensors, references), kind)[0]
    int8, kept = split_by_precision(quantized)
    record = ControlledQuantization(max_abs_rel, len(tensors), abs_rel, int8, kept, time.perf_counter() - start)
    return quantized, record


def accuracy_controlled(nncf, ov_model, calibration, validation, max_abs_rel, ignored_scope, restorer, validate):
    """NNCF's accuracy-aware quantization: metric minus AbsRel, so the budget is an absolute drop."""
    return nncf.quantize_with_accuracy_control(
        ov_model,
        nncf.Dataset(list(calibration.tensors())),
        validation,
        validate,
        max_drop=max_abs_rel,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),
        ignored_scope=ignored_scope,
        advanced_accuracy_restorer_parameters=restorer,
    )


def validate(compiled_model, items, kind: str = "relative") -> tuple[float, list[float]]:
    """NNCF's validation function: higher is better, so the metric is minus AbsRel against the
    FP32 reference of each (tensor, reference) item; one value per item lets NNCF rank. `kind`
    as accuracy.compare takes it: a metric model's metres are compared unaligned."""
    values = [
        -accuracy.compare(compiled_model(tensor)[0][0], reference, kind)["abs_rel"] for tensor, reference in items
    ]
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
