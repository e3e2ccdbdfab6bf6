"""Where frames come from: the sample scene, an image, a folder, a video, a camera, a stream,
or a synthetic camera.

`open_source(spec)` reads the --source string by these rules, in this order, so that no file
is ever mistaken for something else:
  "gst:PIPELINE"             a GStreamer pipeline (e.g. a Jetson CSI camera, see docs/runtime.md)
  "cam:0", "cam:/dev/video0" a camera, by index or device
  "rtsp://...", "http://..." a network stream (reopened when it drops)
  "synthetic:FPS[:WxH]"      a synthetic camera: the sample scene, panning, at FPS frames a
                             second (default 30; --camera-fps when FPS is left out), WxH
                             pixels (default --camera-size, else 640x480); live like a camera,
                             with capture timestamps: latency and drops measured without hardware;
                             its frames obey the image limits (--max-megapixels) as a camera's
  an existing path           a folder (every image below it, recursively, in sorted order,
                             hidden files left out: dav2.media.scan_folder), a video file
                             (by extension), a camera device (/dev/videoN), else one image;
                             a file named "sample" or "0" is that file
  "sample"                   the scene dav2 renders itself (dav2.sample), when no such path exists
  "0", "1", ...              a camera index, when no such file exists
  "/dev/videoN"              a camera (when it does not exist: "could not open camera")
Anything else is "source not found" (with a hint when it looks like a GStreamer pipeline).

Images are decoded with cv2.imread(IMREAD_COLOR), as upstream does: grey, RGBA and 16-bit
files become 8-bit BGR, within dav2.media.ImageLimits. In a folder, a file that cannot be read
(permission, corrupt, not an image) or is past a limit is skipped with a warning; a single
image that cannot be read ends the run with one line.

Output names of a folder's frames are their paths below the folder without the extension
("sub/photo"); when two files of one folder share a stem ("x.jpg" and "x.png") both keep
their extension ("x.jpg", "x.png", saved as x.jpg.png and x.png.png) so that neither result
replaces the other. Names that would still collide are refused before anything runs.
"""

import math
import os
import stat
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.media import DEFAULT_LIMITS, IMAGE_EXTENSIONS, ImageLimits, ImageRejected, is_video, read_image, scan_folder
from dav2.sample import SAMPLE_NAME, render_sample

STREAM_TIMEOUT_MS = 5000
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://")
GSTREAMER_PREFIX = "gst:"
CAMERA_PREFIX = "cam:"
SYNTHETIC_PREFIX = "synthetic:"
SYNTHETIC_FPS = 30.0
SYNTHETIC_SIZE = (640, 480)  # width, height
SYNTHETIC_MAX_FPS = 1000.0
SYNTHETIC_SIDE = (16, 8192)  # smallest and largest width or height


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8, H x W x 3
    name: str  # output name without extension: "photo", "sub/photo", "frame_000012"
    index: int
    captured: float | None = None  # time.perf_counter() when the sensor made it, where a source knows


class Source:
    """Frames in order. Sources that hold a device or a file (captures) release it in
    `close()`; `with open_source(...) as source:` does that, and so does `pipeline.run`.
    `close()` may be called from another thread while frames are being read: it also asks
    the source to stop (a stream waiting to reconnect gives up at once)."""

    kind = "source"
    live = False  # a camera or stream: frames arrive in real time
    fps: float | None = None
    single = False  # exactly one frame (an image): --save may then name a file
    skips_bad_frames = False  # a frame past a limit is skipped with a warning (folders), not the end of the run

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def input_files(self) -> list[Path]:
        """The files this source reads, so that no output replaces one of them."""
        return []

    def frame_names(self) -> list[str]:
        """Frame names known before the run (images, folders), for checking outputs up front."""
        return []

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class SampleSource(Source):
    kind = "sample"
    single = True

    def __iter__(self) -> Iterator[Frame]:
        image, _ = render_sample()
        yield Frame(image, SAMPLE_NAME, 0)


class ImageSource(Source):
    kind = "image"
    single = True

    def __init__(self, path: Path, limits: ImageLimits = DEFAULT_LIMITS):
        self.path, self.limits = Path(path), limits

    def input_files(self) -> list[Path]:
        return [self.path]

    def frame_names(self) -> list[str]:
        return [self.path.stem]

    def __iter__(self) -> Iterator[Frame]:
        image = read_image(self.path, self.limits)
        if image is None:
            raise Dav2Error(f"cannot read {self.path} as an image (empty, corrupt or not an image)")
        yield Frame(image, self.path.stem, 0)


