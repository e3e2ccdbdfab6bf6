"""dav2-ros2's parts that run without ROS 2: reading incoming images and camera_info, the newest-frame
source under the real pipeline, and the one-line refusal without rclpy.

The incoming messages are rosbags' sensor_msgs classes (a real implementation of the ROS 2 message
types, with rclpy's field names), so the callbacks see what they would see from a subscription. What
cannot run here (rclpy, publishers, `to_rclpy`) is listed in docs/ros2.md.
"""

import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest

from conftest import IMAGES
from dav2.errors import Dav2Error
from dav2.ros2.messages import FrameMessages, RosSettings, Time, bgr_from_image, intrinsics_from_camera_info
from dav2.ros2.node import TopicSource
from dav2.runtime.sinks import MemorySink

PHOTO = cv2.imread(str(IMAGES / "demo08.jpg"))[:120, :160]  # BGR


def ros_image(bgr: np.ndarray, encoding: str, sec: int = 5, frame_id: str = "cam", pad: int = 0):
    """A sensor_msgs/msg/Image (rosbags' class) holding `bgr` in `encoding`, rows padded by `pad` bytes."""
    from rosbags.typesys import Stores, get_typestore

    types = get_typestore(Stores.ROS2_HUMBLE).types
    pixels = {
        "bgr8": bgr,
        "rgb8": bgr[..., ::-1],
        "bgra8": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "mono8": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "mono16": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype("<u2") * 257,
    }[encoding]
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(height, -1)
    rows = np.concatenate([rows, np.zeros((height, pad), np.uint8)], axis=1)
    header = types["std_msgs/msg/Header"](types["builtin_interfaces/msg/Time"](sec, 250), frame_id)
    return types["sensor_msgs/msg/Image"](header, height, width, encoding, 0, rows.shape[1], rows.reshape(-1))


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8"])
def test_colour_encodings_become_the_same_bgr_frame(encoding):
    pytest.importorskip("rosbags")
    message = ros_image(PHOTO, encoding, pad=6)
    frame = bgr_from_image(message.encoding, message.height, message.width, message.step, message.data)
    np.testing.assert_array_equal(frame, PHOTO)


def test_grey_encodings_are_read_as_opencv_reads_grey_files():
    pytest.importorskip("rosbags")
    grey = cv2.cvtColor(cv2.cvtColor(PHOTO, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    for encoding in ("mono8", "mono16"):
        message = ros_image(PHOTO, encoding)
        frame = bgr_from_image(message.encoding, message.height, message.width, message.step, message.data)
        np.testing.assert_array_equal(frame, grey)


def test_unknown_or_short_images_are_refused():
    with pytest.raises(Dav2Error, match="not one dav2 reads"):
        bgr_from_image("bayer_rggb8", 2, 2, 2, bytes(4))
    with pytest.raises(Dav2Error, match="needs"):
        bgr_from_image("bgr8", 2, 2, 6, bytes(10))


def test_camera_info_k_becomes_intrinsics():
    k = [600.0, 0, 320.0, 0, 610.0, 240.0, 0, 0, 1]
    camera = intrinsics_from_camera_info(np.array(k), 640, 480)
    assert (camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height) == (600, 610, 320, 240, 640, 480)
    assert intrinsics_from_camera_info(np.zeros(9), 640, 480) is None  # an uncalibrated camera


def test_the_node_source_keeps_only_the_newest_frame_under_the_real_pipeline(dynamic_onnx):
    """Images arriving while the model runs: the pipeline sees the newest one, with the incoming
    header, and the node's messages carry that stamp and frame id. Image 1 is published; while
    inference runs on it, images 2-40 arrive (published from inside the first inference call, so
    they arrive during it whatever the machine's speed): only image 40 may follow image 1."""
    pytest.importorskip("rosbags")
    from dav2.runtime.backends import open_backend
    from dav2.runtime.pipeline import run
    from dav2.runtime.session import RunOptions, plan_run

    source = TopicSource()
    memory = MemorySink()
    seen = []
    last_written = threading.Event()

    def publish(sec: int) -> None:
        source.on_image(ros_image(np.roll(PHOTO, sec, axis=1), "bgr8", sec=sec, frame_id="front_optical"))

    class Recorder(MemorySink):
        def write(self, frame, depth, value_range=None):
            super().write(frame, depth, value_range)
            seen.append((frame.index, source.header_of(frame)))
            if frame.index == 39:
                last_written.set()

    def feed() -> None:
        publish(1)
        last_written.wait(60)  # a hang guard: the last image is written, then the source ends
        source.close()

    with open_backend(dynamic_onnx) as backend:
        infer, calls = backend.infer, []

        def infer_while_images_arrive(batch):
            calls.append(len(calls))
            if len(calls) == 1:  # images 2-40 arrive during the first inference
                for sec in range(2, 41):
                    publish(sec)
            return infer(batch)

        backend.infer = infer_while_images_arrive
        plan = plan_run(backend, source, RunOptions(input_size=56, preprocess="float32"))
        feeder = threading.Thread(target=feed)
        feeder.start()
        summary = run(source, backend, plan.with_sinks(memory, Recorder()))
        feeder.join()
    assert [index for index, _ in seen] == [0, 39]  # the newest image kept, the rest dropped
    assert len(seen) + source.dropped + summary.dropped_frames == 40  # in the source or the pipeline
    assert all(header == (Time(index + 1, 250), "front_optical") for index, header in seen)
    stamp, frame_id = source.header_of(memory.frame)
    built = dict(FrameMessages(RosSettings(prefix="dav2"), "disparity", None).build(
        memory.frame.image, memory.depth, stamp, frame_id=frame_id))  # fmt: skip
    image = built["dav2/disparity/image"]
    assert image.header.stamp == Time(40, 250) and image.header.frame_id == "front_optical"


def test_without_rclpy_the_node_is_one_line_saying_how_to_get_it(tmp_path):
    code = "import sys\nsys.modules['rclpy'] = None\nfrom dav2.cli.ros2 import ros2_entry\nros2_entry()\n"
    args = ["--model", "m.onnx", "--ros-args", "-r", "image:=/camera/image_raw"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: dav2-ros2 needs rclpy") and "/opt/ros/" in lines[0]
    assert "rclpy" not in sys.modules  # this process imported dav2.ros2.node: it needs no rclpy to import
