"""TensorRT: engines are strongly typed, built from precision-explicit ONNX graphs.

What needs no GPU is tested everywhere: shape profiles, the engine's metadata, version and
GPU compatibility, and above all the precision-explicit FP16/INT8 ONNX graphs the engines are
built from, measured in ONNX Runtime and OpenVINO on this CPU. Building and running an engine
need TensorRT and a GPU (not on the CI machine): that test skips with the reason.
"""

import json
import re

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from conftest import DATA, IMAGES, export
from dav2 import accuracy, optional, processing
from dav2.cli import export_main, run_main
from dav2.errors import Dav2Error
from dav2.export.context import GraphOptions
from dav2.export.explicit import INT8_EXCLUDED
from dav2.export.tensorrt import (
    engine_metadata,
    engine_record,
    optimization_profile,
    parse_shape,
    timing_cache_path,
)
from dav2.media import read_image, scan_folder
from dav2.metadata import ArtifactMetadata, QuantizationRecipe, sidecar_path
from dav2.runtime.backends import open_backend
from dav2.runtime.backends.openvino import OpenVinoBackend
from dav2.runtime.backends.tensorrt import (
    check_engine_compatible,
    check_in_profile,
    check_tensorrt_version,
    parse_version,
    tensorrt_missing,
)
from dav2.runtime.cuda import GpuInfo

pytestmark = pytest.mark.slow  # exports and quantizes the precision-explicit graphs on this CPU

HAVE_TENSORRT = optional.available("tensorrt")
GPU = GpuInfo("NVIDIA GeForce RTX 4090", "8.9", "12.4")
SMALL = ["--dynamic", "--height", "196", "--width", "196"]  # traced (and calibrated) at 196: quick


# -- shape profiles --------------------------------------------------------------------------


def test_static_graph_has_one_fixed_shape():
    profile = optimization_profile(GraphOptions(266, 364, dynamic=False))
    assert profile.min == profile.opt == profile.max == (1, 3, 266, 364)
    with pytest.raises(Dav2Error, match="leave out --height/--width/--static"):
        optimization_profile(GraphOptions(266, 364, dynamic=False), preset="batch")


def test_presets_and_overrides():
    dynamic = GraphOptions(dynamic=True)
    default = optimization_profile(dynamic, check_hw=(518, 686))  # opt: the check image's own size
    assert default.as_dict() == {"min": [1, 3, 196, 196], "opt": [1, 3, 518, 686], "max": [1, 3, 924, 924]}
    assert optimization_profile(dynamic, "batch").max == (8, 3, 518, 518)
    camera = optimization_profile(dynamic, "camera", camera_hw=(720, 1280))  # exactly the camera's frames
    assert camera.min == camera.opt == camera.max == (1, 3, 518, 924)
    custom = optimization_profile(dynamic, "camera", min_shape="1x364x364", max_shape="2x518x1288")
    assert custom.min == (1, 3, 364, 364) and custom.max == (2, 3, 518, 1288)
    with pytest.raises(Dav2Error, match="add --profile camera"):
        optimization_profile(dynamic, camera_hw=(720, 1280))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_shape": "1x500x500"}, "multiples of 14"),
        ({"opt_shape": "1x1064x1064"}, "min <= opt <= max"),
        ({"min_shape": "0x196x196"}, "at least 1"),
        ({"max_shape": "518x518"}, "BATCHxHEIGHTxWIDTH"),
        ({"preset": "huge"}, "unknown profile preset"),
    ],
)
def test_bad_profiles_are_explained(kwargs, message):
    with pytest.raises(Dav2Error, match=message):
        optimization_profile(GraphOptions(dynamic=True), **kwargs)


def test_parse_shape():
    assert parse_shape("4x518x686") == (4, 518, 686)
    assert parse_shape("1,308,308") == (1, 308, 308)


