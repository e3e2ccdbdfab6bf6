"""The nodes of the FP32 ONNX graph that INT8 must leave in float when the graph is dynamic.

A dynamic graph computes some things from the input's *shape* that a static graph holds as
constants: both torch exporters fold the positional-embedding resize (DINOv2's bicubic
interpolation of the 37x37 grid to the patch counts, two MatMuls against interpolation
matrices) into one constant when the size is fixed, but a dynamic graph builds the matrices
from the patch counts at run time. A quantizer then sees two more MatMuls with a constant
operand and quantizes them: ONNX Runtime's dynamic and static recipes and Model Optimizer's
Q/DQ all did, on dynamic graphs only, which put an INT8-rounded positional embedding into
every token. `shape_only_nodes` finds them by what they depend on, not by name, so it holds
for both exporters and any encoder.

OpenVINO INT8 (NNCF) left those MatMuls unquantized; its dynamic artifacts failed for another
reason, found by comparing intermediate outputs of the same quantized IR compiled with a
dynamic and with a static input shape: the DPT head's bias-free convolutions (`layer1_rn` ...
`layer4_rn`, the only convolutions without a bias) come out as zeros from OpenVINO's CPU
plugin in INT8 once any input dimension is dynamic (the plugin then fuses the dequantization
scale into the convolution), while the identical IR reshaped to a static shape is correct.
`unbiased_convolutions` lists them; NNCF keeps them in float on dynamic graphs, with the
shape-only MatMuls (NNCF 3.4's SmoothQuant still rescales the first one's input, x·s against
W/s: exact, nothing is rounded to INT8 there).

A static graph's resize MatMuls have only constants upstream: `shape_only_nodes` names them
too, and leaving them out changes nothing there (the quantizers fold or skip them).
"""

from pathlib import Path

import onnx

SHAPE_OPS = ("Shape", "Size")  # their outputs depend on the input's shape, never its values
QUANTIZABLE_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def load_graph(source: Path | onnx.ModelProto) -> onnx.GraphProto:
    if isinstance(source, onnx.ModelProto):
        return source.graph
    return onnx.load(str(source), load_external_data=False).graph


def shape_only_nodes(source: Path | onnx.ModelProto, op_types: tuple[str, ...] = QUANTIZABLE_OPS) -> list[str]:
    """Names of the `op_types` nodes whose inputs do not depend on the graph input's values
    (nothing but Shape/Size and constants feed them): constants at any one size, so they are
    not quantized on a dynamic graph either."""
    graph = load_graph(source)
    varying = {value.name for value in graph.input} - {init.name for init in graph.initializer}
    found = []
    for node in graph.node:  # ONNX lists nodes in topological order
        depends = any(name in varying for name in node.input if name)
        if node.op_type in SHAPE_OPS:
            continue
        if depends:
            varying.update(node.output)
        elif node.op_type in op_types:
            found.append(node.name)
    return found


def unbiased_convolutions(source: Path | onnx.ModelProto) -> list[str]:
    """Names of the Conv nodes without a bias input (the DPT head's layerN_rn): see the module
    docstring for why OpenVINO INT8 keeps them in float on dynamic graphs."""
    graph = load_graph(source)
    return [node.name for node in graph.node if node.op_type == "Conv" and (len(node.input) < 3 or not node.input[2])]


def dynamic_float_nodes(source: Path | onnx.ModelProto, dynamic: bool) -> list[str]:
    """What OpenVINO INT8 (NNCF) keeps in float: on dynamic graphs, the shape-only MatMuls and
    the bias-free convolutions; nothing on static ones."""
    if not dynamic:
        return []
    return shape_only_nodes(source) + unbiased_convolutions(source)
