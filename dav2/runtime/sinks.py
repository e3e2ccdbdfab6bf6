"""Where depth goes: image files (colour, grey, 16-bit PNG, .npy, side-by-side), point clouds (.ply),
a video, a window (and the Rerun 3D view, dav2.runtime.viewer, which is shaped like a sink).

Every file is written under a temporary name and renamed when complete (dav2.files), so an
interrupted or failed run never leaves a half-written output and never replaces an earlier
file with one. A video is checked before it is renamed into place: the temporary file must
re-open with OpenCV and hold every frame written (cv2.VideoWriter reports no write errors, so
a full disk would otherwise leave a video without its index, "moov atom not found"). Write
failures (disk full, permission, read-only filesystem, a folder where a file goes) end the
run with one line; the earlier file of that name is kept.

Interrupted runs (Ctrl-C, SIGTERM): the pipeline closes the sinks with success=False, so a
video's temporary file is removed and an earlier video of that name stays as it was; image
files already complete (one per frame, each renamed into place when written) are kept.

Point clouds (--format ply) are files like the others: one .ply per image or frame (a single
image may be saved to a file, anything else to a folder), unprojected with the run's pinhole
intrinsics (dav2.geometry). They need metric depth; dav2.runtime.session refuses a relative
model without --anchors before anything runs.

ROS 2 bags (--format rosbag) are a folder written whole: dav2.ros2.bag.

Which sinks a run opens is decided in one place, dav2.runtime.session, for dav2-run and the
web app alike.
"""

import io
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.files import OutputError, atomic_path, atomic_write_bytes, check_name_length, check_output_file
from dav2.geometry.intrinsics import Intrinsics, default_note, intrinsics_for_frame
from dav2.geometry.pointcloud import unproject, write_ply
from dav2.media import is_video
from dav2.optional import require
from dav2.runtime.sources import Frame

if TYPE_CHECKING:
    from dav2.ros2.bag import RosbagSink
    from dav2.ros2.messages import RosSettings

FORMATS = ("color", "gray", "png16", "npy", "side-by-side", "ply", "rosbag")
EXTENSIONS = {"npy": ".npy", "ply": ".ply"}  # every other format writes .png
VIDEO_FORMATS = ("color", "gray", "side-by-side")
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class Sink(Protocol):
    """What the pipeline writes to: `write` each frame's depth, `close` once at the end
    (success=False: the run failed, so a half-made output is discarded)."""

    written: int

    def write(self, frame: Frame, depth: np.ndarray, value_range: tuple[float, float] | None = None) -> None: ...

    def close(self, success: bool = True) -> None: ...

    def planned_outputs(self, names: list[str]) -> list[Path]: ...


def render(frame: Frame, depth: np.ndarray, fmt: str, cmap: str, value_range: tuple[float, float] | None = None):
    """The BGR picture shown or saved for the picture formats, coloured over `value_range`
    (default: the depth's own min..max, as upstream)."""
    if fmt == "gray":
        return processing.colorize(depth, "gray", value_range)
    coloured = processing.colorize(depth, cmap, value_range)
    if fmt == "side-by-side":
        return processing.side_by_side(frame.image, coloured)
    return coloured


class ImageSink:
    """One file per frame: `target` itself for a single image with an extension, else target/<name>.<ext>."""

    def __init__(self, target: Path, fmt: str, cmap: str, unit: str, single: bool):
        self.fmt, self.cmap, self.unit = fmt, cmap, unit
        self.extension = EXTENSIONS.get(fmt, ".png")
        self.file = target if single and target.suffix else None
        self.folder = None if self.file else target
        if self.file is not None and self.file.suffix.lower() != self.extension:
            raise Dav2Error(f"--format {fmt} writes {self.extension} files, but --save names {self.file.name}")
        if self.file is not None:
            check_output_file(self.file)
        self.written = 0

    def path_for_name(self, name: str) -> Path:
        return self.file if self.file is not None else self.folder / f"{name}{self.extension}"

    def path_for(self, frame: Frame) -> Path:
        return self.path_for_name(frame.name)

    def planned_outputs(self, names: list[str]) -> list[Path]:
        return [self.path_for_name(name) for name in names]

    def write(self, frame: Frame, depth: np.ndarray, value_range: tuple[float, float] | None = None) -> None:
        path = self.path_for(frame)
        atomic_write_bytes(path, encode_picture(frame, depth, self.fmt, self.cmap, self.unit, value_range, path))
        self.written += 1

    def close(self, success: bool = True) -> None:
        pass


