"""Preprocessing inside the artifact (`dav2-export --input uint8 [--camera-size WxH]`).

Why: on a small device the host's float work around the network decides the frame rate.
An artifact that takes the camera's uint8 BGR frame (1, H, W, 3) and does the colour swap,
/255 and ImageNet normalisation itself leaves the host nothing but copying bytes (4x less
host-to-device traffic too). With `--camera-size` the graph also does upstream's bicubic
resize for that one camera resolution.

How, without hand-made graph surgery:
- ONNX: a small prefix graph built with `onnx.helper` (Transpose NHWC->NCHW, Cast, optional
  Resize, Gather [2,1,0] for BGR->RGB, Mul/Add with the folded normalisation), joined to the
  exported network with `onnx.compose.merge_models`. The Resize is ONNX's cubic with
  cubic_coeff_a=-0.75, half_pixel coordinates and exclude_outside=0, OpenCV INTER_CUBIC's
  kernel (they differ only at the borders, which CAMERA_TOLERANCE bounds). The graph's
  input is named `frame`.
- OpenVINO: its `PrePostProcessor` (u8 NHWC BGR tensor, convert to f32, BGR->RGB, mean and
  scale, RESIZE_CUBIC for a camera size); the input keeps its name `image`.

Every variant is run against the same artifact's float input on the check image and the
difference recorded in the sidecar (`parity["uint8_input"]`): without the in-graph resize the
two see the same pixels, so they must agree within UINT8_TOLERANCE of the output's scale;
with it the resize itself differs slightly from OpenCV's and CAMERA_TOLERANCE bounds it.
"""

from pathlib import Path

import cv2
import numpy as np

from dav2 import processing
from dav2.errors import Dav2Error
from dav2.export.context import Built
from dav2.export.graph import external_data_path, save_onnx
from dav2.export.parity import checked, relative_difference
from dav2.metadata import UINT8_INPUT, ArtifactMetadata, ParityReport
from dav2.runtime.backends import open_backend
from dav2.vocabulary import MEAN, STD, ArtifactFormat

UINT8_TOLERANCE = 1e-3  # same pixels, normalisation in the graph: float32 rounding only
CAMERA_TOLERANCE = 1e-2  # the in-graph cubic resize vs OpenCV's on the host (they differ at the borders)
FRAME_NAME = "frame"
MAX_CAMERA_SIDE = 7680  # 8K; --camera-size beyond this is refused


def parse_camera_size(text: str | None) -> tuple[int, int] | None:
    """'1280x720' (WIDTHxHEIGHT) -> (720, 1280) as (H, W); None stays None."""
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise Dav2Error(f"--camera-size must be WIDTHxHEIGHT, e.g. 1280x720, not {text!r}") from None
    for side in (width, height):
        if not 16 <= side <= MAX_CAMERA_SIDE:
            raise Dav2Error(f"--camera-size sides must be between 16 and {MAX_CAMERA_SIDE}, not {text}")
    return height, width


def network_hw_for(metadata: ArtifactMetadata, camera_hw: tuple[int, int]) -> tuple[int, int]:
    """The network size camera frames are resized to: a static artifact's own, else upstream's rule."""
    return metadata.fixed_hw or processing.network_size(camera_hw, metadata.default_input_size)


# --- ONNX -------------------------------------------------------------------------------------


