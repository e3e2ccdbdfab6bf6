"""Hostile models (issue #10, items 7, 8, 9 and 12; issue #11, item 5).

Every model a user can hand dav2 ends in one clear Dav2Error, never in a library traceback or a
silently mislabelled output: half-precision checkpoints load (as FP32); foreign ONNX networks
(a single Relu, two inputs, an int64 input) are refused when opened; a sidecar whose claims
the graph contradicts (dynamic for a static graph, another input shape, vitl metric on a vits
relative graph) is refused; OpenVINO's errors keep their cause; dav2-bench fails when it
measured nothing; ONNX Runtime's TensorRT provider is used only when asked for.

Most graphs here are tiny stand-ins built with onnx.helper that have the traits the checks
read (a (D, 3, 14, 14) patch-embedding kernel, Relu or Sigmoid x max_depth before the output),
so the tests take milliseconds; one test uses a real export.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata, sidecar_path
from dav2.runtime.backends import open_backend
from dav2.runtime.backends.base import error_reason
from dav2.vocabulary import ArtifactFormat, ModelKind, Precision

onnx = pytest.importorskip("onnx", reason="building test graphs needs onnx (pip install 'dav2[export]')")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

DYNAMIC = ["batch", 3, "height", "width"]


# --- graphs -----------------------------------------------------------------------------------


def save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def depth_like(path: Path, embed: int = 384, metric: bool = False, shape=DYNAMIC) -> Path:
    """A tiny network with a DAv2 graph's traits: patch-14 embedding of width `embed`, a
    1x1 head to 14x14 pixels per patch, then Relu (relative) or Sigmoid x 20 (metric)."""
    out_shape = [shape[0], shape[2], shape[3]]
    weights = [
        numpy_helper.from_array(np.full((embed, 3, 14, 14), 1e-3, np.float32), "pretrained.patch_embed.proj.weight"),
        numpy_helper.from_array(np.full((196, embed, 1, 1), 1e-2, np.float32), "head.weight"),
        numpy_helper.from_array(np.array([1], np.int64), "channel_axis"),
        numpy_helper.from_array(np.array(20.0, np.float32), "max_depth"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "pretrained.patch_embed.proj.weight"], ["tokens"], strides=[14, 14]),
        helper.make_node("Conv", ["tokens", "head.weight"], ["patches"]),
        helper.make_node("DepthToSpace", ["patches"], ["pixels"], blocksize=14),
    ]
    if metric:
        nodes += [
            helper.make_node("Sigmoid", ["pixels"], ["unit"]),
            helper.make_node("Mul", ["unit", "max_depth"], ["d"]),
        ]
    else:
        nodes += [helper.make_node("Relu", ["pixels"], ["d"])]
    nodes.append(helper.make_node("Squeeze", ["d", "channel_axis"], ["depth"]))
    graph = helper.make_graph(
        nodes,
        "depth_like",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, out_shape)],
        weights,
    )
    return save(graph, path)


def single_relu(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 28, 28])],
    )
    return save(graph, path)


def two_inputs(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])],
        "add",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 28, 28]) for n in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 28, 28])],
    )
    return save(graph, path)


def int64_input(path: Path) -> Path:
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["f"], ["depth"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "int",
        [helper.make_tensor_value_info("image", TensorProto.INT64, [1, 3, 28, 28])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [])],
    )
    return save(graph, path)


def sidecar(artifact: Path, encoder="vits", kind="relative", hw: tuple[int, int] | None = None, **extra) -> Path:
    metadata = ArtifactMetadata(
        artifact=artifact.name,
        format=ArtifactFormat.ONNX if artifact.suffix == ".onnx" else ArtifactFormat.OPENVINO,
        encoder=encoder,
        kind=ModelKind(kind),
        precision=Precision.FP32,
        dynamic=hw is None,
        input_shape=None if hw is None else [1, 3, *hw],
        max_depth=20.0 if kind == "metric" else None,
        **extra,
    )
    return metadata.write(artifact)


def link_or_copy(source: Path, target: Path) -> Path:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy(source, target)
    return target


# --- the checks, with ONNX Runtime ------------------------------------------------------------


def test_a_depth_like_graph_with_a_true_sidecar_opens(tmp_path):
    model = depth_like(tmp_path / "m.onnx", embed=1024, metric=True)
    sidecar(model, "vitl", "metric")
    with open_backend(model) as backend:
        assert backend.kind == "metric" and backend.metadata.encoder == "vitl"
        assert backend.infer(np.zeros((1, 3, 28, 42), np.float32)).shape == (1, 28, 42)


@pytest.mark.parametrize("build", [single_relu, two_inputs, int64_input], ids=["relu", "two-inputs", "int64"])
def test_a_foreign_onnx_network_is_refused_when_opened(tmp_path, build):
    model = build(tmp_path / "foreign.onnx")
    with pytest.raises(Dav2Error, match="is not a Depth Anything V2 graph") as caught:
        open_backend(model)
    assert "one float32 input (B, 3, H, W)" in str(caught.value)


def test_a_sidecar_saying_dynamic_for_a_static_graph_is_refused(tmp_path):
    model = depth_like(tmp_path / "m.onnx", shape=[1, 3, 196, 280])
    sidecar(model)  # dynamic
    with pytest.raises(Dav2Error, match="it says dynamic, the graph takes only 196x280"):
        open_backend(model)


def test_a_sidecar_with_another_input_shape_is_refused(tmp_path):
    model = depth_like(tmp_path / "m.onnx", shape=[1, 3, 196, 280])
    sidecar(model, hw=(518, 518))
    with pytest.raises(Dav2Error, match="it says 518x518, the graph takes 196x280"):
        open_backend(model)


def test_a_sidecar_naming_another_input_is_refused(tmp_path):
    model = depth_like(tmp_path / "m.onnx")
    sidecar(model, input_name="pixel_values")
    with pytest.raises(Dav2Error, match="names the input 'pixel_values'"):
        open_backend(model)


@pytest.mark.parametrize(
    "claim, found",
    [(("vitl", "relative"), "it says vitl, the graph is a vits"), (("vits", "metric"), "it says metric")],
)
def test_sidecar_facts_are_checked_against_the_graph(tmp_path, claim, found):
    model = depth_like(tmp_path / "m.onnx", embed=384, metric=False)
    sidecar(model, *claim)
    with pytest.raises(Dav2Error, match=found):
        open_backend(model)


def test_a_vitl_metric_sidecar_on_a_real_vits_relative_export_is_refused(dynamic_onnx, tmp_path):
    model = link_or_copy(dynamic_onnx, tmp_path / dynamic_onnx.name)
    sidecar(model, "vitl", "metric")
    with pytest.raises(Dav2Error) as caught:
        open_backend(model)
    message = str(caught.value)
    assert (
        "it says vitl, the graph is a vits" in message and "it says metric, the graph's output is relative" in message
    )
    assert sidecar_path(model).name in message


def test_a_graph_without_sidecar_gets_its_encoder_and_kind_from_the_graph(tmp_path):
    model = depth_like(tmp_path / "m.onnx", embed=768, metric=True)
    with open_backend(model) as backend:
        assert (backend.metadata.encoder, backend.kind, backend.metadata.from_sidecar) == ("vitb", "metric", False)


# --- the same checks, with OpenVINO -----------------------------------------------------------


def to_ir(onnx_path: Path) -> Path:
    ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'dav2[openvino]')")
    xml = onnx_path.with_suffix(".xml")
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml


def test_openvino_checks_the_sidecar_against_the_ir(tmp_path):
    xml = to_ir(depth_like(tmp_path / "m.onnx", embed=384, metric=False, shape=[1, 3, 196, 280]))
    sidecar(xml, "vitl", "metric")
    with pytest.raises(Dav2Error) as caught:
        open_backend(xml)
    message = str(caught.value)
    for part in (
        "it says dynamic, the graph takes only 196x280",
        "it says vitl, the graph is a vits",
        "it says metric",
    ):
        assert part in message


def test_openvino_refuses_a_foreign_network(tmp_path):
    xml = to_ir(two_inputs(tmp_path / "add.onnx"))
    with pytest.raises(Dav2Error, match="is not a Depth Anything V2 graph: it has 2 inputs"):
        open_backend(xml)


def test_openvino_errors_keep_their_cause(tmp_path):
    xml = to_ir(depth_like(tmp_path / "m.onnx"))
    xml.with_suffix(".bin").unlink()
    with pytest.raises(Dav2Error, match="bin file cannot be found") as caught:
        open_backend(xml)
    assert "core.cpp" not in str(caught.value)


def test_error_reason_drops_source_location_headers():
    raw = (
        "Exception from src/inference/src/cpp/core.cpp:84:\n"
        "Check 'm_weights_provider' failed at src/core/xml_util/src/xml_deserialize_util.cpp:887:\n"
        "Empty weights data in bin file or bin file cannot be found!\n\n"
    )
    assert error_reason(RuntimeError(raw)) == "Empty weights data in bin file or bin file cannot be found!"
    assert error_reason(RuntimeError("x" * 1000)).endswith("...") and len(error_reason(RuntimeError("x" * 1000))) == 240
    assert error_reason(RuntimeError("Exception from src/a.cpp:1:")) == "Exception from src/a.cpp:1:"


# --- half-precision checkpoints -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_half_precision_checkpoint_loads_as_fp32(vits_checkpoint, tmp_path, dtype):
    torch = pytest.importorskip("torch")
    state_dict = torch.load(vits_checkpoint, map_location="cpu", weights_only=True)
    half = tmp_path / f"finetune_{dtype}.pth"
    torch.save({k: v.to(getattr(torch, dtype)) for k, v in state_dict.items()}, half)
    batch = np.random.default_rng(0).standard_normal((1, 3, 28, 28)).astype(np.float32)
    with open_backend(half) as backend:
        depth = backend.infer(batch)
    with open_backend(vits_checkpoint) as reference:
        expected = reference.infer(batch)
    assert depth.dtype == np.float32 and depth.shape == (1, 28, 28)
    scale = np.abs(expected).max() + 1e-6
    assert np.abs(depth - expected).max() / scale < 0.1  # rounded weights, same network


# --- ONNX Runtime's TensorRT provider -------------------------------------------------------------


def test_onnxruntime_tensorrt_provider_only_when_asked(tmp_path, monkeypatch):
    from dav2.runtime.backends.onnxruntime import TENSORRT_ENV, choose_providers

    available = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    model = tmp_path / "m.onnx"
    monkeypatch.delenv(TENSORRT_ENV, raising=False)
    assert choose_providers(model, None, available) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setenv(TENSORRT_ENV, "1")
    fp16 = ArtifactMetadata("m.onnx", ArtifactFormat.ONNX, "vits", ModelKind.RELATIVE, Precision.FP16, True, None)
    (name, options), *rest = choose_providers(model, fp16, available)
    assert name == "TensorrtExecutionProvider" and rest == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert options["trt_engine_cache_enable"] == "True" and options["trt_fp16_enable"] == "True"
    assert Path(options["trt_engine_cache_path"]).parent == tmp_path
    with pytest.raises(Dav2Error, match="no TensorRT provider"):
        choose_providers(model, None, ["CPUExecutionProvider"])


# --- dav2-bench -------------------------------------------------------------------------------


def test_bench_fails_when_nothing_was_measured(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from dav2.benchmarks import runner
    from dav2.cli import bench_main

    unreadable = tmp_path / "broken.pth"
    unreadable.write_bytes(b"not a checkpoint")
    monkeypatch.setattr(runner, "prepare_inputs", lambda settings, work: ("sample", None))

    def failing(spec, work):
        raise Dav2Error(f"{unreadable} is not a readable PyTorch checkpoint (UnpicklingError)")

    monkeypatch.setattr(runner, "run_child", failing)
    save = tmp_path / "results"
    args = ["--checkpoint", str(unreadable), "--backends", "torch,onnxruntime", "--precisions", "fp32"]
    result = CliRunner().invoke(
        bench_main, [*args, "--sizes", "28", "--cache-dir", str(tmp_path / "c"), "--save", str(save)]
    )
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nothing was measured" in errors[0] and "not a readable PyTorch checkpoint" in errors[0]
    assert "Traceback" not in result.output and not save.exists()
