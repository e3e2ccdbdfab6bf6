"""dav2-run --format rosbag: a rosbag2 folder (metadata.yaml + one .mcap file) per run.

Written with `rosbags` (pure Python, no ROS install): its Writer makes the bag folder, the
MCAP storage (schemas as ros2msg text, CDR messages, chunk indexes, the summary) and the
metadata.yaml that `ros2 bag play`/`ros2 bag info` read; Foxglove opens the .mcap itself.
Metadata version 8 is written: Humble reads it (version 9 stores the QoS profiles as a YAML
list, which Humble's reader does not take), and newer distributions read every older one.

Why a folder written whole: a bag is several files, and a half-written one (an MCAP without
its summary, a metadata.yaml counting messages that are not there) is worse than none. The
bag is built in a hidden staging folder beside the target and renamed into place when the run
succeeds (`dav2.files.atomic_folder`); a failed or interrupted run removes it, and an earlier
bag of that name stays. An existing folder is replaced only when it is a bag (metadata.yaml
and storage files, or empty), never a user's other folder.

Stamps are the source's capture time (`CaptureClock`): a live source's frames carry the moment
they were captured (perf_counter, turned into epoch time); a video's frames are spaced by its
frame rate from the run's start (so `ros2 bag play` replays at the video's rate); images and
folders get the time they were written. The bag's log time equals each header stamp.

Which topics and what is in them: dav2.ros2.messages. The run's unit is also stored in the
bag's custom_data (`dav2.unit`: m or disparity), beside dav2's version and the model.
"""

import dataclasses
import time
from pathlib import Path

import numpy as np

from dav2 import console
from dav2.errors import Dav2Error
from dav2.files import OutputError, atomic_folder, write_failed
from dav2.geometry.intrinsics import Intrinsics
from dav2.optional import require
from dav2.ros2.messages import FrameMessages, RosSettings
from dav2.runtime.sources import Frame

METADATA_VERSION = 8  # see the module docstring: the newest Humble reads
STORAGE_SUFFIXES = (".mcap", ".db3", ".mcap.zstd", ".db3.zstd")
TYPES = {  # what each topic of messages.Topics carries
    "depth": "sensor_msgs/msg/Image",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "points": "sensor_msgs/msg/PointCloud2",
    "color": "sensor_msgs/msg/CompressedImage",
}


def is_bag_folder(path: Path) -> bool:
    """An empty folder, or one holding only a rosbag2 bag's files (what may be replaced)."""
    entries = list(path.iterdir())
    if not entries:
        return True
    names = {entry.name for entry in entries}
    return "metadata.yaml" in names and all(
        entry.is_file() and (entry.name == "metadata.yaml" or entry.name.endswith(STORAGE_SUFFIXES))
        for entry in entries
    )


def to_rosbags(value, typestore):
    """A messages record (and its nested records) as the typestore's message objects."""
    if dataclasses.is_dataclass(value):
        kind = typestore.types[value.ROS_TYPE]
        return kind(
            **{item.name: to_rosbags(getattr(value, item.name), typestore) for item in dataclasses.fields(value)}
        )
    if isinstance(value, tuple):
        return [to_rosbags(item, typestore) for item in value]
    return value


class CaptureClock:
    """Seconds since the epoch at which a frame was captured (see the module docstring)."""

    def __init__(self, fps: float | None, live: bool):
        self.start = time.time()
        self.offset = self.start - time.perf_counter()  # perf_counter -> epoch
        self.period = 1.0 / fps if fps and not live else None

    def seconds(self, frame: Frame) -> float:
        if frame.captured is not None:
            return frame.captured + self.offset
        if self.period is not None:
            return self.start + frame.index * self.period
        return time.time()


class RosbagSink:
    """One rosbag2 bag (MCAP storage) of the whole run; shaped like dav2.runtime.sinks' sinks."""

    def __init__(
        self,
        target: str | Path,
        unit: str,
        settings: RosSettings,
        intrinsics: Intrinsics | None = None,
        cmap: str = "spectral",
        fps: float | None = None,
        live: bool = False,
    ):
        require("rosbags", "--format rosbag")  # before the run, not at its first frame
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.target = Path(target)
        if self.target.suffix.lower() in (".mcap", ".db3", ".bag"):
            raise Dav2Error(
                f"--format rosbag writes a bag folder (metadata.yaml + .mcap): name a folder, not {self.target.name}"
            )
        self.builder = FrameMessages(settings, unit, intrinsics, cmap)
        if not self.builder.metric:
            console.info(
                f"rosbag: a relative model gives disparity, written to {self.builder.topics.depth} with camera_info "
                "and no point cloud (metres and points need a metric model, --anchors or dav2-calibrate)"
            )
        self.clock = CaptureClock(fps, live)
        self.typestore = get_typestore(Stores.ROS2_HUMBLE)
        self.written = 0
        self.closed = False
        self._context = atomic_folder(self.target, is_bag_folder, "a rosbag2 bag")
        staging = self._context.__enter__()
        try:
            self.writer = Writer(staging, version=METADATA_VERSION, storage_plugin=StoragePlugin.MCAP)
            self.writer.set_custom_data("dav2.unit", unit)
            self.writer.open()
            self.connections = {
                topic: self.writer.add_connection(topic, TYPES[role], typestore=self.typestore)
                for role, topic in dataclasses.asdict(self.builder.topics).items()
                if topic is not None
            }
        except OSError as exc:
            self._context.__exit__(type(exc), exc, None)
            raise write_failed(self.target, exc) from None
        except BaseException as exc:
            self._context.__exit__(type(exc), exc, None)
            raise

    def planned_outputs(self, names: list[str]) -> list[Path]:
        return [self.target]

    def write(self, frame: Frame, depth: np.ndarray, value_range: tuple[float, float] | None = None) -> None:
        seconds = self.clock.seconds(frame)
        for topic, message in self.builder.build(frame.image, depth, seconds, value_range):
            data = self.typestore.serialize_cdr(to_rosbags(message, self.typestore), message.ROS_TYPE)
            try:
                self.writer.write(self.connections[topic], message.header.stamp.nanoseconds, data)
            except OSError as exc:
                raise write_failed(self.target, exc) from None
        self.written += 1

    def close(self, success: bool = True) -> None:
        """Finish the bag and rename it into place, or (a failed run, no frame) discard it."""
        if self.closed:
            return
        self.closed = True
        if not (success and self.written):
            self.writer.abort()
            self._context.__exit__(RuntimeError, RuntimeError("run failed"), None)
            return
        try:
            self.writer.close()
        except OSError as exc:
            self.writer.abort()
            failure = write_failed(self.target, exc)
            self._context.__exit__(OutputError, failure, None)
            raise failure from None
        except BaseException as exc:
            self.writer.abort()
            self._context.__exit__(type(exc), exc, None)
            raise
        self._context.__exit__(None, None, None)
        console.info(f"rosbag2 (mcap): {self.written} frame(s), topics {', '.join(self.connections)}")