def onnx_prefix(opset: int, batch, frame_hw: tuple, network_hw: tuple[int, int] | None):
    """uint8 (B, H, W, 3) BGR `frame` -> normalised float32 (B, 3, h, w) RGB `normalized`."""
    from onnx import TensorProto, helper, numpy_helper

    scale = numpy_helper.from_array(processing.NORM_SCALE.reshape(1, 3, 1, 1), "norm_scale")
    offset = numpy_helper.from_array(processing.NORM_OFFSET.reshape(1, 3, 1, 1), "norm_offset")
    rgb = numpy_helper.from_array(np.array([2, 1, 0], np.int64), "bgr_to_rgb")
    nodes = [
        helper.make_node("Transpose", [FRAME_NAME], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["nchw"], ["as_float"], to=TensorProto.FLOAT),
    ]
    initializers = [scale, offset, rgb]
    pixels = "as_float"
    if network_hw is not None:
        sizes = numpy_helper.from_array(np.array([1, 3, *network_hw], np.int64), "resize_sizes")
        initializers.append(sizes)
        nodes.append(
            helper.make_node(
                "Resize",
                ["as_float", "", "", "resize_sizes"],
                ["resized"],
                mode="cubic",
                cubic_coeff_a=-0.75,
                coordinate_transformation_mode="half_pixel",
                exclude_outside=0,
            )
        )
        pixels = "resized"
    nodes += [
        helper.make_node("Gather", [pixels, "bgr_to_rgb"], ["rgb"], axis=1),
        helper.make_node("Mul", ["rgb", "norm_scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "norm_offset"], ["normalized"]),
    ]
    out_hw = network_hw or frame_hw
    graph = helper.make_graph(
        nodes,
        "dav2_uint8_preprocessing",
        [helper.make_tensor_value_info(FRAME_NAME, TensorProto.UINT8, [batch, *frame_hw, 3])],
        [helper.make_tensor_value_info("normalized", TensorProto.FLOAT, [batch, 3, *out_hw])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def wrap_onnx(source: Path, target: Path, metadata: ArtifactMetadata, camera_hw: tuple[int, int] | None) -> None:
    """Write `target`: the prefix graph joined to the network at `source` (onnx.compose)."""
    import onnx
    from onnx import compose

    network = onnx.load(str(source))
    opset = next(o.version for o in network.opset_import if o.domain in ("", "ai.onnx"))
    if camera_hw is not None:
        prefix = onnx_prefix(opset, 1, camera_hw, network_hw_for(metadata, camera_hw))
    elif metadata.fixed_hw is not None:
        prefix = onnx_prefix(opset, 1, metadata.fixed_hw, None)
    else:
        prefix = onnx_prefix(opset, "batch", ("height", "width"), None)
    prefix.ir_version = network.ir_version
    merged = compose.merge_models(prefix, network, io_map=[("normalized", metadata.input_name)])
    onnx.checker.check_model(merged)
    save_onnx(merged, target, external_data=bool(metadata.weights_file))


# --- OpenVINO ---------------------------------------------------------------------------------


def wrap_openvino(source: Path, target: Path, metadata: ArtifactMetadata, camera_hw: tuple[int, int] | None) -> None:
    """Write `target`: the IR at `source` with OpenVINO's PrePostProcessor in front of it."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor, ResizeAlgorithm

    model = ov.Core().read_model(str(source))
    if camera_hw is not None and metadata.fixed_hw is None:
        model.reshape({model.inputs[0]: [1, 3, *network_hw_for(metadata, camera_hw)]})
    ppp = PrePostProcessor(model)
    tensor = ppp.input().tensor()
    tensor.set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    if camera_hw is not None:
        tensor.set_spatial_static_shape(*camera_hw)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    steps = ppp.input().preprocess()
    steps.convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB)
    if camera_hw is not None:
        steps.resize(ResizeAlgorithm.RESIZE_CUBIC)
    steps.mean([255.0 * m for m in MEAN]).scale([255.0 * s for s in STD])
    ov.save_model(ppp.build(), str(target), compress_to_fp16=False)


# --- the variant and its check ----------------------------------------------------------------


def uint8_name(path: Path, camera_hw: tuple[int, int] | None) -> str:
    """m.onnx -> m_uint8.onnx, or m_uint8_1280x720.onnx with an in-graph resize."""
    camera = f"_{camera_hw[1]}x{camera_hw[0]}" if camera_hw else ""
    return f"{path.stem}_uint8{camera}{path.suffix}"


def uint8_metadata(metadata: ArtifactMetadata, name: str, camera_hw: tuple[int, int] | None) -> ArtifactMetadata:
    """The float artifact's record, for the variant that takes uint8 frames."""
    import dataclasses

    record = dataclasses.replace(metadata, artifact=name, input_format=UINT8_INPUT)
    if metadata.format == ArtifactFormat.ONNX:
        record.input_name = FRAME_NAME
    if camera_hw is not None:
        record.camera_hw = list(camera_hw)
        record.input_shape = [1, 3, *network_hw_for(metadata, camera_hw)]
        record.dynamic, record.dynamic_range = False, None
    return record


def check_frame(image: np.ndarray, metadata: ArtifactMetadata, camera_hw: tuple[int, int] | None) -> np.ndarray:
    """The uint8 frame the check runs on: the check image at the camera size, or already at the
    network size (then both artifacts see exactly the same pixels)."""
    hw = camera_hw or metadata.fixed_hw or processing.network_size(image.shape[:2], metadata.default_input_size)
    return cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def compare_with_float(float_path: Path, uint8_path: Path, frame: np.ndarray, float_metadata) -> float:
    """max |uint8 artifact - float artifact| / max(1, max |float|) on one frame."""
    with open_backend(float_path) as reference:
        tensor = processing.preprocess(frame, reference.default_input_size, network_or_none(float_metadata, frame))
        expected = reference.infer(tensor)
    with open_backend(uint8_path) as candidate:
        actual = candidate.infer(np.ascontiguousarray(frame)[None])
    return relative_difference(actual, expected, uint8_path.name)


def network_or_none(metadata: ArtifactMetadata, frame: np.ndarray) -> tuple[int, int] | None:
    return metadata.fixed_hw or processing.network_size(frame.shape[:2], metadata.default_input_size)


def make_uint8_variant(built: Built, image: np.ndarray, camera_hw: tuple[int, int] | None) -> Built:
    """A Built for the uint8 variant of `built` (whose sidecar is written), checked against it
    (`input_parity`; the float artifact's own parity, if any, is carried over)."""
    metadata = built.metadata
    path = built.path.with_name(uint8_name(built.path, camera_hw))
    if metadata.format == ArtifactFormat.ONNX:
        wrap_onnx(built.path, path, metadata, camera_hw)
        companions = [external_data_path(path)] if metadata.weights_file else []
    elif metadata.format == ArtifactFormat.OPENVINO:
        wrap_openvino(built.path, path, metadata, camera_hw)
        companions = [path.with_suffix(".bin")]
    else:
        raise Dav2Error(f"--input uint8 is built for ONNX and OpenVINO artifacts, not {metadata.format}")
    record = uint8_metadata(metadata, path.name, camera_hw)
    record.weights_file = companions[0].name if companions else None
    record.write(path)
    frame = check_frame(image, metadata, camera_hw)
    diff = compare_with_float(built.path, path, frame, metadata)
    tolerance = CAMERA_TOLERANCE if camera_hw else UINT8_TOLERANCE
    size = f"{frame.shape[0]}x{frame.shape[1]}" + (" (in-graph cubic resize)" if camera_hw else "")
    record.input_parity = checked(ParityReport({size: diff}, tolerance, built.path.name), "the uint8 input")
    record.write(path)
    return Built(path, record, companions)
