"""One artifact, one truth: every format in one folder, the default export, sidecars, weights files."""

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import IMAGES, export, load_reference, reference_case
from dav2.cli import run_main
from dav2.metadata import ArtifactMetadata, sidecar_path
from dav2.runtime.backends import open_backend

pytestmark = pytest.mark.slow  # an export of every format

PHOTO = IMAGES / "demo08.jpg"  # 425x640: not square


def dav2_run(*args) -> "CliRunner.invoke":
    return CliRunner().invoke(run_main, [str(a) for a in args])


def run_npy(model, out, *extra) -> np.ndarray:
    result = dav2_run("--model", model, "--source", PHOTO, "--format", "npy", "--save", out, *extra)
    assert result.exit_code == 0, result.output
    return np.load(out)


def test_every_format_exports_into_one_folder_and_each_runs_with_its_own_facts(vits_checkpoint, tmp_path):
    """ONNX FP32/FP16/INT8 and OpenVINO FP32/FP16/INT8 of one model side by side in one folder."""
    folder = tmp_path / "models"
    small = ["--dynamic", "--height", "56", "--width", "56"]  # traced (and calibrated) at 56: the facts, not accuracy
    int8 = ["--calib-dir", IMAGES, "--calib-count", "2", "--holdout", "1"]
    for args in (["--onnx", "--openvino", "fp32"], ["--onnx", "--fp16", "--openvino", "fp16"]):
        export(vits_checkpoint, folder, *args, *small)
    export(vits_checkpoint, folder, "--onnx", "--int8", "--openvino", "int8", *small, *[str(a) for a in int8])
    expected = {
        "depth_anything_v2_vits_dynamic.onnx": ("onnx", "fp32"),
        "depth_anything_v2_vits_dynamic_fp16.onnx": ("onnx", "fp16"),
        "depth_anything_v2_vits_dynamic_int8.onnx": ("onnx", "int8"),
        "depth_anything_v2_vits_dynamic.xml": ("openvino", "fp32"),
        "depth_anything_v2_vits_dynamic_fp16.xml": ("openvino", "fp16"),
        "depth_anything_v2_vits_dynamic_int8.xml": ("openvino", "int8"),
    }
    sidecars = {f"{name}.json" for name in expected}
    weights = {name.replace(".xml", ".bin") for name in expected if name.endswith(".xml")}
    references = {"depth_anything_v2_vits_dynamic_fp16.onnx.reference.npz"}  # the FP32 outputs for --trt --from
    assert {p.name for p in folder.iterdir()} == set(expected) | sidecars | weights | references
    image = cv2.imread(str(PHOTO))
    for name, (fmt, precision) in expected.items():
        metadata = ArtifactMetadata.read(folder / name)
        assert (metadata.artifact, metadata.format, metadata.precision) == (name, fmt, precision)
        assert metadata.dynamic and metadata.traced_hw == [56, 56]
        assert (metadata.calibration is not None) == (fmt == "openvino" and precision == "int8")
        with open_backend(folder / name) as backend:
            assert backend.name == ("onnxruntime" if fmt == "onnx" else "openvino")
            depth = backend.predict(image)
        assert depth.shape == image.shape[:2] and np.isfinite(depth).all()


def test_the_default_export_is_dynamic_and_gives_upstreams_result_on_a_non_square_photo(vits_checkpoint, tmp_path):
    artifact = export(vits_checkpoint, tmp_path)  # no target, no size: README command 1
    assert artifact.name == "depth_anything_v2_vits_dynamic.onnx"
    metadata = ArtifactMetadata.read(artifact)
    assert metadata.dynamic and metadata.fixed_hw is None and metadata.default_input_size == 518
    depth = run_npy(artifact, tmp_path / "d.npy")
    expected = load_reference(reference_case("vits_relative_demo08_518"), "full")
    assert depth.shape == expected.shape == (425, 640)
    assert np.abs(depth - expected).max() / np.abs(expected).max() < 1e-3


def test_a_static_artifact_warns_when_it_has_to_stretch(static_onnx, tmp_path):
    same_shape = dav2_run("--model", static_onnx, "--source", PHOTO, "--save", tmp_path / "a.png")
    assert same_shape.exit_code == 0 and "stretched" not in same_shape.stderr  # 425x640 ~ 518x784
    square = tmp_path / "square.png"
    cv2.imwrite(str(square), cv2.imread(str(PHOTO))[:400, :400])
    stretched = dav2_run("--model", static_onnx, "--source", square, "--save", tmp_path / "b.png")
    assert stretched.exit_code == 0, stretched.output
    assert stretched.stderr.count("stretched") == 1 and "518x784" in stretched.stderr


@pytest.mark.parametrize(
    "sidecar, message",
    [
        ("[1, 2]", "not valid dav2 metadata (expected a JSON object, found list)"),
        ("{", "is not valid JSON"),
        ('{"schema": 2, "artifact": "m.onnx"}', "missing field"),
    ],
)
def test_a_bad_sidecar_is_one_error_line(dynamic_onnx, tmp_path, sidecar, message):
    model = tmp_path / "m.onnx"
    shutil.copy(dynamic_onnx, model)
    sidecar_path(model).write_text(sidecar)
    result = dav2_run("--model", model, "--save", tmp_path / "d.png")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and message in result.stderr
    assert result.stderr.startswith("error: ") and not (tmp_path / "d.png").exists()


def test_a_sidecar_of_another_artifact_is_refused(dynamic_onnx, tmp_path):
    model = tmp_path / "renamed.onnx"
    shutil.copy(dynamic_onnx, model)
    shutil.copy(sidecar_path(dynamic_onnx), sidecar_path(model))
    result = dav2_run("--model", model, "--save", tmp_path / "d.png")
    assert result.exit_code == 1 and "must be renamed together" in result.stderr


def test_external_weights_live_in_one_file_named_after_the_artifact_and_travel_with_it(
    vits_checkpoint, dynamic_onnx, tmp_path
):
    built = tmp_path / "built"
    artifact = export(vits_checkpoint, built, "--onnx", "--external-data")
    data = artifact.with_name(artifact.name + ".data")
    assert sorted(p.name for p in built.iterdir()) == sorted([artifact.name, data.name, f"{artifact.name}.json"])
    assert ArtifactMetadata.read(artifact).weights_file == data.name
    assert artifact.stat().st_size < 1_000_000 < data.stat().st_size  # the graph alone, the weights beside it
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for file in built.iterdir():
        shutil.move(file, moved / file.name)
    depth = run_npy(moved / artifact.name, tmp_path / "moved.npy", "--input-size", "196")
    inline = run_npy(dynamic_onnx, tmp_path / "inline.npy", "--input-size", "196")
    np.testing.assert_allclose(depth, inline, rtol=0, atol=1e-5)
    summary = json.loads(sidecar_path(moved / artifact.name).read_text())
    assert summary["artifact"] == artifact.name