def test_an_input_outside_the_profile_is_one_clear_error():
    record = engine_record(optimization_profile(GraphOptions(dynamic=True)), "10.3.0", GPU, 4.0)
    check_in_profile((1, 3, 518, 924), record)
    with pytest.raises(Dav2Error, match=r"outside this engine's shape profile \(min \(1, 3, 196, 196\)"):
        check_in_profile((1, 3, 518, 938), record)
    with pytest.raises(Dav2Error, match="outside"):
        check_in_profile((2, 3, 518, 518), record)


# -- metadata, versions, caches ------------------------------------------------------------


def source_metadata(precision: str = "fp16") -> ArtifactMetadata:
    return ArtifactMetadata(
        artifact=f"m_{precision}.onnx",
        format="onnx",
        encoder="vits",
        kind="relative",
        precision=precision,
        dynamic=True,
        input_shape=None,
        quantization=QuantizationRecipe("nvidia-modelopt AutoCast", "autocast-fp16"),
    )


def test_engine_metadata_records_where_it_runs_and_what_it_came_from(tmp_path):
    profile = optimization_profile(GraphOptions(dynamic=True), check_hw=(518, 686))
    record = engine_record(profile, "10.3.0", GPU, 4.0)
    meta = engine_metadata(source_metadata(), tmp_path / "m_fp16.engine", record)
    assert (meta.artifact, meta.format, meta.precision) == ("m_fp16.engine", "tensorrt", "fp16")
    assert meta.source_onnx == "m_fp16.onnx" and meta.quantization.mode == "autocast-fp16"
    assert meta.tensorrt.version == "10.3.0" and meta.tensorrt.compute_capability == "8.9"
    assert meta.tensorrt.profile["opt"] == [1, 3, 518, 686] and meta.tensorrt.strongly_typed
    meta.write(tmp_path / "m_fp16.engine")
    assert ArtifactMetadata.read(tmp_path / "m_fp16.engine") == meta


def test_engine_from_another_version_or_gpu_is_refused_with_the_reason():
    record = engine_record(optimization_profile(GraphOptions(dynamic=False)), "10.3.0", GPU, 4.0)
    check_engine_compatible(record, "10.3.0", GPU)
    with pytest.raises(Dav2Error, match=r"built with TensorRT 10\.3\.0, but TensorRT 10\.7\.0"):
        check_engine_compatible(record, "10.7.0", GPU)
    orin = GpuInfo("Orin", "8.7", "12.6")
    with pytest.raises(Dav2Error, match=r"built for NVIDIA GeForce RTX 4090 \(compute capability 8\.9\).*Orin"):
        check_engine_compatible(record, "10.3.0", orin)
    with pytest.raises(Dav2Error, match="no TensorRT record"):
        check_engine_compatible(None, "10.3.0", GPU)


def test_supported_versions_are_10_3_to_11():
    assert parse_version("10.3.0.26") == (10, 3, 0)
    assert parse_version("8.6.2.post1") == (8, 6, 2)
    for version in ("10.3.0", "10.13.0.35", "11.4.0.106"):
        check_tensorrt_version(version)
    with pytest.raises(Dav2Error, match="too old.*JetPack 5 with TensorRT 8.5 is not supported"):
        check_tensorrt_version("8.5.2")
    with pytest.raises(Dav2Error, match="too old"):
        check_tensorrt_version("10.2.0")
    with pytest.raises(Dav2Error, match="newer than dav2 supports"):
        check_tensorrt_version("12.0.0")


def test_timing_cache_is_named_by_tensorrt_version_and_gpu(tmp_path):
    assert timing_cache_path(tmp_path, GPU, "10.3.0").name == "tensorrt-10.3.0-nvidia-geforce-rtx-4090.timing-cache"
    assert timing_cache_path(tmp_path, GPU, "10.3.0") != timing_cache_path(tmp_path, GPU, "11.4.0")


# -- the precision-explicit graphs, on this CPU ----------------------------------------------


