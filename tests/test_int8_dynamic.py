"""INT8 on dynamic graphs is as accurate as on static ones (issue 19).

A dynamic graph computes the positional-embedding resize from the patch counts at run time
(two MatMuls against interpolation matrices), where a static graph holds it as a constant;
ONNX Runtime's and Model Optimizer's quantizers quantized those MatMuls on dynamic graphs
only, and ONNX Runtime's static recipe left a static graph's linear layers (fused into Gemm)
in float while it quantized a dynamic graph's. OpenVINO's CPU plugin computed the DPT head's
bias-free INT8 convolutions as zeros when any input dimension was dynamic (an order of
magnitude worse than static; the same IR reshaped to a static shape was fine:
benchmarks/results/amd-epyc-2-cores-int8-dynamic-vs-static.md). dav2.calibration.graph names
the nodes; every INT8 path leaves them in float.

Both artifacts of a pair are measured here on the same square tensors (the dynamic one is fed
the static one's size), so the comparison is the graph's shape and nothing else.
"""

import cv2
import numpy as np
import onnx
import pytest
import torch

from conftest import IMAGES, export
from dav2 import accuracy, processing
from dav2.calibration.graph import dynamic_float_nodes, shape_only_nodes, unbiased_convolutions
from dav2.metadata import ArtifactMetadata
from dav2.models.checkpoint import load_model
from dav2.runtime.backends import open_backend
from dav2.vocabulary import ModelKind

pytestmark = pytest.mark.slow  # INT8 exports and NNCF

SIZE = 112
CALIBRATION = ("--calib-dir", str(IMAGES), "--calib-count", "4", "--holdout", "2", "--max-abs-rel", "off")
PATHS = {
    "openvino-nncf": ("--openvino", "int8"),
    "onnxruntime-static": ("--onnx", "--int8", "--ort-int8", "static"),
    "onnxruntime-dynamic": ("--onnx", "--int8", "--ort-int8", "dynamic"),
    "modelopt-qdq": ("--onnx", "--int8", "--ort-int8", "qdq"),
}
CHECK_IMAGES = ("demo02.jpg", "demo05.jpg", "demo09.jpg", "demo13.jpg")


def export_pair(checkpoint, tmp_path, path: str):
    """(dynamic artifact traced at SIZE, static SIZE x SIZE artifact) of one INT8 path."""
    args = (*PATHS[path], *CALIBRATION, "--height", str(SIZE), "--width", str(SIZE))
    if path == "modelopt-qdq":
        pytest.importorskip("modelopt.onnx", reason="Model Optimizer is not installed (pip install 'dav2[modelopt]')")
    if path == "openvino-nncf":
        pytest.importorskip("nncf", reason="NNCF is not installed (pip install 'dav2[openvino]')")
    return export(checkpoint, tmp_path / "dynamic", *args, "--dynamic"), export(checkpoint, tmp_path / "static", *args)


def abs_rel(artifact, model) -> float:
    """Mean AbsRel against PyTorch FP32 on CHECK_IMAGES at SIZE x SIZE."""
    values = []
    with open_backend(artifact) as backend:
        for name in CHECK_IMAGES:
            tensor = processing.preprocess(cv2.imread(str(IMAGES / name)), fixed_hw=(SIZE, SIZE))
            with torch.no_grad():
                expected = model(torch.from_numpy(tensor)).numpy()
            actual = backend.infer(tensor)
            values.append(accuracy.compare(actual[0], expected[0], ModelKind.RELATIVE)["abs_rel"])
    return float(np.mean(values))


@pytest.fixture(scope="module")
def model(vits_checkpoint):
    return load_model("vits", "relative", None, str(vits_checkpoint))[0]


@pytest.fixture(scope="module")
def pairs(vits_checkpoint, tmp_path_factory):
    """export_pair per path, made once: the accuracy test and the graph-structure tests of a
    path read the same dynamic artifact (an INT8 export is the slow part of this module)."""
    made = {}

    def get(path: str):
        if path not in made:
            made[path] = export_pair(vits_checkpoint, tmp_path_factory.mktemp(path), path)
        return made[path]

    return get


