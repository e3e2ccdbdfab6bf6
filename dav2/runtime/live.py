"""A live view of a headless run, in a browser on another machine: a Foxglove WebSocket server.

`dav2-run --source 0 --serve` on a robot (a Jetson without a display) lets a laptop watch what
the model sees: open Foxglove (the web app or the desktop app), "Open connection", and give it
ws://HOST:PORT. Foxglove's server (`foxglove-sdk`, the `live` extra) speaks the protocol the
app reads and encodes its well-known schemas, so the app shows images, the point cloud in its
3D panel and the numbers in its plot panel with no plugin. Why not Rerun's web viewer: the
Foxglove server is one native library with no viewer to host, it bounds each client's queue,
and robotics users already open their ROS 2 bags (dav2.ros2) in the same app.

Topics (one `foxglove.Context` per view, so two views in one process stay apart):

  /dav2/image    foxglove.CompressedImage: the camera frame, JPEG
  /dav2/depth    foxglove.CompressedImage: the coloured depth (the run's --cmap and range), JPEG
  /dav2/points   foxglove.PointCloud: x, y, z float32 in metres (the optical frame) and red,
                 green, blue, alpha uint8 per point, every `stride`-th pixel in both directions;
                 metric depth only (a metric model, --anchors or a stored calibration), as the
                 ROS 2 bag decides (dav2.ros2.messages): relative depth has no 3D shape
  /dav2/camera   foxglove.CameraCalibration: the run's intrinsics scaled to the frame (upstream's
                 default camera, said once, without --intrinsics)
  /dav2/tf       foxglove.FrameTransform: `world` (x forward, y left, z up) to the camera's optical
                 frame (x right, y down, z forward), so the 3D panel shows the cloud upright
  /dav2/stats    JSON: the pipeline's live numbers (FPS, latency p50/p90, per-stage times, frames
                 dropped) once a second, and the view's own counts (frames written, sent,
                 replaced unsent by a newer one, bytes sent)

Bounded in memory and bandwidth, whatever the network does:

- the pipeline's output stage hands each frame to a mailbox of ONE frame (`Mailbox`) and goes
  on; a sender thread takes the newest, encodes and publishes it, then waits 1 / max_hz. A
  frame that arrives before the previous one was taken replaces it (counted: `replaced`), so
  a slow network or a slow encoder never slows the run, and at most one frame waits;
- nothing is encoded for a topic no client subscribes to (`has_sinks`), so a view nobody
  watches costs the run a reference per frame;
- the server keeps at most `BACKLOG` messages per client and drops the oldest for a client
  that reads too slowly (foxglove-sdk's message_backlog_size), instead of queueing without limit;
- the JPEG quality and the cloud's stride set the size of each message.

Security: the server has no authentication. It binds 127.0.0.1 unless told otherwise, so the
usual way in is an SSH tunnel (docs/live.md); --serve 0.0.0.0:PORT exposes the camera to the
network, and says so.

Closing the view (the pipeline closes its sinks at the end of a run, after an error, Ctrl-C
or SIGTERM) stops the sender thread and the server, which closes the port.
"""

import importlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.geometry.intrinsics import Intrinsics, default_note, intrinsics_for_frame
from dav2.geometry.pointcloud import PointCloud, unproject
from dav2.ros2.messages import DEFAULT_FRAME_ID, MAX_CLOUD_STRIDE
from dav2.runtime.fps import LiveSnapshot
from dav2.runtime.sources import Frame

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765  # Foxglove's own default for a WebSocket connection
MAX_PORT = 65535
DEFAULT_MAX_HZ = 10.0
MIN_HZ, MAX_HZ = 0.1, 120.0
DEFAULT_QUALITY = 80  # JPEG quality, 1..100
DEFAULT_STRIDE = 4  # a point every 4th pixel both ways: 1/16 of the pixels
BACKLOG = 16  # messages queued per client before the oldest is dropped (a frame is up to 6)
JOIN_S = 5.0  # how long closing waits for a sender in the middle of one frame, and for the port
RELEASE_POLL_S = 0.005  # between tries of a closing server's port (port_released)
PARENT_FRAME = "world"
TOPICS = {
    "image": "/dav2/image",
    "depth": "/dav2/depth",
    "points": "/dav2/points",
    "camera": "/dav2/camera",
    "tf": "/dav2/tf",
    "stats": "/dav2/stats",
}
LOOPBACK = ("127.0.0.1", "localhost", "::1")
# optical frame (x right, y down, z forward) in `world` (x forward, y left, z up): REP 103's
# rotation of a camera's optical frame, as quaternion x, y, z, w
OPTICAL_IN_WORLD = (-0.5, 0.5, -0.5, 0.5)
POINT_LAYOUT = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
)
STATS_SCHEMA = {  # a JSON schema, so Foxglove's plot panel offers the fields by name
    "type": "object",
    "properties": {
        "frames": {"type": "integer"},
        "end_to_end_fps": {"type": ["number", "null"]},
        "latency_ms": {"type": ["number", "null"]},
        "latency_p50_ms": {"type": ["number", "null"]},
        "latency_p90_ms": {"type": ["number", "null"]},
        "stage_ms": {"type": "object", "additionalProperties": {"type": "number"}},
        "stage_fps": {"type": "object", "additionalProperties": {"type": "number"}},
        "stage_cpu_ms": {"type": "object", "additionalProperties": {"type": "number"}},
        "dropped_frames": {"type": "integer"},
        "live_view": {
            "type": "object",
            "properties": {
                "written": {"type": "integer"},
                "sent": {"type": "integer"},
                "replaced": {"type": "integer"},
                "bytes_sent": {"type": "integer"},
            },
        },
    },
}


@dataclass(frozen=True)
class LiveSettings:
    """Where the view listens and how much it sends: --serve [HOST:]PORT, --serve-hz,
    --serve-quality, --serve-stride. Checked when made, before a model is loaded."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0: the system picks a free port (printed when the view opens)
    max_hz: float = DEFAULT_MAX_HZ
    quality: int = DEFAULT_QUALITY
    stride: int = DEFAULT_STRIDE

    def __post_init__(self) -> None:
        if not self.host or any(c.isspace() for c in self.host):
            raise Dav2Error("--serve needs a host name or address (e.g. 127.0.0.1:8765 or 0.0.0.0:8765)")
        whole(self.port, "--serve's port", 0, MAX_PORT)
        if isinstance(self.max_hz, bool) or not MIN_HZ <= self.max_hz <= MAX_HZ:
            raise Dav2Error(f"--serve-hz must be from {MIN_HZ:g} to {MAX_HZ:g} frames a second")
        whole(self.quality, "--serve-quality", 1, 100)
        whole(self.stride, "--serve-stride", 1, MAX_CLOUD_STRIDE)

    @classmethod
    def parse(
        cls,
        serve: str,
        max_hz: float = DEFAULT_MAX_HZ,
        quality: int = DEFAULT_QUALITY,
        stride: int = DEFAULT_STRIDE,
    ) -> "LiveSettings":
        """From --serve's `[HOST:]PORT` ("8765", "0.0.0.0:8765", "[::1]:8765"; port 0: any free one)."""
        text = serve.strip()
        host, colon, port = text.rpartition(":")
        if not colon:
            host = DEFAULT_HOST
        elif host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise Dav2Error(f"--serve {serve!r}: write an IPv6 address in brackets, e.g. [::1]:{DEFAULT_PORT}")
        if not port.isdigit():
            raise Dav2Error(f"--serve {serve!r}: expected [HOST:]PORT with PORT a number from 0 to {MAX_PORT}")
        return cls(host, int(port), max_hz, quality, stride)

    @property
    def period_s(self) -> float:
        return 1.0 / self.max_hz

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK or self.host.startswith("127.")