def encode_picture(
    frame: Frame,
    depth: np.ndarray,
    fmt: str,
    cmap: str,
    unit: str,
    value_range: tuple[float, float] | None = None,
    what: object = "the depth picture",
) -> bytes:
    """The bytes of one picture file (npy, png16, or a rendered PNG): ImageSink writes them to a
    file, dav2-batch to an object at a URI, so both hold the same bytes."""
    if fmt == "npy":
        buffer = io.BytesIO()
        np.save(buffer, depth.astype(np.float32))
        return buffer.getvalue()
    if fmt == "png16":
        return processing.encode_png16(depth, unit)
    ok, encoded = cv2.imencode(".png", render(frame, depth, fmt, cmap, value_range))
    if not ok:
        raise Dav2Error(f"could not encode {what}")
    return encoded.tobytes()


class PlySink(ImageSink):
    """One binary PLY point cloud per frame (metric depth in metres, coloured from the frame).

    The user's intrinsics are scaled to each frame (a calibration made at another resolution of
    the same aspect ratio); without them upstream's default camera is used, and said once."""

    def __init__(self, target: Path, single: bool, intrinsics: Intrinsics | None = None):
        require("plyfile", "--format ply")  # before the run, not at its first frame
        super().__init__(target, "ply", "spectral", "m", single)
        self.intrinsics = intrinsics
        self.warned = False

    def write(self, frame: Frame, depth: np.ndarray, value_range: tuple[float, float] | None = None) -> None:
        height, width = depth.shape
        camera = intrinsics_for_frame(self.intrinsics, width, height)
        if camera.assumed and not self.warned:
            console.warn(default_note(camera))
            self.warned = True
        comments = [
            f"dav2 point cloud of {frame.name}: metres, camera frame x right, y down, z forward",
            f"intrinsics {camera.describe()}",
        ]
        write_ply(self.path_for(frame), unproject(depth, camera, frame.image), comments)
        self.written += 1


