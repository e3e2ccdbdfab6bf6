"""OpenVINO IR export (FP32/FP16/INT8) and the openvino backend, run as a user runs them.

Thresholds for reduced precision come from measurement on vits with the seeded weights (see
benchmarks/results/amd-epyc-2-cores-vits.md): FP16 runs in BF16 on CPUs that have it (AbsRel 0.009-0.013,
δ1 >= 0.995 measured), NNCF INT8 measured AbsRel 0.034-0.042, δ1 0.986-0.990.
"""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import IMAGES, export
from dav2 import processing
from dav2.cli import export_main, run_main
from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata, sidecar_path
from dav2.runtime.backends import open_backend

pytestmark = pytest.mark.slow  # OpenVINO exports and NNCF

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'dav2[openvino]')")
SHAPE = ("--height", "266", "--width", "364")
TINY = ("--height", "56", "--width", "56")  # where only the export's checks are tested, not its accuracy


@pytest.fixture(scope="session")
def ov_fp32(vits_checkpoint, tmp_path_factory):
    return export(vits_checkpoint, tmp_path_factory.mktemp("ov32"), "--openvino", "fp32", *SHAPE)


@pytest.fixture(scope="session")
def ov_fp16(vits_checkpoint, tmp_path_factory):
    return export(vits_checkpoint, tmp_path_factory.mktemp("ov16"), "--openvino", "fp16", *SHAPE)


@pytest.fixture(scope="session")
def ov_int8(vits_checkpoint, tmp_path_factory):
    args = ("--openvino", "int8", "--calib-dir", str(IMAGES), "--calib-count", "4", "--holdout", "2", *SHAPE)
    return export(vits_checkpoint, tmp_path_factory.mktemp("ov8"), *args)


def torch_output(checkpoint, tensor):
    return open_backend(checkpoint).infer(tensor)


def test_fp32_ir_matches_pytorch(ov_fp32, vits_checkpoint):
    meta = ArtifactMetadata.read(ov_fp32).to_dict()
    assert ov_fp32.name == "depth_anything_v2_vits_266x364.xml"
    assert ov_fp32.with_suffix(".bin").is_file()
    assert meta["format"] == "openvino" and meta["precision"] == "fp32"
    assert meta["openvino"]["inference_precision"] == "f32" and meta["input_shape"] == [1, 3, 266, 364]
    assert max(meta["parity"]["max_abs_diff_relative"].values()) < 1e-3
    backend = open_backend(ov_fp32)
    image = cv2.imread(str(IMAGES / "demo08.jpg"))
    tensor = processing.preprocess(image, fixed_hw=(266, 364))
    expected = torch_output(vits_checkpoint, tensor)
    actual = backend.infer(tensor)
    assert actual.shape == (1, 266, 364)
    assert np.abs(actual - expected).max() / max(1.0, np.abs(expected).max()) < 1e-3
    assert "f32" in backend.describe()


