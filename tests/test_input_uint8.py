"""`dav2-export --input uint8 [--camera-size WxH]`: artifacts that take the camera's uint8 BGR
frame and preprocess it themselves (ONNX via onnx.compose, OpenVINO via PrePostProcessor),
checked against the float artifact; the runtime feeds them bytes; the graph check knows them."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import IMAGES, VIDEO, export
from dav2 import processing
from dav2.cli import export_main, run_main
from dav2.errors import Dav2Error
from dav2.media import read_image
from dav2.metadata import UINT8_INPUT, ArtifactMetadata, sidecar_path
from dav2.runtime.backends import open_backend

pytestmark = pytest.mark.slow  # uint8 exports

STATIC = ("--height", "182", "--width", "322")  # 13x23 patches: a 16:9 network input, quick to export


@pytest.fixture(scope="module")
def uint8_onnx(vits_checkpoint, tmp_path_factory):
    args = ("--onnx", "--dynamic", "--input", "uint8", "--height", "266", "--width", "266")  # traced at the size run
    return export(vits_checkpoint, tmp_path_factory.mktemp("u8"), *args)


@pytest.fixture(scope="module")
def camera_artifacts(vits_checkpoint, tmp_path_factory):
    """ONNX and OpenVINO FP32, static 182x322, resizing 320x180 frames (the test video's) in the graph."""
    folder = tmp_path_factory.mktemp("u8cam")
    args = ["--onnx", "--openvino", "fp32", *STATIC, "--input", "uint8", "--camera-size", "320x180"]
    export(vits_checkpoint, folder, *args)
    return sorted(folder.glob("*_uint8_320x180.*[lx]"))  # .onnx, .xml


def test_uint8_onnx_matches_the_float_artifact_on_the_same_pixels(uint8_onnx, dynamic_onnx):
    metadata = ArtifactMetadata.read(uint8_onnx)
    assert metadata.input_format == UINT8_INPUT and metadata.input_name == "frame" and metadata.camera_hw is None
    assert metadata.input_parity.worst <= 1e-3
    image = cv2.resize(read_image(IMAGES / "demo08.jpg"), (350, 266), interpolation=cv2.INTER_AREA)  # network size
    with open_backend(uint8_onnx) as u8, open_backend(dynamic_onnx) as f32:
        expected = f32.predict(image, 266)
        actual = u8.predict(image, 266)
    assert np.abs(actual - expected).max() <= 1e-3 * np.abs(expected).max()


def test_camera_size_artifacts_resize_in_the_graph_and_run_on_video(camera_artifacts, tmp_path):
    assert [p.suffix for p in camera_artifacts] == [".onnx", ".xml"]
    for artifact in camera_artifacts:
        metadata = ArtifactMetadata.read(artifact)
        assert metadata.camera_hw == [180, 320] and metadata.fixed_hw == (182, 322)
        assert metadata.input_parity.worst <= 1e-2
        result = CliRunner().invoke(
            run_main, ["--model", str(artifact), "--source", str(VIDEO), "--max-frames", "3", "--json"]
        )
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert summary["frames"] == 3 and summary["stages"]["preprocess"]["mean_ms"] < 2.0  # bytes only


def test_the_graph_check_knows_uint8_inputs(uint8_onnx, tmp_path):
    """A uint8 graph whose sidecar claims a float input (or the reverse) is refused on opening."""
    copy = tmp_path / uint8_onnx.name
    copy.write_bytes(uint8_onnx.read_bytes())
    record = json.loads(sidecar_path(uint8_onnx).read_text())
    record["input_format"] = "float32-nchw"
    sidecar_path(copy).write_text(json.dumps(record))
    with pytest.raises(Dav2Error, match="float32-nchw"):
        open_backend(copy)


def test_metadata_refuses_unknown_input_formats_and_camera_sizes_on_float_inputs(uint8_onnx):
    record = json.loads(sidecar_path(uint8_onnx).read_text())
    with pytest.raises(Dav2Error, match="input_format"):
        ArtifactMetadata.from_json(json.dumps({**record, "input_format": "uint16"}))
    with pytest.raises(Dav2Error, match="camera_hw"):
        ArtifactMetadata.from_json(json.dumps({**record, "input_format": "float32-nchw", "camera_hw": [720, 1280]}))
    with pytest.raises(Dav2Error, match="camera_hw"):
        ArtifactMetadata.from_json(json.dumps({**record, "camera_hw": [0, 1280]}))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--camera-size", "1280x720"], "add --input uint8"),
        (["--input", "uint8", "--camera-size", "1280"], "WIDTHxHEIGHT"),
        (["--input", "uint8", "--camera-size", "99999x720"], "between 16 and"),
        (["--input", "uint8", "--trt", "fp16"], "is built for --onnx or --openvino artifacts, not --trt fp16"),
    ],
)
def test_export_input_options_are_checked_before_any_work(args, message, tmp_path):
    result = CliRunner().invoke(
        export_main, ["--checkpoint", str(tmp_path / "none.pth"), "--output", str(tmp_path), *args]
    )
    assert result.exit_code != 0 and message in result.output, result.output


def test_feeder_passes_camera_frames_without_a_copy(camera_artifacts):
    from dav2.runtime.feed import Feeder

    with open_backend(camera_artifacts[0]) as backend:
        feed = Feeder(backend, 518)
        frame = np.zeros((180, 320, 3), np.uint8)
        tensor = feed(frame)
        assert tensor.shape == (1, 180, 320, 3) and np.shares_memory(tensor, frame)
        assert feed(np.zeros((90, 160, 3), np.uint8)).shape == (1, 180, 320, 3)  # other sizes resized on the host
    assert processing.network_size((180, 320), 518) != backend.fixed_hw  # the static size wins
