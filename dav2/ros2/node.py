"""dav2-ros2: a ROS 2 node, a thin rclpy shell over dav2's live pipeline and message builders.

What it does: subscribes to `image` (sensor_msgs/Image) and `camera_info`, runs every newest
frame through the same pipeline as `dav2-run --source 0` (dav2.runtime.pipeline.run with a
plan from dav2.runtime.session.plan_run: the latest-frame policy, --stabilize, --anchors, a
calibration stored in the artifact, any backend), and publishes what dav2.ros2.messages builds:
depth (or disparity) 32FC1 with its camera_info, PointCloud2 for metric depth, optionally the
coloured depth. Output headers keep the incoming image's stamp and frame_id (so TF and
message_filters line them up); --ros-frame-id is used for images without one.

Why so thin: everything but the ROS plumbing is the code dav2-run runs and the tests check on
machines without ROS. The plumbing here (subscriptions, publishers, record -> rclpy message) is
not run by dav2's tests: rclpy comes only with a ROS 2 install (Humble or newer), which these
machines do not have. docs/ros2.md says what was run and what was not.

Ctrl-C: rclpy's own signal handling is turned off, so Ctrl-C reaches the pipeline as in
dav2-run (outputs closed, one line, exit 130).
"""

import array
import dataclasses
import importlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dav2 import console
from dav2.errors import Dav2Error
from dav2.geometry.anchors import read_anchors
from dav2.geometry.intrinsics import Intrinsics, parse_intrinsics
from dav2.optional import install_hint
from dav2.ros2.messages import FrameMessages, RosSettings, Time, bgr_from_image, intrinsics_from_camera_info
from dav2.runtime.sources import Frame, Source

QUEUE_DEPTH = 1  # subscriptions keep one message: the pipeline wants the newest frame only
STAMPS_KEPT = 64  # frames in flight whose incoming header is remembered
NODE_NAME = "dav2_depth"


@dataclass(frozen=True)
class NodeOptions:
    model: str | Path
    ros: RosSettings
    intrinsics: str | None = None  # used until the first camera_info
    anchors: str | None = None
    stabilize: bool = False
    input_size: int | None = None
    threads: int = 0
    ros_args: tuple[str, ...] = ()  # after --ros-args: remappings, parameters, namespace


def import_ros():
    """rclpy and the message packages, or one Dav2Error saying how to get them."""
    try:
        rclpy = importlib.import_module("rclpy")
        importlib.import_module("rclpy.signals")
        importlib.import_module("rclpy.qos")
        importlib.import_module("sensor_msgs.msg")
    except ImportError:
        raise Dav2Error(f"dav2-ros2 needs rclpy and sensor_msgs: {install_hint('rclpy')}") from None
    return rclpy


def message_class(ros_type: str):
    """ "sensor_msgs/msg/Image" -> sensor_msgs.msg.Image."""
    package, kind, name = ros_type.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def to_rclpy(value):
    """A dav2.ros2.messages record as the rclpy message (nested records and arrays included).

    rclpy keeps unbounded numeric sequences (Image.data, CameraInfo.d) as array.array and
    fixed-size ones (CameraInfo.k, r, p) as numpy arrays; each array goes in as the type the
    message already holds, so its setter accepts it without a copy per element."""
    if not dataclasses.is_dataclass(value):
        return [to_rclpy(item) for item in value] if isinstance(value, tuple) else value
    message = message_class(value.ROS_TYPE)()
    for item in dataclasses.fields(value):
        field_value, current = to_rclpy(getattr(value, item.name)), getattr(message, item.name)
        if isinstance(field_value, np.ndarray):
            if isinstance(current, array.array):
                typed = array.array(current.typecode)
                typed.frombytes(np.ascontiguousarray(field_value, dtype=np.dtype(current.typecode)).tobytes())
                field_value = typed
            else:
                field_value = np.asarray(field_value, dtype=getattr(current, "dtype", None))
        setattr(message, item.name, field_value)
    return message


