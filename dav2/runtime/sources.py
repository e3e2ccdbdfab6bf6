"""Where frames come from: the sample scene, an image, a folder, a video, a camera, a stream.

`open_source(spec)` reads the --source string the way a user means it:
  "sample"                   the scene dav2 renders itself (dav2.sample)
  "0", "/dev/video0"         a camera
  "rtsp://...", "http://..." a network stream (reopened when it drops)
  "... ! appsink"            a GStreamer pipeline (e.g. a Jetson CSI camera, see README)
  a folder                   every image below it, recursively, in sorted order, hidden
                             files left out (dav2.media.scan_folder)
  a video file               its frames in order
  anything else              one image file
Images are decoded with cv2.imread(IMREAD_COLOR), as upstream does: grey, RGBA and 16-bit
files become 8-bit BGR. Unreadable files in a folder are skipped with a warning.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.media import IMAGE_EXTENSIONS, is_video, read_image, scan_folder
from dav2.sample import SAMPLE_NAME, render_sample

STREAM_TIMEOUT_MS = 5000
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://")


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8, H x W x 3
    name: str  # output name without extension: "photo", "sub/photo", "frame_000012"
    index: int


class Source:
    """Frames in order. Sources that hold a device or a file (captures) release it in
    `close()`; `with open_source(...) as source:` does that, and so does `pipeline.run`."""

    kind = "source"
    live = False  # a camera or stream: frames arrive in real time
    fps: float | None = None
    single = False  # exactly one frame (an image): --save may then name a file

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

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

    def __init__(self, path: Path):
        self.path = path

    def __iter__(self) -> Iterator[Frame]:
        image = read_image(self.path)
        if image is None:
            raise Dav2Error(f"cannot read {self.path} as an image (empty, corrupt or not an image)")
        yield Frame(image, self.path.stem, 0)


class FolderSource(Source):
    kind = "folder"

    def __init__(self, root: Path):
        self.root = root
        scan = scan_folder(root, IMAGE_EXTENSIONS)
        self.images = scan.files
        if scan.others:
            console.warn(f"skipping {len(scan.others)} file(s) in {root} that are not images")
        if not self.images:
            raise Dav2Error(f"no images found in {root}")

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for path in self.images:
            image = read_image(path)
            if image is None:
                console.warn(f"skipping {path}: not a readable image")
                continue
            name = path.relative_to(self.root).with_suffix("").as_posix()
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
    ):
        self.kind = kind
        self.live = kind in ("camera", "stream")
        self.label = label
        self.target, self.api = target, api
        self.reconnects, self.reconnect_delay_s = reconnects, reconnect_delay_s
        self.capture = self._open()
        if not self.capture.isOpened():
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

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            ok, image = self.capture.read()
            if (not ok or image is None) and self.kind == "stream" and index > 0 and self._reconnect():
                continue
            if not ok or image is None:
                break
            # some cameras deliver grey or 16-bit frames; everything downstream expects BGR uint8
            yield Frame(processing.to_bgr8(image), f"frame_{index:06d}", index)
            index += 1
        self._report_end(index)

    def _reconnect(self) -> bool:
        """Reopen a dropped stream; True when frames flow again."""
        for attempt in range(1, self.reconnects + 1):
            console.warn(f"stream {self.label} dropped; reconnecting ({attempt}/{self.reconnects})")
            self.capture.release()
            time.sleep(self.reconnect_delay_s)
            self.capture = self._open()
            if self.capture.isOpened():
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

    def close(self) -> None:
        self.capture.release()


def gstreamer_available() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def open_source(
    spec: str,
    camera_size: tuple[int, int] | None = None,
    camera_fps: float | None = None,
    reconnects: int = 5,
) -> Source:
    """The Source a --source string names (see the module docstring)."""
    if spec == SAMPLE_NAME:
        return SampleSource()
    camera = {"camera_size": camera_size, "camera_fps": camera_fps}
    if spec.isdigit():
        return CaptureSource(int(spec), "camera", f"index {spec}", **camera)
    if spec.startswith("/dev/video"):
        return CaptureSource(spec, "camera", spec, **camera)
    if "!" in spec:
        if not gstreamer_available():
            raise Dav2Error(
                "this OpenCV build has no GStreamer support (the pip wheels do not); on a Jetson use the "
                "system OpenCV: sudo apt install python3-opencv"
            )
        return CaptureSource(spec, "camera", "GStreamer pipeline", api=cv2.CAP_GSTREAMER)
    if spec.lower().startswith(STREAM_PREFIXES):
        return CaptureSource(spec, "stream", spec, reconnects=reconnects)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if not path.exists():
        raise Dav2Error(f"source not found: {spec}")
    if is_video(path):
        return CaptureSource(str(path), "video", str(path))
    return ImageSource(path)