def whole(value: int, name: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Dav2Error(f"{name} must be a whole number from {low} to {high}")


@dataclass(frozen=True)
class Pending:
    """One frame waiting for the sender: what the pipeline wrote, and when it was captured."""

    image: np.ndarray
    depth: np.ndarray
    value_range: tuple[float, float] | None
    seconds: float  # since the epoch


class Mailbox:
    """ONE frame between the pipeline and the sender: `put` replaces a frame not yet taken
    (counted in `replaced`) and never waits; `take` waits for a frame or for `close`."""

    def __init__(self):
        self._item: Pending | None = None
        self._closed = False
        self._condition = threading.Condition()
        self.replaced = 0

    def put(self, item: Pending) -> None:
        with self._condition:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._condition.notify()

    def take(self) -> Pending | None:
        """The newest frame, or None once closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed)
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._condition:
            self._closed, self._item = True, None
            self._condition.notify_all()

    @property
    def pending(self) -> int:
        """Frames waiting: 0 or 1, by construction."""
        with self._condition:
            return int(self._item is not None)


class Subscriptions:
    """A foxglove ServerListener that counts each topic's subscribers, so a caller can wait for
    a client (`wait`) instead of guessing how long a subscription takes to arrive."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self._condition = threading.Condition()

    def on_subscribe(self, client: Any, channel: Any) -> None:
        with self._condition:
            self.counts[channel.topic] = self.counts.get(channel.topic, 0) + 1
            self._condition.notify_all()

    def on_unsubscribe(self, client: Any, channel: Any) -> None:
        with self._condition:
            self.counts[channel.topic] = max(self.counts.get(channel.topic, 0) - 1, 0)
            self._condition.notify_all()

    def wait(self, topics: list[str], timeout: float | None = None) -> bool:
        """True once every topic in `topics` has a subscriber (False after `timeout` seconds)."""
        with self._condition:
            return self._condition.wait_for(lambda: all(self.counts.get(t, 0) > 0 for t in topics), timeout)


def jpeg(bgr: np.ndarray, quality: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise Dav2Error("the live view could not encode a JPEG")
    return encoded.tobytes()


def packed_points(cloud: PointCloud) -> bytes:
    """x, y, z float32 + red, green, blue, alpha uint8 per point (POINT_LAYOUT), little-endian."""
    points = np.empty(len(cloud), dtype=POINT_LAYOUT)
    for axis, name in enumerate("xyz"):
        points[name] = cloud.points[:, axis]
    colors = cloud.colors if cloud.colors is not None else np.full((len(cloud), 3), 255, np.uint8)
    for index, name in enumerate(("red", "green", "blue")):
        points[name] = colors[:, index]
    points["alpha"] = 255
    return points.tobytes()


class LiveView:
    """The Foxglove WebSocket server of one run, shaped like dav2.runtime.sinks' sinks
    (`write`, `close`, `planned_outputs`, `written`) plus `tick`, which the pipeline calls with
    its live numbers once a second. Opening it starts the server; the bound port is `port`."""

    def __init__(
        self,
        settings: LiveSettings,
        unit: str,
        intrinsics: Intrinsics | None = None,
        cmap: str = "spectral",
        frame_id: str = DEFAULT_FRAME_ID,
    ):
        foxglove = import_foxglove()
        self.settings, self.metric, self.intrinsics, self.cmap = settings, unit == "m", intrinsics, cmap
        self.frame_id = frame_id
        self.mailbox = Mailbox()
        self.subscriptions = Subscriptions()
        self.written = self.sent = self.bytes_sent = 0  # bytes_sent: encoded messages, once per frame
        self.error: BaseException | None = None
        self.warned = self.closed = False
        self._stopping = threading.Event()
        self._offset = time.time() - time.perf_counter()  # perf_counter (Frame.captured) -> epoch
        self.context = foxglove.Context()
        self.channels = open_channels(foxglove, self.context, self.metric)
        self.server = start(foxglove, settings, self.context, self.subscriptions)
        self.port = int(self.server.port)
        self.sender = threading.Thread(target=self._send_loop, name="dav2-live-view", daemon=True)
        self.sender.start()
        self.announce()

    @property
    def url(self) -> str:
        host = f"[{self.settings.host}]" if ":" in self.settings.host else self.settings.host
        return f"ws://{host}:{self.port}"

    def announce(self) -> None:
        """Say once where to connect (port 0 means only the server knows) and what is sent."""
        points = "" if self.metric else " (no point cloud: relative depth has no metric scale)"
        console.info(
            f"live view: {self.url} (Foxglove: Open connection, Foxglove WebSocket){points}; "
            f"at most {self.settings.max_hz:g} frames a second"
        )
        if not self.settings.loopback:
            console.warn(
                f"--serve {self.settings.host}: anyone who can reach this port sees the camera (no authentication)"
            )

    # --- the sink interface (the pipeline's output thread) --------------------------------------

    def planned_outputs(self, names: list[str]) -> list[Path]:
        return []

    def write(self, frame: Frame, depth: np.ndarray, value_range: tuple[float, float] | None = None) -> None:
        """Hand the frame to the sender and return at once (a newer frame replaces an unsent one)."""
        if self.error is not None:
            raise self.error
        captured = frame.captured + self._offset if frame.captured is not None else time.time()
        self.mailbox.put(Pending(frame.image, depth, value_range, captured))
        self.written += 1

    def tick(self, snapshot: LiveSnapshot) -> None:
        """The pipeline's live numbers (once a second), with the view's own counts, on /dav2/stats."""
        record = snapshot.as_dict()
        record["live_view"] = self.counts()
        self.channels["stats"].log(record, log_time=time.time_ns())

    def counts(self) -> dict[str, int]:
        """Frames written by the pipeline, sent, replaced unsent by a newer one; bytes encoded and
        sent (each client subscribed gets them once: the bandwidth per client)."""
        return {
            "written": self.written,
            "sent": self.sent,
            "replaced": self.mailbox.replaced,
            "bytes_sent": self.bytes_sent,
        }

    def close(self, success: bool = True) -> None:
        """Stop the sender (a frame in the mailbox is dropped) and the server; idempotent."""
        if self.closed:
            return
        self.closed = True
        self._stopping.set()
        self.mailbox.close()
        self.sender.join(timeout=JOIN_S)
        self.server.stop()
        if not port_released(self.settings.host, self.port, JOIN_S):
            console.warn(f"live view: port {self.port} was still open {JOIN_S:g} s after the server stopped")
        counts = self.counts()
        console.info(
            f"live view closed: {counts['sent']} of {counts['written']} frame(s) sent "
            f"({counts['bytes_sent'] / 1e6:.1f} MB per watching client), "
            f"{counts['replaced']} replaced by newer ones"
        )

    # --- the sender thread -----------------------------------------------------------------------

    def _send_loop(self) -> None:
        try:
            while True:
                item = self.mailbox.take()
                if item is None:
                    return
                self.publish(item)
                self.sent += 1
                if self._stopping.wait(self.settings.period_s):  # the rate cap; close ends it at once
                    return
        except BaseException as exc:  # noqa: BLE001 - raised in the pipeline's thread by the next write
            self.error = exc

    def publish(self, item: Pending) -> None:
        """One frame's messages, each encoded only when some client subscribes to its topic."""
        from foxglove.messages import Timestamp

        stamp = Timestamp.from_epoch_secs(item.seconds)
        log_time = stamp.sec * 1_000_000_000 + stamp.nsec  # the same instant as the header, to the nanosecond
        height, width = item.depth.shape
        camera = self.camera(width, height)
        for name, build in self.builders(item, camera, stamp).items():
            channel = self.channels.get(name)
            if channel is not None and channel.has_sinks():
                payload = build().encode()
                channel.log(payload, log_time=log_time)
                self.bytes_sent += len(payload)

    def builders(self, item: Pending, camera: Intrinsics, stamp: Any) -> dict[str, Callable[[], Any]]:
        from foxglove.messages import CompressedImage

        quality, frame_id = self.settings.quality, self.frame_id
        return {
            "tf": lambda: optical_transform(stamp, frame_id),
            "camera": lambda: calibration(camera, stamp, frame_id),
            "image": lambda: CompressedImage(
                timestamp=stamp, frame_id=frame_id, data=jpeg(item.image, quality), format="jpeg"
            ),
            "depth": lambda: CompressedImage(
                timestamp=stamp,
                frame_id=frame_id,
                data=jpeg(processing.colorize(item.depth, self.cmap, item.value_range), quality),
                format="jpeg",
            ),
            "points": lambda: point_cloud(
                unproject(item.depth, camera, item.image, stride=self.settings.stride), stamp, frame_id
            ),
        }

    def camera(self, width: int, height: int) -> Intrinsics:
        camera = intrinsics_for_frame(self.intrinsics, width, height)
        if camera.assumed and not self.warned:
            console.warn(default_note(camera))
            self.warned = True
        return camera


def import_foxglove() -> Any:
    """foxglove-sdk, or one line naming the extra. Not dav2.optional.require: the import name
    `foxglove` is another project's on the package index (a browser proxy tool), so the hint
    names the distribution, and a module without a WebSocket server is refused too."""
    try:
        module = importlib.import_module("foxglove")
    except ImportError:
        module = None
    if not hasattr(module, "start_server"):
        raise Dav2Error("--serve (the live view) needs foxglove-sdk: pip install 'dav2[live]'")
    return module


def open_channels(foxglove: Any, context: Any, metric: bool) -> dict[str, Any]:
    """The channels of TOPICS in `context` (no point cloud channel for relative depth): Foxglove's
    own protobuf schemas, logged as bytes the view encodes itself, so it counts what it sends."""
    from foxglove.messages import CameraCalibration, CompressedImage, FrameTransform, PointCloud

    schemas = {"image": CompressedImage, "depth": CompressedImage, "camera": CameraCalibration, "tf": FrameTransform}
    if metric:
        schemas["points"] = PointCloud
    channels = {
        name: foxglove.Channel(TOPICS[name], schema=kind.get_schema(), message_encoding="protobuf", context=context)
        for name, kind in schemas.items()
    }
    channels["stats"] = foxglove.Channel(TOPICS["stats"], schema=STATS_SCHEMA, context=context)
    return channels


def start(foxglove: Any, settings: LiveSettings, context: Any, listener: Subscriptions) -> Any:
    """The WebSocket server, bound; a port in use or an unknown host is one error line."""
    try:
        return foxglove.start_server(
            name="dav2",
            host=settings.host,
            port=settings.port,
            context=context,
            server_listener=listener,
            message_backlog_size=BACKLOG,
        )
    except RuntimeError as exc:
        raise Dav2Error(
            f"--serve {settings.host}:{settings.port}: {str(exc).removeprefix('FoxgloveError: ')}"
        ) from None


def port_released(host: str, port: int, timeout: float) -> bool:
    """Wait until nothing listens on host:port any more (False after `timeout` seconds).

    foxglove-sdk's `stop()` returns before its listener is closed and offers nothing to wait
    on, so the port is tried: a bind (SO_REUSEADDR, so connections in TIME_WAIT do not count)
    fails while the server still listens. Closing then means closed: the next run (the web
    app, a restarted node, a test) can bind the same port at once."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError:
        return True  # the name no longer resolves: nothing of ours can listen on it
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
                return True
            except OSError:
                pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(RELEASE_POLL_S)


def optical_transform(stamp: Any, frame_id: str) -> Any:
    from foxglove.messages import FrameTransform, Quaternion, Vector3

    x, y, z, w = OPTICAL_IN_WORLD
    return FrameTransform(
        timestamp=stamp,
        parent_frame_id=PARENT_FRAME,
        child_frame_id=frame_id,
        translation=Vector3(x=0.0, y=0.0, z=0.0),
        rotation=Quaternion(x=x, y=y, z=z, w=w),
    )


def calibration(camera: Intrinsics, stamp: Any, frame_id: str) -> Any:
    """The pinhole camera of the frame, without distortion (dav2 does not undistort): K, R = I, P = [K | 0]."""
    from foxglove.messages import CameraCalibration

    k = camera.matrix
    projection = np.zeros((3, 4))
    projection[:, :3] = k
    return CameraCalibration(
        timestamp=stamp,
        frame_id=frame_id,
        width=int(camera.width),
        height=int(camera.height),
        distortion_model="plumb_bob",
        D=[0.0] * 5,
        K=[float(v) for v in k.reshape(-1)],
        R=[float(v) for v in np.eye(3).reshape(-1)],
        P=[float(v) for v in projection.reshape(-1)],
    )


def point_cloud(cloud: PointCloud, stamp: Any, frame_id: str) -> Any:
    from foxglove.messages import (
        PackedElementField,
        PackedElementFieldNumericType,
        PointCloud,
        Pose,
        Quaternion,
        Vector3,
    )

    kinds = {"<f4": PackedElementFieldNumericType.Float32, "|u1": PackedElementFieldNumericType.Uint8}
    fields = [
        PackedElementField(name=name, offset=offset, type=kinds[dtype.str])
        for name, (dtype, offset) in POINT_LAYOUT.fields.items()
    ]
    return PointCloud(
        timestamp=stamp,
        frame_id=frame_id,
        pose=Pose(position=Vector3(x=0.0, y=0.0, z=0.0), orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=1.0)),
        point_stride=POINT_LAYOUT.itemsize,
        fields=fields,
        data=packed_points(cloud),
    )