class TopicSource(Source):
    """Frames from the image subscription; only the newest one waits (a one-item mailbox)."""

    kind = "ros2"
    live = True

    def __init__(self):
        self.label = "ROS 2 topic image"
        self._condition = threading.Condition()
        self._pending: Frame | None = None
        self._stopping = False
        self._index = 0
        self.headers: OrderedDict[int, tuple[Time, str]] = OrderedDict()
        self.intrinsics: Intrinsics | None = None
        self.dropped = 0

    def on_image(self, message) -> None:
        """Subscription callback: keep this frame, replacing one not yet taken."""
        try:
            image = bgr_from_image(message.encoding, message.height, message.width, message.step, message.data,
                                   bool(message.is_bigendian))  # fmt: skip
        except Dav2Error as exc:
            console.warn(str(exc))
            return
        with self._condition:
            frame = Frame(image, f"frame_{self._index:06d}", self._index, captured=time.perf_counter())
            self.headers[self._index] = (Time(message.header.stamp.sec, message.header.stamp.nanosec),
                                         message.header.frame_id)  # fmt: skip
            while len(self.headers) > STAMPS_KEPT:
                self.headers.popitem(last=False)
            self.dropped += self._pending is not None
            self._pending, self._index = frame, self._index + 1
            self._condition.notify()

    def on_camera_info(self, message) -> None:
        self.intrinsics = intrinsics_from_camera_info(message.k, message.width, message.height)

    def __iter__(self):
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._pending is not None or self._stopping)
                if self._stopping:
                    return
                frame, self._pending = self._pending, None
            yield frame

    def header_of(self, frame: Frame) -> tuple[Time, str]:
        return self.headers.get(frame.index, (Time(0, 0), ""))

    def close(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify_all()


class TopicSink:
    """Publishes each frame's messages; shaped like dav2.runtime.sinks' sinks."""

    def __init__(self, node, builder: FrameMessages, source: TopicSource):
        self.builder, self.source = builder, source
        roles = dataclasses.asdict(builder.topics)
        types = {"depth": "sensor_msgs/msg/Image", "camera_info": "sensor_msgs/msg/CameraInfo",
                 "points": "sensor_msgs/msg/PointCloud2", "color": "sensor_msgs/msg/CompressedImage"}  # fmt: skip
        self.publishers = {
            topic: node.create_publisher(message_class(types[role]), topic, QUEUE_DEPTH)
            for role, topic in roles.items()
            if topic is not None
        }
        self.written = 0

    def write(self, frame: Frame, depth: np.ndarray, value_range: tuple[float, float] | None = None) -> None:
        stamp, frame_id = self.source.header_of(frame)
        built = self.builder.build(frame.image, depth, stamp, value_range, self.source.intrinsics, frame_id or None)
        for topic, record in built:
            self.publishers[topic].publish(to_rclpy(record))
        self.written += 1

    def planned_outputs(self, names: list[str]) -> list[Path]:
        return []

    def close(self, success: bool = True) -> None:
        pass


def run_node(options: NodeOptions) -> None:
    """Spin the node until Ctrl-C (or the ROS context shuts down)."""
    rclpy = import_ros()
    from rclpy.signals import SignalHandlerOptions

    from dav2.runtime.backends import open_backend
    from dav2.runtime.pipeline import run
    from dav2.runtime.session import RunOptions, plan_run

    intrinsics = parse_intrinsics(options.intrinsics) if options.intrinsics else None
    anchors = tuple(read_anchors(options.anchors)) if options.anchors else ()
    rclpy.init(args=["dav2-ros2", *options.ros_args], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(NODE_NAME)
    source = TopicSource()
    node.context.on_shutdown(source.close)  # `ros2 lifecycle`/launch shutting the context ends the run
    try:
        qos = rclpy.qos.qos_profile_sensor_data
        node.create_subscription(message_class("sensor_msgs/msg/Image"), "image", source.on_image, qos)
        node.create_subscription(message_class("sensor_msgs/msg/CameraInfo"), "camera_info", source.on_camera_info, qos)
        spinner = threading.Thread(target=rclpy.spin, args=(node,), name="rclpy-spin", daemon=True)
        spinner.start()
        run_options = RunOptions(
            input_size=options.input_size,
            stabilize=options.stabilize,
            intrinsics=intrinsics,
            anchors=anchors,
            preprocess="float32",
        )
        with open_backend(options.model, threads=options.threads) as backend:
            plan = plan_run(backend, source, run_options)
            builder = FrameMessages(options.ros, plan.unit, intrinsics)
            sink = TopicSink(node, builder, source)
            console.info(f"{backend.describe()}\npublishing {', '.join(sink.publishers)} (newest frame kept)")
            run(source, backend, plan.with_sinks(sink))
    finally:
        source.close()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