@pytest.mark.parametrize("path", list(PATHS))
def test_dynamic_int8_is_within_1_5x_of_static(model, pairs, path):
    dynamic, static = pairs(path)
    assert ArtifactMetadata.read(dynamic).dynamic and not ArtifactMetadata.read(static).dynamic
    dynamic_abs_rel, static_abs_rel = abs_rel(dynamic, model), abs_rel(static, model)
    assert dynamic_abs_rel <= 1.5 * static_abs_rel, (path, dynamic_abs_rel, static_abs_rel)


def test_shape_only_nodes_are_the_positional_embedding_resize(dynamic_onnx_56):
    dynamic = dynamic_onnx_56
    found = shape_only_nodes(dynamic)
    graph = onnx.load(str(dynamic), load_external_data=False).graph
    ops = {node.name: node.op_type for node in graph.node}
    # two MatMuls (rows and columns of the separable bicubic resize), outside every block and the head
    assert len(found) == 2 and all(ops[name] == "MatMul" for name in found)
    assert not any("blocks" in name or "depth_head" in name for name in found)
    assert unbiased_convolutions(dynamic) == [f"/depth_head/layer{i}_rn/Conv" for i in range(1, 5)]
    assert dynamic_float_nodes(dynamic, dynamic=False) == []


def quantized_onnx_nodes(path) -> set[str]:
    """Names of the nodes of an INT8 ONNX graph with a quantized input (Q/DQ, or ONNX
    Runtime's dynamic MatMulInteger, whose name keeps the original's plus `_quant`)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {out: node for node in graph.node for out in node.output}
    found = set()
    for node in graph.node:
        if node.op_type in ("MatMulInteger", "ConvInteger"):
            found.add(node.name.removesuffix("_quant"))
        sources = [producer.get(name) for name in node.input]
        if any(s is not None and s.op_type == "DequantizeLinear" and s.input[0] not in producer for s in sources):
            continue  # a weight stored as INT8 and dequantized: still counted by its activation's DQ below
        if any(s is not None and s.op_type == "DequantizeLinear" for s in sources):
            found.add(node.name)
    return found


@pytest.mark.parametrize("path", ["onnxruntime-static", "onnxruntime-dynamic", "modelopt-qdq"])
def test_onnx_int8_leaves_the_positional_embedding_resize_in_float(dynamic_onnx_56, pairs, path):
    fp32 = dynamic_onnx_56
    int8, _ = pairs(path)
    quantized = quantized_onnx_nodes(int8)
    assert any("/blocks.0/" in name for name in quantized)  # the encoder is INT8
    assert not set(shape_only_nodes(fp32)) & quantized


def test_nncf_leaves_the_resize_and_the_bias_free_convolutions_in_float(pairs):
    """No FakeQuantize in front of the kept nodes. NNCF 3.4's SmoothQuant ignores the ignored
    scope and still rescales the resize MatMul's input (x·s, W/s: exact, nothing rounded to
    INT8), so one smooth-quant Multiply may sit there, itself fed by no FakeQuantize."""
    ov = pytest.importorskip("openvino")
    xml, _ = pairs("openvino-nncf")
    kept = ArtifactMetadata.read(xml).quantization.float_nodes
    assert len(kept) == 6  # the two resize MatMuls and layer1_rn ... layer4_rn
    ops = {op.get_friendly_name(): op for op in ov.Core().read_model(str(xml)).get_ordered_ops()}

    def sources(node):
        found = [port.get_source_output().get_node() for port in node.inputs()]
        smoothing = [s for s in found if s.get_friendly_name().endswith("nncf_smooth_quant")]
        return found + [t for s in smoothing for t in sources(s)]

    for name in kept:
        assert not any(node.get_type_name() == "FakeQuantize" for node in sources(ops[name])), name
    assert any(node.get_type_name() == "FakeQuantize" for node in ops.values())  # the rest is INT8