def frame_names(root: Path, files: list[Path]) -> list[str]:
    """Output names for a folder's files (see the module docstring): stems, unless shared."""
    stems = [path.relative_to(root).with_suffix("").as_posix() for path in files]
    shared = {stem for stem, count in Counter(stems).items() if count > 1}
    names = [path.relative_to(root).as_posix() if stem in shared else stem for stem, path in zip(stems, files)]
    clashes = [name for name, count in Counter(names).items() if count > 1]
    if clashes:
        first = [path for path, name in zip(files, names) if name == clashes[0]]
        raise Dav2Error(f"{first[0]} and {first[1]} would be saved under one name ({clashes[0]}); rename one of them")
    return names


class FolderSource(Source):
    kind = "folder"
    skips_bad_frames = True

    def __init__(self, root: Path, limits: ImageLimits = DEFAULT_LIMITS):
        self.root, self.limits = Path(root), limits
        scan = scan_folder(self.root, IMAGE_EXTENSIONS)
        self.images = scan.files
        if scan.others:
            console.warn(f"skipping {len(scan.others)} file(s) in {root} that are not images")
        if not self.images:
            raise Dav2Error(f"no images found in {root}")
        self.names = frame_names(self.root, self.images)

    def __len__(self) -> int:
        return len(self.images)

    def input_files(self) -> list[Path]:
        return list(self.images)

    def frame_names(self) -> list[str]:
        return list(self.names)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for path, name in zip(self.images, self.names):
            try:
                image = read_image(path, self.limits)
            except ImageRejected as exc:
                console.warn(f"skipping {exc}")
                continue
            if image is None:
                console.warn(f"skipping {path}: not a readable image")
                continue
            yield Frame(image, name, index)
            index += 1
        if index == 0:
            raise Dav2Error(f"none of the {len(self.images)} image files in {self.root} could be read")


class CaptureSource(Source):
    """A cv2.VideoCapture: video file, camera, GStreamer pipeline or network stream.

    Cameras take an optional size and frame rate (what the driver grants is what is used).
    A network stream that drops is reopened up to `reconnects` times, `reconnect_delay_s`
    apart; a camera that disappears, or a stream that does not come back, ends the run
    with a warning and the summary of what was processed.

    Stopping: `close()` (the pipeline calls it when Ctrl-C or SIGTERM ends a run) stops the
    reconnect loop at once. A read or open that is blocked inside FFmpeg (up to
    STREAM_TIMEOUT_MS on a stalled stream) cannot be cut short, so the capture is released by
    the reading thread when that call returns, never under its feet; the caller does not wait.
    Frames past the image limits (dav2.media.ImageLimits) end the run with one line.
    """

    def __init__(
        self,
        target: str | int,
        kind: str,
        label: str,
        api: int = cv2.CAP_ANY,
        camera_size: tuple[int, int] | None = None,
        camera_fps: float | None = None,
        reconnects: int = 5,
        reconnect_delay_s: float = 1.0,
        limits: ImageLimits = DEFAULT_LIMITS,
    ):
        self.kind = kind
        self.live = kind in ("camera", "stream")
        self.label = label
        self.target, self.api = target, api
        self.reconnects, self.reconnect_delay_s = reconnects, reconnect_delay_s
        self.limits = limits
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._busy = False  # a thread is inside a blocking capture call
        self.capture = self._open()
        if not self.capture.isOpened():
            self.capture.release()
            what = {"camera": "camera", "stream": "stream", "video": "video file"}[kind]
            raise Dav2Error(f"could not open {what} {label}")
        if kind == "camera":
            self._configure_camera(camera_size, camera_fps)
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if kind == "video" and count > 0 else None

    def _open(self) -> cv2.VideoCapture:
        if self.kind != "stream":
            return cv2.VideoCapture(self.target, self.api)
        # a stream that stops answering ends the wait after 5 s instead of FFmpeg's default 30 s
        timeouts = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            STREAM_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            STREAM_TIMEOUT_MS,
        ]
        return cv2.VideoCapture(self.target, self.api, timeouts)

    def _configure_camera(self, size: tuple[int, int] | None, fps: float | None) -> None:
        if size is not None:
            self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
            granted = (
                int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            )
            if granted != tuple(size):
                console.warn(f"camera {self.label} gives {granted[0]}x{granted[1]}, not {size[0]}x{size[1]}")
        if fps is not None:
            self.capture.set(cv2.CAP_PROP_FPS, fps)

    def __len__(self) -> int:
        return self.frame_count or 0

    def input_files(self) -> list[Path]:
        return [Path(self.target)] if self.kind == "video" else []

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while not self._stopping.is_set():
            ok, image = self._read()
            if (not ok or image is None) and self.kind == "stream" and index > 0 and self._reconnect():
                continue
            if not ok or image is None:
                break
            if index == 0:
                self.limits.check(image.shape[1], image.shape[0], f"{self.label}'s frames")
            # some cameras deliver grey or 16-bit frames; everything downstream expects BGR uint8
            captured = time.perf_counter() if self.live else None  # a live frame's time: when it arrived
            yield Frame(processing.to_bgr8(image), f"frame_{index:06d}", index, captured)
            index += 1
        if not self._stopping.is_set():
            self._report_end(index)

    def _blocking(self, call):
        """Run one blocking capture call; a close() meanwhile releases the capture afterwards."""
        with self._lock:
            if self._stopping.is_set():
                return None
            self._busy = True
        try:
            return call()
        finally:
            with self._lock:
                self._busy = False
                if self._stopping.is_set():
                    self._release()

    def _read(self) -> tuple[bool, np.ndarray | None]:
        result = self._blocking(self.capture.read)
        return result if result is not None else (False, None)

    def _reconnect(self) -> bool:
        """Reopen a dropped stream; True when frames flow again. Gives up at once when stopping."""
        for attempt in range(1, self.reconnects + 1):
            console.warn(f"stream {self.label} dropped; reconnecting ({attempt}/{self.reconnects})")
            self._blocking(self.capture.release)
            if self._stopping.wait(self.reconnect_delay_s):
                return False
            capture = self._blocking(self._open)
            if capture is None:
                return False
            self.capture = capture
            if self._stopping.is_set():
                self._release()
                return False
            if capture.isOpened():
                return True
        return False

    def _report_end(self, frames: int) -> None:
        if frames == 0:
            raise Dav2Error(f"{self.label} gave no frames")
        if self.live:
            console.warn(f"{self.kind} {self.label} stopped sending frames after {frames}; ending the run")
        elif self.frame_count and frames < self.frame_count:
            console.warn(
                f"{self.label} ended after {frames} of {self.frame_count} frames (truncated or dropped frames)"
            )

    def _release(self) -> None:
        self.capture.release()

    def close(self) -> None:
        with self._lock:
            self._stopping.set()
            if not self._busy:
                self._release()


