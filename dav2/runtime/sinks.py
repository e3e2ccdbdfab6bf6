"""Where depth goes: image files (colour, grey, 16-bit PNG, .npy, side-by-side), a video, a window.

Every file is written under a temporary name and renamed when complete (dav2.files), so an
interrupted or failed run never leaves a half-written output. Which sinks a run opens is
decided in one place, dav2.runtime.session, for dav2-run and the web app alike.
"""

import os
import sys
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from dav2 import processing
from dav2.errors import Dav2Error
from dav2.files import atomic_path, atomic_write_bytes
from dav2.media import is_video
from dav2.runtime.sources import Frame

FORMATS = ("color", "gray", "png16", "npy", "side-by-side")
VIDEO_FORMATS = ("color", "gray", "side-by-side")
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class Sink(Protocol):
    """What the pipeline writes to: `write` each frame's depth, `close` once at the end
    (success=False: the run failed, so a half-made output is discarded)."""

    written: int

    def write(self, frame: Frame, depth: np.ndarray, value_range: tuple[float, float] | None = None) -> None: ...

    def close(self, success: bool = True) -> None: ...


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
        self.extension = ".npy" if fmt == "npy" else ".png"
        self.file = target if single and target.suffix else None
        self.folder = None if self.file else target
        if self.file is not None and self.file.suffix.lower() != self.extension:
            raise Dav2Error(f"--format {fmt} writes {self.extension} files, but --save names {self.file.name}")
        self.written = 0

    def path_for(self, frame: Frame) -> Path:
        return self.file if self.file is not None else self.folder / f"{frame.name}{self.extension}"

    def write(self, frame: Frame, depth: np.ndarray, value_range: tuple[float, float] | None = None) -> None:
        path = self.path_for(frame)
        if self.fmt == "npy":
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, depth.astype(np.float32))
        elif self.fmt == "png16":
            atomic_write_bytes(path, processing.encode_png16(depth, self.unit))
        else:
            ok, encoded = cv2.imencode(".png", render(frame, depth, self.fmt, self.cmap, value_range))
            if not ok:
                raise Dav2Error(f"could not encode {path}")
            atomic_write_bytes(path, encoded.tobytes())
        self.written += 1

    def close(self, success: bool = True) -> None:
        pass


class VideoSink:
    """A depth (or side-by-side) video; renamed into place when the run ends."""

    def __init__(self, target: Path, fmt: str, cmap: str, fps: float | None):
        if fmt not in VIDEO_FORMATS:
            raise Dav2Error(f"--format {fmt} cannot be a video; save it to a folder instead")
        self.target, self.fmt, self.cmap = target, fmt, cmap
        self.fps = fps or 30.0
        self._context = atomic_path(target)
        self.tmp = self._context.__enter__()
        self.writer = None
        self.written = 0

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
        if self.writer is not None:
            self.writer.release()
        if success and self.written:
            self._context.__exit__(None, None, None)
        else:
            self._context.__exit__(RuntimeError, RuntimeError("run failed"), None)


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

    def close(self, success: bool = True) -> None:
        pass


def open_sink(
    save: str | Path, fmt: str, cmap: str, unit: str, single: bool, fps: float | None
) -> ImageSink | VideoSink:
    """ImageSink, or VideoSink when --save names a video file."""
    if fmt not in FORMATS:
        raise Dav2Error(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    target = Path(save)
    if is_video(target):
        return VideoSink(target, fmt, cmap, fps)
    if target.exists() and not target.is_dir() and not single:
        raise Dav2Error(f"--save {target} is a file, but this source gives many frames: name a folder")
    return ImageSink(target, fmt, cmap, unit, single)