def holdout_tensors(size: int = 196) -> list[np.ndarray]:
    """Three photos the INT8 calibration below never sees (it draws from the others)."""
    photos = scan_folder(IMAGES).files[-3:]
    return [processing.preprocess(read_image(p), size) for p in photos]


def abs_rel(run, reference, tensors) -> float:
    return float(np.mean([accuracy.compare(run(t)[0], reference(t)[0])["abs_rel"] for t in tensors]))


@pytest.fixture(scope="module")
def fp32_reference(vits_checkpoint, tmp_path_factory):
    graph = export(vits_checkpoint, tmp_path_factory.mktemp("fp32"), "--onnx", *SMALL)
    with open_backend(graph) as backend:
        yield backend.infer


def test_trt_fp16_without_tensorrt_writes_the_fp16_graph_and_says_how_to_finish(trt_fp16_without_tensorrt):
    result, out = trt_fp16_without_tensorrt
    assert result.exit_code == 1  # --trt alone means FP16
    graph = out / "depth_anything_v2_vits_dynamic_fp16.onnx"
    assert result.stdout.strip() == str(graph)
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: TensorRT is not installed here: wrote {graph}; build its engine where TensorRT and the GPU are "
        f"with dav2-export --trt fp16 --from {graph}"
    )
    assert sorted(p.name for p in out.iterdir()) == [graph.name, f"{graph.name}.json", f"{graph.name}.reference.npz"]


@pytest.fixture(scope="module")
def fp16_graph(fp16_graph_196):
    assert fp16_graph_196.name == "depth_anything_v2_vits_dynamic_fp16.onnx"
    return fp16_graph_196


def test_fp16_graph_is_fp16_with_fp32_islands_and_fp32_io(fp16_graph):
    model = onnx.load(str(fp16_graph))
    float32, float16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == float32
    assert model.graph.output[0].type.tensor_type.elem_type == float32
    weights = {t.name: t.data_type for t in model.graph.initializer}
    assert sum(dtype == float16 for dtype in weights.values()) > 100  # the MatMul/Conv weights
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    assert norms and all(weights[n.input[1]] == float32 for n in norms)  # --keep-fp32 layernorm
    head = [n for n in model.graph.node if n.name.startswith("/depth_head/output_conv") and n.op_type == "Conv"]
    assert head and all(weights[n.input[1]] == float32 for n in head)  # --keep-fp32 head
    meta = ArtifactMetadata.read(fp16_graph)
    assert meta.precision == "fp16" and meta.quantization.mode == "autocast-fp16"
    assert meta.quantization.float_groups == ["layernorm", "softmax", "attention", "head"]


def test_fp16_graph_accuracy_in_onnxruntime_and_openvino(fp16_graph, fp32_reference):
    tensors = holdout_tensors()
    with open_backend(fp16_graph) as ort_fp16:
        assert abs_rel(ort_fp16.infer, fp32_reference, tensors) <= 1e-3  # measured 0.0006 at 518
    with OpenVinoBackend(fp16_graph, None, inference_precision="f32") as ov_fp16:
        assert abs_rel(ov_fp16.infer, fp32_reference, tensors) <= 1e-3  # measured 0.0003 at 518


