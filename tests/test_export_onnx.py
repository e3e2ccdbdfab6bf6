"""ONNX export: parity with upstream through ONNX Runtime, dynamic shapes, FP16, metadata, failures."""

import json

import cv2
import numpy as np
import pytest

from conftest import IMAGES, case_image, export, load_reference, reference_case
from dav2 import processing
from dav2.metadata import sidecar_path
from dav2.runtime.backends import open_backend

pytestmark = pytest.mark.slow  # exports, the dynamo exporter among them


def case(name: str) -> dict:
    return reference_case(name)


def run_onnx(path, image, input_size=518):
    backend = open_backend(path)
    tensor = processing.preprocess(image, input_size, backend.fixed_hw)
    network = backend.infer(tensor)
    return network[0], processing.postprocess(network, image.shape[:2])


def test_static_export_reproduces_upstream_full_output(static_onnx):
    c = case("vits_relative_demo08_518")
    network, full = run_onnx(static_onnx, cv2.imread(str(case_image(c))))
    assert np.abs(network - load_reference(c, "network")).max() <= 1e-3
    assert np.abs(full - load_reference(c, "full")).max() <= 2e-3


@pytest.mark.parametrize("name", ["vits_relative_demo08_518", "vits_relative_demo08_364"])
def test_dynamic_export_reproduces_upstream_at_two_sizes(dynamic_onnx, name):
    c = case(name)
    network, full = run_onnx(dynamic_onnx, cv2.imread(str(case_image(c))), c["input_size"])
    assert network.shape == tuple(c["network_output_shape"])
    assert np.abs(network - load_reference(c, "network")).max() <= 1e-3
    assert np.abs(full - load_reference(c, "full")).max() <= 2e-3


def test_dynamic_export_takes_batches(dynamic_onnx):
    backend = open_backend(dynamic_onnx)
    image = cv2.imread(str(IMAGES / "demo08.jpg"))
    one = processing.preprocess(image, 266)
    batch = np.concatenate([one, one[:, :, ::-1].copy()])
    out = backend.infer(batch)
    assert out.shape == (2, 266, 406)
    np.testing.assert_allclose(out[0], backend.infer(one)[0], atol=1e-4)


def test_metadata_sidecar_describes_the_artifact(static_onnx, vits_checkpoint):
    from dav2.models.checkpoint import sha256_file

    meta = json.loads(sidecar_path(static_onnx).read_text())
    assert static_onnx.name == "depth_anything_v2_vits_518x784.onnx"
    assert meta["encoder"] == "vits" and meta["kind"] == "relative" and meta["max_depth"] is None
    assert meta["input_shape"] == [1, 3, 518, 784] and meta["dynamic"] is False
    assert meta["precision"] == "fp32" and meta["opset"] >= 17
    assert "mean" not in meta and "std" not in meta  # ImageNet's always (dav2.metadata docstring)
    assert meta["checkpoint_sha256"] == sha256_file(vits_checkpoint)
    assert meta["licence"] == "Apache-2.0"
    assert set(meta["tools"]) >= {"torch", "onnx", "onnxruntime", "dav2"}
    assert max(meta["parity"]["max_abs_diff_relative"].values()) < 1e-3


def test_graph_has_one_layernorm_op_per_norm(static_onnx):
    """Each LayerNorm call becomes one fused LayerNormalization op (not a decomposed mean/var/sqrt chain).

    The encoder's final norm runs once on each of the 4 layers the head taps (as upstream's
    get_intermediate_layers(norm=True)): 12 x 2 block norms + 4 = 28 calls of 25 modules."""
    import onnx
    import torch

    from dav2.models.dpt import DepthAnythingV2

    with torch.device("meta"):
        model = DepthAnythingV2("vits")
    model.to_empty(device="cpu")
    norms = {module: name for name, module in model.named_modules() if isinstance(module, torch.nn.LayerNorm)}
    calls = []
    for module in norms:
        module.register_forward_hook(lambda module, args, output: calls.append(norms[module]))
    with torch.inference_mode():
        model(torch.zeros(1, 3, 56, 56))
    assert len(norms) == 2 * 12 + 1 and set(calls) == set(norms.values())
    assert len(calls) == 2 * 12 + 4

    proto = onnx.load(str(static_onnx))
    nodes = list(proto.graph.node)
    for function in proto.functions:  # ops inside local functions count too
        nodes.extend(function.node)
    assert sum(node.op_type == "LayerNormalization" for node in nodes) == len(calls)


def test_metric_fp16_dynamic_export(vits_metric_checkpoint, tmp_path):
    # traced (and FP16-converted) at 266, run at 518: the dynamic graph follows the input
    args = ("--kind", "metric", "--max-depth", "20", "--dynamic", "--fp16", "--height", "266", "--width", "266")
    path = export(vits_metric_checkpoint, tmp_path, *args)
    assert path.name == "depth_anything_v2_metric_hypersim_vits_dynamic_fp16.onnx"
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["kind"] == "metric" and meta["max_depth"] == 20.0 and meta["precision"] == "fp16"
    c = case("vits_metric_demo08_518")
    _, full = run_onnx(path, cv2.imread(str(case_image(c))))
    # FP16 costs accuracy; the FP32 graph meets 1e-2 m, FP16 is held to 1e-2 of the 20 m range
    error = np.abs(full - load_reference(c, "full")).max()
    assert error <= 0.2, error


def test_dynamo_exporter_also_exports_correctly(vits_checkpoint, tmp_path):
    path = export(vits_checkpoint, tmp_path, "--exporter", "dynamo", "--height", "364", "--width", "546")
    c = case("vits_relative_demo08_364")
    network, _ = run_onnx(path, cv2.imread(str(case_image(c))))
    assert np.abs(network - load_reference(c, "network")).max() <= 1e-3


def test_sizes_not_multiple_of_14_are_rounded_with_a_warning(vits_checkpoint, tmp_path):
    from click.testing import CliRunner

    from dav2.cli import export_main

    result = CliRunner().invoke(
        export_main,
        ["--checkpoint", str(vits_checkpoint), "--output", str(tmp_path), "--height", "60", "--width", "80"],
    )
    assert result.exit_code == 0, result.output
    assert "not a multiple of 14" in result.stderr
    assert (tmp_path / "depth_anything_v2_vits_56x84.onnx").is_file()  # one rounded down, one up


def test_mismatched_checkpoint_fails_and_writes_nothing(vits_checkpoint, tmp_path):
    from click.testing import CliRunner

    from dav2.cli import export_main

    out = tmp_path / "out"
    result = CliRunner().invoke(
        export_main, ["--encoder", "vitb", "--checkpoint", str(vits_checkpoint), "--output", str(out)]
    )
    assert result.exit_code == 1
    assert "is a vits checkpoint, but --encoder vitb was given" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())