class SyntheticCamera(Source):
    """A camera without hardware: frame k is due at start + k / fps, and is delivered then.

    Why: latency and the latest-frame policy can only be checked against a source whose
    timing is known. Each frame carries its due time (`Frame.captured`), the sample scene
    panning a few pixels a frame (so depth changes from frame to frame). Like a real sensor it
    does not wait for a slow reader: a reader more than one period late gets the newest due
    frame, and the frames it never read are counted in `missed` (a driver overwrites them too).
    `delivered` counts frames handed out. `frames` ends the stream after that many due frames
    (None: runs until closed, like a camera); `close()` ends a wait at once.
    """

    kind = "synthetic"
    live = True

    def __init__(
        self,
        fps: float = SYNTHETIC_FPS,
        size: tuple[int, int] = SYNTHETIC_SIZE,
        frames: int | None = None,
        limits: ImageLimits = DEFAULT_LIMITS,
    ):
        check_synthetic(fps, size)
        limits.check(int(size[0]), int(size[1]), "the synthetic camera's frame")  # as any camera's frames
        self.fps, self.size, self.frames = float(fps), (int(size[0]), int(size[1])), frames
        self.label = f"synthetic camera {self.size[0]}x{self.size[1]} at {self.fps:g} FPS"
        self.delivered = 0
        self.missed = 0
        self._stopping = threading.Event()
        self._scene: np.ndarray | None = None

    def image(self, index: int) -> np.ndarray:
        """The scene shifted sideways by 4 pixels a frame (np.roll: about a millisecond at 640x480)."""
        if self._scene is None:
            width, height = self.size
            self._scene = render_sample(height, width)[0]
        return np.roll(self._scene, 4 * index, axis=1)

    def __iter__(self) -> Iterator[Frame]:
        period = 1.0 / self.fps
        start = time.perf_counter()
        index = 0
        while not self._stopping.is_set() and (self.frames is None or index < self.frames):
            due = start + index * period
            wait = due - time.perf_counter()
            if wait > 0 and self._stopping.wait(wait):
                break
            newest = int((time.perf_counter() - start) / period)  # the reader may be late
            if newest > index and self.frames is not None:
                newest = min(newest, self.frames - 1)
            if newest > index:
                self.missed += newest - index
                index, due = newest, start + newest * period
            yield Frame(self.image(index), f"frame_{index:06d}", index, captured=due)
            self.delivered += 1
            index += 1

    def close(self) -> None:
        self._stopping.set()