def test_fp16_ir_reports_its_accuracy(ov_fp16):
    meta = ArtifactMetadata.read(ov_fp16).to_dict()
    assert meta["precision"] == "fp16" and meta["openvino"]["inference_precision"] is None
    report = meta["accuracy"]
    assert report["inputs"] == ["built-in sample scene"]
    assert report["abs_rel"] <= 0.03 and report["delta1"] >= 0.98
    # the .bin holds FP16 weights: about half the FP32 size (24.8M parameters)
    assert ov_fp16.with_suffix(".bin").stat().st_size < 60e6
    leftovers = [p.name for p in ov_fp16.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_int8_ir_is_calibrated_and_measured_on_other_images(ov_int8, tmp_path):
    meta = ArtifactMetadata.read(ov_int8).to_dict()
    assert meta["precision"] == "int8"
    calib = meta["calibration"]
    assert calib["count"] == 4 and calib["seed"] == 0 and len(calib["sha256"]) == 64
    report = meta["accuracy"]
    assert report["images"] == 2
    assert set(report["inputs"]) == set(calib["holdout"])
    assert not set(report["inputs"]) & set(calib["files"])
    assert report["abs_rel"] <= 0.08 and report["delta1"] >= 0.95, report
    out = tmp_path / "depth.npy"
    result = CliRunner().invoke(
        run_main,
        ["--model", str(ov_int8), "--source", str(IMAGES / "demo01.jpg"), "--format", "npy", "--save", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert np.isfinite(np.load(out)).all()


def test_dynamic_ir_follows_the_input_size(vits_checkpoint, tmp_path):
    artifact = export(vits_checkpoint, tmp_path, "--openvino", "fp32", "--dynamic", "--height", "196", "--width", "196")
    meta = ArtifactMetadata.read(artifact).to_dict()
    # checked at two sizes for the 480x640 sample scene: the traced one, and one at 364
    assert meta["dynamic"] and set(meta["parity"]["max_abs_diff_relative"]) == {"196x266", "364x490"}
    backend = open_backend(artifact)
    assert backend.fixed_hw is None
    for hw in ((308, 406), (196, 196)):
        tensor = np.random.default_rng(1).standard_normal((1, 3, *hw)).astype(np.float32)
        expected = torch_output(vits_checkpoint, tensor)
        actual = backend.infer(tensor)
        assert actual.shape == (1, *hw)
        assert np.abs(actual - expected).max() / max(1.0, np.abs(expected).max()) < 1e-3


def test_async_queue_gives_the_same_results(ov_fp32):
    """infer_many (THROUGHPUT hint, several requests in flight) equals one-at-a-time inference,
    in order, for more batches than a small CPU runs at once (its requests are reused), twice on one backend
    (the requests are kept). Strict: no second try."""
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((1, 3, 266, 364)).astype(np.float32) for _ in range(5)]
    with open_backend(ov_fp32) as single:
        expected = [single.infer(batch) for batch in batches]
    with open_backend(ov_fp32, hint="THROUGHPUT") as backend:
        first = backend.infer_many(batches)
        second = backend.infer_many(batches[::-1])
    assert len(first) == len(second) == len(batches)
    for got, want in zip(first + second[::-1], expected + expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_unavailable_device_is_one_error(ov_fp32):
    import openvino as ov

    if any(d.startswith("NPU") for d in ov.Core().available_devices):
        pytest.skip("this machine has an NPU")
    with pytest.raises(Dav2Error, match="NPU is not available"):
        open_backend(ov_fp32, device="NPU")


def test_max_abs_rel_fails_the_export_and_writes_nothing(vits_checkpoint, tmp_path):
    result = CliRunner().invoke(
        export_main,
        ["--checkpoint", str(vits_checkpoint), "--output", str(tmp_path), "--openvino", "fp16", *TINY]
        + ["--max-abs-rel", "1e-9"],
    )
    assert result.exit_code == 1
    assert "exceeds --max-abs-rel" in result.output
    assert list(tmp_path.iterdir()) == []


def test_int8_without_calibration_images_stops_before_any_work(vits_checkpoint, tmp_path):
    result = CliRunner().invoke(
        export_main, ["--checkpoint", str(vits_checkpoint), "--output", str(tmp_path), "--openvino", "int8"]
    )
    assert result.exit_code == 1 and "--calib-dir" in result.output
    assert "exporting" not in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--openvino", "int8", "--accuracy-control"], "--accuracy-control needs a budget: add --max-abs-rel"),
        (["--openvino", "fp16", "--accuracy-control", "--max-abs-rel", "0.01"], "add --openvino int8"),
        (["--onnx", "--accuracy-control", "--max-abs-rel", "0.01"], "add --openvino int8"),
        (["--openvino", "fp16", "--int8-float", "head"], "add --int8 or --openvino int8 or --trt int8"),
        (["--openvino", "int8", "--int8-float", "head,mlp"], "unknown --int8-float group(s) mlp; choose from head,"),
    ],
)
def test_int8_options_need_openvino_int8_and_a_budget(vits_checkpoint, tmp_path, arguments, message):
    common = ["--checkpoint", str(vits_checkpoint), "--output", str(tmp_path), "--calib-dir", str(IMAGES)]
    result = CliRunner().invoke(export_main, common + arguments)
    assert result.exit_code == 1 and message in result.output
    assert "exporting" not in result.output and list(tmp_path.iterdir()) == []


def test_metadata_is_json_with_tool_versions(ov_fp16):
    meta = json.loads(sidecar_path(ov_fp16).read_text())
    assert meta["tools"]["openvino"] and meta["tools"]["onnxruntime"]
    assert meta["weights_file"] == ov_fp16.with_suffix(".bin").name


def quantized_layers(xml, attention: bool = True):
    """{operation name: fed through a FakeQuantize (INT8 input)} for the IR's compute layers
    (and its fused attention operations, unless `attention` is False)."""
    import openvino as ov

    from dav2.calibration.nncf import COMPUTE_OPS

    types = (*COMPUTE_OPS, "ScaledDotProductAttention") if attention else COMPUTE_OPS
    layers = {}
    for op in ov.Core().read_model(str(xml)).get_ordered_ops():
        if op.get_type_name() in types:
            sources = {port.get_source_output().get_node().get_type_name() for port in op.inputs()}
            layers[op.get_friendly_name()] = "FakeQuantize" in sources
    return layers


def test_int8_float_groups_stay_in_float_and_the_rest_is_int8(vits_checkpoint, tmp_path):
    args = ("--openvino", "int8", "--calib-dir", str(IMAGES), "--calib-count", "4", "--holdout", "2")
    xml = export(vits_checkpoint, tmp_path, *args, "--height", "56", "--width", "56", "--int8-float", "head,fc2")
    layers = quantized_layers(xml)
    head = {name: q for name, q in layers.items() if "depth_head" in name or "ConvolutionBackpropData" in name}
    fc2 = {name: q for name, q in layers.items() if "/mlp/fc2/" in name}
    assert len(head) > 20 and not any(head.values())
    assert len(fc2) == 12 and not any(fc2.values())
    assert all(q for name, q in layers.items() if "/attn/qkv/" in name or "/mlp/fc1/" in name)
    metadata = ArtifactMetadata.read(xml)
    assert metadata.quantization.float_groups == ["head", "fc2"] and metadata.openvino.keep_head is True


def test_accuracy_control_runs_nncf_and_records_what_stayed_in_float(vits_checkpoint, tmp_path):
    """NNCF's quantize_with_accuracy_control end to end, kept fast: only block 0 is left to
    quantize (5 quantizers to rank) at 28x28, on validation images apart from the rest."""
    others = ",".join(["head", "patch_embed", *(f"block{i}" for i in range(1, 12))])
    args = ("--openvino", "int8", "--calib-dir", str(IMAGES), "--calib-count", "3", "--holdout", "2")
    args += ("--validation-count", "2", "--int8-float", others, "--accuracy-control", "--max-abs-rel", "0.05")
    xml = export(vits_checkpoint, tmp_path, *args, "--height", "28", "--width", "28")
    metadata = ArtifactMetadata.read(xml)
    recipe, control = metadata.quantization, metadata.quantization.control
    assert recipe.tool == "nncf quantize_with_accuracy_control" and control.max_abs_rel == 0.05
    assert control.validation_images == 2 and 0 <= control.validation_abs_rel <= 0.05
    layers = quantized_layers(xml, attention=False)
    assert control.int8_ops == sum(layers.values()) and 0 < control.int8_ops <= 4  # block 0's linears at most
    assert all(not quantized for name, quantized in layers.items() if "/blocks.0/" not in name)
    assert set(control.float_ops) == {name for name, quantized in layers.items() if not quantized}
    calibration = metadata.calibration
    assert len(calibration.validation) == 2
    assert not set(calibration.validation) & (set(calibration.holdout) | set(calibration.files))
    assert metadata.accuracy.abs_rel <= 0.05  # the held-out report, enforced by --max-abs-rel
