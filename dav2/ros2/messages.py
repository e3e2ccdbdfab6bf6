"""numpy depth + intrinsics -> the fields of the sensor_msgs messages a robot stack reads.

Why plain records: the same frame is written to a rosbag2 file (dav2-run --format rosbag,
serialised with `rosbags`) and published by the node (`rclpy`, from the user's ROS 2
install). Building the fields once, here, without importing either library, means the bag
and the node publish the same bytes, and the builders are tested on every machine, rclpy
or not. Each record names its ROS type (`ROS_TYPE`) and its fields are ROS 2's own names, so
a converter walks it generically (`dav2.ros2.bag.to_rosbags`, `dav2.ros2.node.to_rclpy`).

What is published, per frame (topic names below the prefix, `RosSettings.prefix`):

- `depth/image` (metric depth: a metric model, `--anchors`, or a calibration stored in the
  artifact) or `disparity/image` (a relative model: unitless disparity, larger = nearer):
  sensor_msgs/msg/Image, encoding 32FC1, the run's float32 depth map byte for byte. Metres
  follow REP 118 (depth along the optical axis; 0 where unknown); disparity gets its own topic
  name so no consumer mistakes it for metres;
- `depth/camera_info` (or `disparity/camera_info`, beside its image as image_transport and
  depth_image_proc expect): sensor_msgs/msg/CameraInfo with the run's intrinsics scaled to the frame
  (`Intrinsics.for_frame`), no distortion (plumb_bob, zeros: dav2 does not undistort), R the
  identity and P = [K | 0];
- `points` (metric depth only): sensor_msgs/msg/PointCloud2, one point per valid pixel (every
  `cloud_stride`-th pixel in both directions), fields x, y, z (float32, metres, the optical
  frame: x right, y down, z forward) and rgb (the pixel's colour packed as 0x00RRGGBB in a
  float32 field, PCL's layout, which RViz and Foxglove colour by), unorganised (height 1);
- `depth/color/compressed` (optional): the coloured depth as sensor_msgs/msg/CompressedImage
  (JPEG), for a quick look in Foxglove or rqt.

Every message of a frame carries the same header: the configurable frame id (the node keeps
the incoming image's) and the source's capture time (`stamp`).
"""

import math
import re
from dataclasses import dataclass, field
from typing import ClassVar

import cv2
import numpy as np

from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.geometry.intrinsics import Intrinsics, default_note, intrinsics_for_frame
from dav2.geometry.pointcloud import PointCloud, unproject

DEFAULT_FRAME_ID = "camera_optical_frame"  # REP 103: the optical frame (z forward, x right, y down)
DEFAULT_PREFIX = "/dav2"
MAX_CLOUD_STRIDE = 64
JPEG_QUALITY = 90
NAME_TOKEN = r"[A-Za-z_][A-Za-z0-9_]*"
PREFIX_PATTERN = re.compile(rf"^/?({NAME_TOKEN}(/{NAME_TOKEN})*)?$")  # ROS 2 topic name rules
FRAME_ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")  # tf2 refuses a leading slash

# sensor_msgs/msg/PointField datatypes
FLOAT32 = 7