@pytest.fixture(scope="module")
def int8_graph(vits_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    calibration = ["--calib-dir", IMAGES, "--calib-count", "6", "--holdout", "3", "--calib-seed", "0"]
    args = ["--checkpoint", vits_checkpoint, "--onnx", "--int8", "--ort-int8", "qdq", *SMALL, *calibration]
    args += ["--int8-float", "patch_embed"]  # the image itself is not quantized (docs/int8.md: INT8 error sources)
    result = CliRunner().invoke(export_main, [str(a) for a in [*args, "--output", out]])
    assert result.exit_code == 0, result.output
    return out / "depth_anything_v2_vits_dynamic_int8_qdq.onnx"


def test_int8_graph_has_explicit_qdq_outside_attention_and_head(int8_graph):
    model = onnx.load(str(int8_graph))
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    quantized = [n for n in model.graph.node if n.op_type in ("MatMul", "Conv") and set(n.input) & dequantized]
    assert len(quantized) >= 48  # qkv, proj, fc1, fc2 of 12 blocks
    assert not [n.name for n in quantized if any(re.fullmatch(p, n.name) for p in INT8_EXCLUDED)]
    assert not [n.name for n in quantized if "/patch_embed/" in n.name]  # --int8-float patch_embed
    assert any("/attn/proj/" in n.name for n in quantized)
    meta = ArtifactMetadata.read(int8_graph)
    assert meta.precision == "int8" and meta.quantization.mode == "qdq-int8"
    assert meta.calibration.count == 6


def test_int8_graph_accuracy_in_onnxruntime_and_openvino(int8_graph, fp32_reference):
    tensors = holdout_tensors()
    with open_backend(int8_graph) as ort_int8:
        assert abs_rel(ort_int8.infer, fp32_reference, tensors) <= 0.04  # measured 0.005 (518)
    with OpenVinoBackend(int8_graph, None) as ov_int8:
        assert abs_rel(ov_int8.infer, fp32_reference, tensors) <= 0.04  # measured 0.009 (518)


# -- without TensorRT or a GPU --------------------------------------------------------------


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_from_without_tensorrt_is_one_line_and_writes_nothing(fp16_graph, tmp_path):
    result = CliRunner().invoke(export_main, ["--trt", "fp16", "--from", str(fp16_graph), "--output", str(tmp_path)])
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "TensorRT export and inference needs tensorrt" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_from_needs_a_dav2_onnx_of_the_asked_precision(fp16_graph, tmp_path):
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(fp16_graph.read_bytes())
    out = tmp_path / "out"
    result = CliRunner().invoke(export_main, ["--trt", "fp16", "--from", str(foreign), "--output", str(out)])
    assert result.exit_code == 1 and "needs a dav2 ONNX artifact with its sidecar (foreign.onnx.json)" in result.stderr
    result = CliRunner().invoke(export_main, ["--trt", "int8", "--from", str(fp16_graph), "--output", str(out)])
    assert result.exit_code == 1 and "--trt int8 was asked, but" in result.stderr and "is a fp16 graph" in result.stderr
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_running_an_engine_without_tensorrt_is_one_error(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 64)
    record = engine_record(optimization_profile(GraphOptions(dynamic=False)), "10.3.0", GPU, 4)
    metadata = engine_metadata(source_metadata(), engine, record)
    metadata.write(engine)
    assert json.loads(sidecar_path(engine).read_text())["format"] == "tensorrt"
    result = CliRunner().invoke(run_main, ["--model", str(engine)])
    assert result.exit_code == 1 and "needs tensorrt" in result.stderr
    assert tensorrt_missing() == "TensorRT is not installed here"


@pytest.mark.skipif(tensorrt_missing() is not None, reason=f"{tensorrt_missing()} (no wheel installs on this machine)")
def test_fp16_engine_builds_from_the_fp16_graph_and_matches_it(vits_checkpoint, tmp_path):
    engine = export(vits_checkpoint, tmp_path, "--trt", "fp16", "--height", "266", "--width", "364")
    meta = ArtifactMetadata.read(engine)
    assert meta.format == "tensorrt" and meta.tensorrt.strongly_typed and meta.accuracy.delta1 >= 0.98
    tensor = np.random.default_rng(0).standard_normal((1, 3, 266, 364)).astype(np.float32)
    with open_backend(engine) as backend, open_backend(engine.with_suffix(".onnx")) as source:
        depth = backend.infer(tensor)
        expected = source.infer(tensor)
        assert set(backend.last_timing) >= {"h2d_ms", "infer_ms", "d2h_ms"}
    assert depth.shape == (1, 266, 364)
    assert np.abs(depth - expected).max() / max(1.0, np.abs(expected).max()) < 1e-2


# -- what TensorRT 10.3 (JetPack 6.1/6.2) can parse, and the FP32 islands it must keep ---------

OPERATORS_10_3 = DATA / "onnx-tensorrt-10.3-operators.txt"


def tensorrt_10_3_support() -> tuple[set[str], tuple[int, int], dict[str, set[str]]]:
    """(operators, (lowest, highest) opset, Resize restrictions) from onnx-tensorrt's list."""
    operators, opsets, resize = set(), None, {}
    for line in OPERATORS_10_3.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] == "opset":
            opsets = (int(words[1]), int(words[2]))
        elif words[0].startswith("resize-"):
            resize[words[0]] = set(words[1:])
        else:
            operators.add(line.split("\t")[0])
    return operators, opsets, resize