class VideoSink:
    """A depth (or side-by-side) video; checked, then renamed into place when the run ends."""

    def __init__(self, target: Path, fmt: str, cmap: str, fps: float | None):
        if fmt not in VIDEO_FORMATS:
            raise Dav2Error(f"--format {fmt} cannot be a video; save it to a folder instead")
        self.target, self.fmt, self.cmap = Path(target), fmt, cmap
        self.fps = fps or 30.0
        self._context = atomic_path(self.target)
        self.tmp = self._context.__enter__()
        self.writer = None
        self.written = 0
        self.closed = False

    def planned_outputs(self, names: list[str]) -> list[Path]:
        return [self.target]

    def write(self, frame: Frame, depth: np.ndarray, value_range: tuple[float, float] | None = None) -> None:
        picture = render(frame, depth, self.fmt, self.cmap, value_range)
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*FOURCC.get(self.target.suffix.lower(), "mp4v"))
            h, w = picture.shape[:2]
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (w, h))
            if not self.writer.isOpened():
                raise Dav2Error(f"OpenCV cannot write {self.target.suffix} video here")
            self.size = (w, h)
        if (picture.shape[1], picture.shape[0]) != self.size:
            picture = cv2.resize(picture, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(picture)
        self.written += 1

    def close(self, success: bool = True) -> None:
        """Keep the video only when the run succeeded and the file holds every frame written."""
        if self.closed:
            return
        self.closed = True
        if self.writer is not None:
            self.writer.release()
        if not (success and self.written):
            self._context.__exit__(RuntimeError, RuntimeError("run failed"), None)
            return
        try:
            self.verify()
        except BaseException as exc:
            self._context.__exit__(type(exc), exc, None)  # removes the temporary file
            raise
        self._context.__exit__(None, None, None)

    def verify(self) -> None:
        """OutputError unless the temporary file re-opens with all `written` frames."""
        size = self.tmp.stat().st_size if self.tmp.exists() else 0
        readable = count_frames(self.tmp) if size else 0
        if readable >= self.written:
            return
        cause = "no space left on the device" if disk_full(self.tmp.parent) else "the write failed"
        kept = "the previous file is kept" if self.target.is_file() else "nothing was saved"
        raise OutputError(
            f"could not write {self.target}: {cause} (the video holds {readable} of {self.written} frames); {kept}"
        )


def count_frames(path: Path) -> int:
    """Frames a video file holds, as OpenCV reads it back (0 when it does not open)."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return 0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count > 0:
            return count
        count = 0
        while capture.grab():
            count += 1
        return count
    finally:
        capture.release()


def disk_full(folder: Path, margin: int = 1 << 20) -> bool:
    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False


class WindowSink:
    """An OpenCV window with the FPS overlay; q or Esc ends the run."""

    def __init__(self, fmt: str, cmap: str, title: str = "dav2"):
        # OpenCV's Qt backend aborts the whole process when it finds no display: ask first
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise Dav2Error("--show needs a display (DISPLAY is not set); use --save to write the depth instead")
        self.fmt = fmt if fmt in VIDEO_FORMATS else "side-by-side"
        self.cmap, self.title = cmap, title
        self.overlay = ""
        self.quit = False
        self.written = 0

    def write(self, frame: Frame, depth: np.ndarray, value_range: tuple[float, float] | None = None) -> None:
        picture = render(frame, depth, self.fmt, self.cmap, value_range)
        for i, line in enumerate(self.overlay.splitlines()):
            cv2.putText(picture, line, (10, 28 + 26 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
            cv2.putText(
                picture, line, (10, 28 + 26 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA
            )
        try:
            cv2.imshow(self.title, picture)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:
            raise Dav2Error("--show needs a display (and opencv-python, not the headless build)") from exc
        self.quit = key in (ord("q"), 27)
        self.written += 1

    def planned_outputs(self, names: list[str]) -> list[Path]:
        return []

    def close(self, success: bool = True) -> None:
        try:
            cv2.destroyAllWindows()
        except cv2.error:
            pass


class MemorySink:
    """Keeps the last frame, its depth and colour range in memory (the web app shows them)."""

    def __init__(self):
        self.frame: Frame | None = None
        self.depth: np.ndarray | None = None
        self.value_range: tuple[float, float] | None = None
        self.written = 0

    def write(self, frame: Frame, depth: np.ndarray, value_range: tuple[float, float] | None = None) -> None:
        self.frame, self.depth, self.value_range = frame, depth, value_range
        self.written += 1

    def planned_outputs(self, names: list[str]) -> list[Path]:
        return []

    def close(self, success: bool = True) -> None:
        pass


def open_sink(
    save: str | Path,
    fmt: str,
    cmap: str,
    unit: str,
    single: bool,
    fps: float | None,
    intrinsics: Intrinsics | None = None,
    ros: "RosSettings | None" = None,
    live: bool = False,
) -> "ImageSink | VideoSink | RosbagSink":
    """ImageSink (PlySink for point clouds), VideoSink when --save names a video file, or a
    rosbag2 folder (dav2.ros2.bag, imported only then: it needs the rosbag extra)."""
    if fmt not in FORMATS:
        raise Dav2Error(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    target = Path(save)
    check_name_length(target)  # before any lookup: a name the file system cannot hold is one line
    if is_video(target):
        return VideoSink(target, fmt, cmap, fps)
    if fmt == "rosbag":
        from dav2.ros2.bag import RosbagSink
        from dav2.ros2.messages import RosSettings

        return RosbagSink(target, unit, ros or RosSettings(), intrinsics, cmap, fps, live)
    if target.exists() and not target.is_dir():
        check_output_file(target)  # a device, fifo or socket is never written to nor replaced
        if not single:
            raise Dav2Error(f"--save {target} is a file, but this source gives many frames: name a folder")
    if fmt == "ply":
        return PlySink(target, single, intrinsics)
    return ImageSink(target, fmt, cmap, unit, single)