def check_synthetic(fps: float, size: tuple[int, int]) -> None:
    """One Dav2Error line for a rate or size the synthetic camera cannot honour."""
    if not (math.isfinite(fps) and 0 < fps <= SYNTHETIC_MAX_FPS):
        raise Dav2Error(f"the synthetic camera's FPS must be more than 0 and at most {SYNTHETIC_MAX_FPS:g}, not {fps}")
    low, high = SYNTHETIC_SIDE
    if not all(low <= side <= high for side in size):
        raise Dav2Error(
            f"the synthetic camera's width and height must be from {low} to {high}, not {size[0]}x{size[1]}"
        )


def parse_synthetic(
    text: str,
    camera_size: tuple[int, int] | None,
    camera_fps: float | None,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> SyntheticCamera:
    """SyntheticCamera from the part after "synthetic:" ("30", "30:1280x720", "" for the defaults)."""
    rate, _, size_text = text.partition(":")
    try:
        fps = float(rate) if rate.strip() else (camera_fps or SYNTHETIC_FPS)
        if size_text.strip():
            width, height = (int(part) for part in size_text.lower().split("x"))
            size = (width, height)
        else:
            size = tuple(camera_size) if camera_size else SYNTHETIC_SIZE
    except ValueError:
        raise Dav2Error(
            f"--source {SYNTHETIC_PREFIX}{text}: write {SYNTHETIC_PREFIX}FPS or {SYNTHETIC_PREFIX}FPS:WIDTHxHEIGHT, "
            f"e.g. {SYNTHETIC_PREFIX}30:1280x720"
        ) from None
    return SyntheticCamera(fps, size, limits=limits)


def gstreamer_available() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


@dataclass(frozen=True)
class SourceSpec:
    """What a --source string names: kind is sample, image, folder, video, camera, stream, gstreamer or
    synthetic."""

    kind: str
    target: str | int
    label: str


def classify_source(spec: str) -> SourceSpec:
    """The kind of source a --source string names, by the rules of the module docstring."""
    if spec.startswith(GSTREAMER_PREFIX):
        return SourceSpec("gstreamer", spec[len(GSTREAMER_PREFIX) :].strip(), "GStreamer pipeline")
    if spec.startswith(SYNTHETIC_PREFIX):
        return SourceSpec("synthetic", spec[len(SYNTHETIC_PREFIX) :].strip(), "synthetic camera")
    if spec.startswith(CAMERA_PREFIX):
        device = spec[len(CAMERA_PREFIX) :].strip()
        if device.isdigit():
            return SourceSpec("camera", int(device), f"index {device}")
        if not device:
            raise Dav2Error("--source cam: needs a camera index or device, e.g. cam:0 or cam:/dev/video0")
        return SourceSpec("camera", device, device)
    if spec.lower().startswith(STREAM_PREFIXES):
        return SourceSpec("stream", spec, spec)
    path = Path(spec)
    if spec and os.path.exists(path):
        return SourceSpec(existing_path_kind(path), spec, spec)
    if spec == SAMPLE_NAME:
        return SourceSpec("sample", spec, spec)
    if spec.isdigit():
        return SourceSpec("camera", int(spec), f"index {spec}")
    if spec.startswith("/dev/video"):
        return SourceSpec("camera", spec, spec)
    hint = f"; a GStreamer pipeline is written {GSTREAMER_PREFIX}PIPELINE" if "!" in spec else ""
    raise Dav2Error(f"source not found: {spec}{hint}")


def existing_path_kind(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise Dav2Error(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISCHR(mode):
        return "camera"  # /dev/videoN
    if not stat.S_ISREG(mode):
        raise Dav2Error(f"--source {path} is not a file, folder or camera device")
    return "video" if is_video(path) else "image"


def open_source(
    spec: str,
    camera_size: tuple[int, int] | None = None,
    camera_fps: float | None = None,
    reconnects: int = 5,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Source:
    """The Source a --source string names (see the module docstring)."""
    found = classify_source(spec)
    camera = {"camera_size": camera_size, "camera_fps": camera_fps, "limits": limits}
    if found.kind == "sample":
        return SampleSource()
    if found.kind == "synthetic":
        return parse_synthetic(str(found.target), camera_size, camera_fps, limits)
    if found.kind == "folder":
        return FolderSource(Path(spec), limits)
    if found.kind == "image":
        return ImageSource(Path(spec), limits)
    if found.kind == "video":
        return CaptureSource(spec, "video", spec, limits=limits)
    if found.kind == "stream":
        return CaptureSource(spec, "stream", spec, reconnects=reconnects, limits=limits)
    if found.kind == "gstreamer":
        if not gstreamer_available():
            raise Dav2Error(
                "this OpenCV build has no GStreamer support (the pip wheels do not); on a Jetson use the "
                "system OpenCV: sudo apt install python3-opencv"
            )
        return CaptureSource(found.target, "camera", found.label, api=cv2.CAP_GSTREAMER, limits=limits)
    return CaptureSource(found.target, "camera", found.label, **camera)