@dataclass(frozen=True)
class RosSettings:
    """Where and how a run's depth is published: frame id, topic prefix, cloud density, colour."""

    frame_id: str = DEFAULT_FRAME_ID
    prefix: str = DEFAULT_PREFIX  # "" or a relative prefix: names resolved in the node's namespace
    cloud_stride: int = 1  # every n-th pixel (both directions) becomes a point
    color: bool = False  # also the coloured depth as a JPEG CompressedImage

    def __post_init__(self) -> None:
        if not FRAME_ID_PATTERN.match(self.frame_id):
            raise Dav2Error(
                f"--ros-frame-id {self.frame_id!r}: a tf2 frame id is letters, digits, _ . / -, not starting with /"
            )
        if not PREFIX_PATTERN.match(self.prefix.rstrip("/") if self.prefix != "/" else ""):
            raise Dav2Error(
                f"--ros-prefix {self.prefix!r}: a ROS 2 topic prefix is names of letters, digits and _ "
                "(not starting with a digit) separated by /, e.g. /dav2 or /robot/front"
            )
        if isinstance(self.cloud_stride, bool) or not 1 <= self.cloud_stride <= MAX_CLOUD_STRIDE:
            raise Dav2Error(f"--ros-cloud-stride must be a whole number from 1 to {MAX_CLOUD_STRIDE}")

    def topic(self, name: str) -> str:
        """`name` below the prefix ("/dav2" + "points" -> "/dav2/points")."""
        prefix = self.prefix.rstrip("/")
        if not prefix:
            return f"/{name}" if self.prefix == "/" else name
        return f"{prefix}/{name}"

    def topics(self, metric: bool) -> "Topics":
        base = "depth" if metric else "disparity"  # camera_info beside its image, as image_transport pairs them
        return Topics(
            depth=self.topic(f"{base}/image"),
            camera_info=self.topic(f"{base}/camera_info"),
            points=self.topic("points") if metric else None,
            color=self.topic("depth/color/compressed") if self.color else None,
        )


@dataclass(frozen=True)
class Topics:
    """The topics a run writes; None: not written (points of relative depth, colour not asked)."""

    depth: str
    camera_info: str
    points: str | None
    color: str | None


# --- the message records (ROS 2 field names) --------------------------------------------------


@dataclass(frozen=True)
class Time:
    ROS_TYPE: ClassVar[str] = "builtin_interfaces/msg/Time"
    sec: int
    nanosec: int

    @property
    def nanoseconds(self) -> int:
        return self.sec * 1_000_000_000 + self.nanosec


@dataclass(frozen=True)
class Header:
    ROS_TYPE: ClassVar[str] = "std_msgs/msg/Header"
    stamp: Time
    frame_id: str


@dataclass(frozen=True)
class Image:
    ROS_TYPE: ClassVar[str] = "sensor_msgs/msg/Image"
    header: Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray  # uint8, height * step bytes


@dataclass(frozen=True)
class RegionOfInterest:
    ROS_TYPE: ClassVar[str] = "sensor_msgs/msg/RegionOfInterest"
    x_offset: int = 0
    y_offset: int = 0
    height: int = 0
    width: int = 0
    do_rectify: bool = False


@dataclass(frozen=True)
class CameraInfo:
    ROS_TYPE: ClassVar[str] = "sensor_msgs/msg/CameraInfo"
    header: Header
    height: int
    width: int
    distortion_model: str
    d: np.ndarray  # float64, 5 for plumb_bob
    k: np.ndarray  # float64, 9: row-major 3x3 K
    r: np.ndarray  # float64, 9: rectification rotation
    p: np.ndarray  # float64, 12: row-major 3x4 projection
    binning_x: int = 0
    binning_y: int = 0
    roi: RegionOfInterest = field(default_factory=RegionOfInterest)


@dataclass(frozen=True)
class PointField:
    ROS_TYPE: ClassVar[str] = "sensor_msgs/msg/PointField"
    name: str
    offset: int
    datatype: int
    count: int


@dataclass(frozen=True)
class PointCloud2:
    ROS_TYPE: ClassVar[str] = "sensor_msgs/msg/PointCloud2"
    header: Header
    height: int
    width: int
    fields: tuple[PointField, ...]
    is_bigendian: bool
    point_step: int
    row_step: int
    data: np.ndarray  # uint8, row_step * height bytes
    is_dense: bool


@dataclass(frozen=True)
class CompressedImage:
    ROS_TYPE: ClassVar[str] = "sensor_msgs/msg/CompressedImage"
    header: Header
    format: str
    data: np.ndarray  # uint8, the encoded picture