def tensorrt_10_3_problems(model: onnx.ModelProto) -> list[str]:
    operators, (low, high), resize = tensorrt_10_3_support()
    problems = [
        f"opset {o.version}" for o in model.opset_import if o.domain in ("", "ai.onnx") and not low <= o.version <= high
    ]
    problems += sorted({f"{n.op_type} (not supported)" for n in model.graph.node if n.op_type not in operators})
    for node in (n for n in model.graph.node if n.op_type == "Resize"):
        attributes = {a.name: a.s.decode() for a in node.attribute if a.type == onnx.AttributeProto.STRING}
        if attributes.get("mode", "nearest") not in resize["resize-modes"]:
            problems.append(f"{node.name}: Resize mode {attributes['mode']}")
        if attributes.get("coordinate_transformation_mode", "half_pixel") not in resize["resize-coordinate-modes"]:
            problems.append(f"{node.name}: Resize {attributes['coordinate_transformation_mode']}")
    return problems


def test_the_operator_list_can_fail():
    operators, opsets, resize = tensorrt_10_3_support()
    assert {"LayerNormalization", "QuantizeLinear", "DequantizeLinear", "Softmax", "Erf"} <= operators
    assert not {"Unique", "DynamicQuantizeLinear"} & operators and opsets == (9, 20)
    cubic = onnx.helper.make_node("Resize", ["x", "", "s"], ["y"], name="r", mode="cubic")
    graph = onnx.helper.make_graph([cubic, onnx.helper.make_node("Unique", ["y"], ["z"])], "g", [], [])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)])
    assert tensorrt_10_3_problems(model) == ["opset 21", "Unique (not supported)", "r: Resize mode cubic"]


def fp32_island_types(model: onnx.ModelProto, attention: bool = True) -> dict[str, int]:
    """Output element type of every node that must compute in FP32: LayerNormalization, Softmax
    and (`attention`) the attention MatMuls (q·kᵀ and ·v)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.output]}
    islands = [
        n for n in model.graph.node
        if n.op_type in ("LayerNormalization", "Softmax") or (attention and re.search(r"/attn/MatMul(_1)?$", n.name))
    ]  # fmt: skip
    return {n.name: types.get(n.output[0], 0) for n in islands}


@pytest.mark.parametrize("graph", ["fp16_graph", "int8_graph"])
def test_explicit_graphs_parse_in_tensorrt_10_3_and_keep_fp32_islands(graph, request):
    model = onnx.load(str(request.getfixturevalue(graph)))
    assert tensorrt_10_3_problems(model) == []
    # the INT8 graph's attention MatMuls stay FP16 (dav2.export.explicit.INT8_FP32_OP_TYPES says why)
    attention = graph == "fp16_graph"
    islands = fp32_island_types(model, attention)
    # per block: 2 LayerNorms, Softmax (and 2 attention MatMuls); 4 output norms
    assert len(islands) == 12 * (5 if attention else 3) + 4
    not_fp32 = {name: onnx.TensorProto.DataType.Name(t) for name, t in islands.items() if t != onnx.TensorProto.FLOAT}
    assert not not_fp32