Message = Image | CameraInfo | PointCloud2 | CompressedImage


# --- builders ------------------------------------------------------------------------------------


def stamp(seconds: float) -> Time:
    """A ROS time from seconds since the epoch (whole nanoseconds, nanosec always below 1e9)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise Dav2Error(f"a ROS time must be a finite, non-negative number of seconds, not {seconds!r}")
    sec, nanosec = divmod(round(seconds * 1e9), 1_000_000_000)
    return Time(int(sec), int(nanosec))


def depth_image(depth: np.ndarray, header: Header) -> Image:
    """32FC1, little-endian, rows packed: the depth map's float32 values byte for byte."""
    if depth.ndim != 2:
        raise Dav2Error(f"depth must be one H x W map, got shape {depth.shape}")
    height, width = depth.shape
    data = np.ascontiguousarray(depth, dtype="<f4").view(np.uint8).reshape(-1)
    return Image(header, height, width, "32FC1", 0, width * 4, data)


def camera_info(intrinsics: Intrinsics, header: Header) -> CameraInfo:
    """The pinhole camera of a frame (intrinsics already scaled to it), without distortion."""
    if intrinsics.width is None or intrinsics.height is None:
        raise Dav2Error("CameraInfo needs intrinsics for one frame size (use Intrinsics.for_frame)")
    k = intrinsics.matrix.reshape(-1)
    projection = np.zeros((3, 4))
    projection[:, :3] = intrinsics.matrix
    return CameraInfo(
        header,
        int(intrinsics.height),
        int(intrinsics.width),
        "plumb_bob",
        np.zeros(5),
        k.astype(np.float64),
        np.eye(3).reshape(-1),
        projection.reshape(-1),
    )


def packed_rgb(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N,) float32 whose bits are 0x00RRGGBB (PCL's `rgb` field)."""
    colors = colors.astype(np.uint32)
    return ((colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2]).view(np.float32)


def point_cloud(cloud: PointCloud, header: Header) -> PointCloud2:
    """An unorganised cloud: x, y, z float32 (+ rgb packed in a float32) per point, little-endian."""
    names = ["x", "y", "z"] + (["rgb"] if cloud.colors is not None else [])
    layout = np.dtype([(name, "<f4") for name in names])
    points = np.empty(len(cloud), dtype=layout)
    for axis, name in enumerate("xyz"):
        points[name] = cloud.points[:, axis]
    if cloud.colors is not None:
        points["rgb"] = packed_rgb(cloud.colors)
    fields = tuple(PointField(name, 4 * i, FLOAT32, 1) for i, name in enumerate(names))
    step = layout.itemsize
    data = points.view(np.uint8).reshape(-1)
    return PointCloud2(header, 1, len(cloud), fields, False, step, step * len(cloud), data, True)


def compressed_picture(bgr: np.ndarray, header: Header) -> CompressedImage:
    """A BGR picture as JPEG (the `format` string image_transport's compressed plugin writes)."""
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise Dav2Error("could not encode the coloured depth as JPEG")
    return CompressedImage(header, "jpeg", encoded.reshape(-1))


class FrameMessages:
    """All the messages of one frame, as (topic, record) pairs in a fixed order.

    The user's intrinsics are scaled to each frame; without them upstream's default camera is
    used and said once (as dav2-run's point clouds do)."""

    def __init__(self, settings: RosSettings, unit: str, intrinsics: Intrinsics | None, cmap: str = "spectral"):
        self.settings, self.metric, self.intrinsics, self.cmap = settings, unit == "m", intrinsics, cmap
        self.topics = settings.topics(self.metric)
        self.warned = False

    def camera(self, width: int, height: int, intrinsics: Intrinsics | None = None) -> Intrinsics:
        camera = intrinsics_for_frame(intrinsics or self.intrinsics, width, height)
        if camera.assumed and not self.warned:
            console.warn(default_note(camera).replace("no --intrinsics", "no intrinsics"))
            self.warned = True
        return camera

    def build(
        self,
        image: np.ndarray,
        depth: np.ndarray,
        seconds: float | Time,
        value_range: tuple[float, float] | None = None,
        intrinsics: Intrinsics | None = None,
        frame_id: str | None = None,
    ) -> list[tuple[str, Message]]:
        """The frame's messages; `intrinsics` (the node's latest camera_info) overrides the run's,
        `frame_id` (the node's incoming image's) the settings'."""
        time_of_capture = seconds if isinstance(seconds, Time) else stamp(seconds)
        header = Header(time_of_capture, frame_id or self.settings.frame_id)
        height, width = depth.shape
        camera = self.camera(width, height, intrinsics)
        messages: list[tuple[str, Message]] = [
            (self.topics.depth, depth_image(depth, header)),
            (self.topics.camera_info, camera_info(camera, header)),
        ]
        if self.topics.points is not None:
            cloud = unproject(depth, camera, image, stride=self.settings.cloud_stride)
            messages.append((self.topics.points, point_cloud(cloud, header)))
        if self.topics.color is not None:
            picture = processing.colorize(depth, self.cmap, value_range)
            messages.append((self.topics.color, compressed_picture(picture, header)))
        return messages


# --- what the node receives ----------------------------------------------------------------------

CHANNELS = {"bgr8": 3, "rgb8": 3, "bgra8": 4, "rgba8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3, "mono16": 1, "16UC1": 1}


def bgr_from_image(encoding: str, height: int, width: int, step: int, data, bigendian: bool = False) -> np.ndarray:
    """A sensor_msgs/Image's pixels as the BGR uint8 frame dav2 reads (OpenCV's order).

    The common camera encodings: bgr8/rgb8/bgra8/rgba8, mono8 and mono16 (scaled to 8 bits as
    OpenCV reads a 16-bit grey PNG); rows may be padded (`step`)."""
    if encoding not in CHANNELS:
        raise Dav2Error(f"image encoding {encoding!r} is not one dav2 reads ({', '.join(CHANNELS)})")
    channels = CHANNELS[encoding]
    wide = encoding in ("mono16", "16UC1")
    itemsize = 2 if wide else 1
    raw = np.frombuffer(memoryview(data), dtype=np.uint8)
    if step < width * channels * itemsize or raw.size < step * height:
        raise Dav2Error(f"a {width}x{height} {encoding} image needs {width * channels * itemsize * height} bytes")
    rows = raw[: step * height].reshape(height, step)[:, : width * channels * itemsize]
    if wide:
        pixels = rows.copy().view(">u2" if bigendian else "<u2").reshape(height, width).astype(np.uint16)
        return processing.to_bgr8(pixels)
    pixels = rows.reshape(height, width, channels)
    conversions = {
        "rgb8": cv2.COLOR_RGB2BGR,
        "rgba8": cv2.COLOR_RGBA2BGR,
        "bgra8": cv2.COLOR_BGRA2BGR,
        "mono8": cv2.COLOR_GRAY2BGR,
        "8UC1": cv2.COLOR_GRAY2BGR,
    }
    if encoding in conversions:
        return cv2.cvtColor(np.ascontiguousarray(pixels), conversions[encoding])
    return np.ascontiguousarray(pixels)


def intrinsics_from_camera_info(k, width: int, height: int) -> Intrinsics | None:
    """A CameraInfo's K as Intrinsics for its frame size; None for an uncalibrated camera (K all zero)."""
    matrix = np.asarray(k, dtype=np.float64).reshape(-1)
    if matrix.size != 9 or matrix[0] <= 0 or matrix[4] <= 0 or not np.isfinite(matrix).all():
        return None
    size = (int(width), int(height)) if width and height else (None, None)
    return Intrinsics(float(matrix[0]), float(matrix[4]), float(matrix[2]), float(matrix[5]), *size)
