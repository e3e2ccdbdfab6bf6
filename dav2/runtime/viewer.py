"""A live 3D view of a run with Rerun (`rerun-sdk`): the RGB frame, the coloured depth and the point cloud.

Rerun's viewer is a real 3D viewer (orbit, measure, scrub back through the frames) that runs in
its own process, so the run loop only logs and never blocks on drawing. One class, shaped like
the runtime's sinks (`write(frame, depth, value_range)`, `close(success)`, `planned_outputs`,
`written`), serves both uses:

- `--viewer`: spawn a viewer (or connect to a running one, `connect=URL`) where there is a
  display;
- `--viewer-save run.rrd`: record to a file headless (a Jetson, a server, CI); open it later
  with `rerun run.rrd`. Both may be given at once.

The recording follows the project's rule for outputs: it is written under a temporary name
beside the target and renamed into place when the run ends well; a failed or interrupted run
(close(success=False)) removes it and leaves an earlier file of that name as it was.

Entities (timeline `frame`, the frame's index):
  world                    camera frame convention: x right, y down, z forward (RDF)
  world/camera             Pinhole (intrinsics scaled to the frame)
  world/camera/image       the RGB frame
  world/camera/depth       DepthImage in metres (metric depth only)
  world/points             Points3D, coloured from the frame (metric depth only, every `stride`-th pixel)
  depth                    the depth coloured with dav2's colour map (what --format color writes)

Relative depth (disparity without a metric scale) has no 3D shape: the frame and the coloured
depth are shown, no points (`--anchors` makes the depth metric first).
"""

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.files import OutputError, check_output_file, describe_os_error, write_failed
from dav2.geometry.intrinsics import Intrinsics, default_note, intrinsics_for_frame
from dav2.geometry.pointcloud import unproject
from dav2.optional import require

APPLICATION_ID = "dav2"


def has_display() -> bool:
    """A viewer window can open here (Linux without DISPLAY/WAYLAND_DISPLAY cannot)."""
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class RerunViewer:
    """Logs every frame to Rerun: a spawned/connected viewer (`live`), an .rrd file (`save`), or both."""

    def __init__(
        self,
        metric: bool,
        intrinsics: Intrinsics | None = None,
        save: str | Path | None = None,
        live: bool = False,
        connect: str | None = None,
        stride: int = 2,
        cmap: str = "spectral",
        max_depth: float | None = None,
        recording_id: str | None = None,
    ):
        if not save and not live:
            raise Dav2Error("the 3D view needs --viewer (a window) or --viewer-save FILE.rrd (a recording)")
        if live and not connect and not has_display():
            raise Dav2Error("--viewer needs a display (DISPLAY is not set); record with --viewer-save run.rrd instead")
        self.rr = require("rerun", "the 3D view (--viewer, --viewer-save)")
        self.metric, self.intrinsics, self.stride, self.cmap, self.max_depth = (
            metric,
            intrinsics,
            stride,
            cmap,
            max_depth,
        )
        self.target = check_output_file(save) if save else None
        self.tmp: Path | None = None
        self.written = 0
        self.warned = False
        self.stream = self.rr.RecordingStream(APPLICATION_ID, recording_id=recording_id)
        self.open_sinks(live, connect)
        self.stream.log("world", self.rr.ViewCoordinates.RDF, static=True)

    def open_sinks(self, live: bool, connect: str | None) -> None:
        rr = self.rr
        sinks: list[Any] = []
        if self.target is not None:
            self.tmp = self.temporary_file(self.target)
            sinks.append(rr.FileSink(str(self.tmp)))
        if live:
            if connect is None:
                try:
                    rr.spawn(connect=False)  # starts `rerun` (the viewer) listening on its default port
                except Exception as exc:
                    self.discard()
                    raise Dav2Error(f"could not start the Rerun viewer ({type(exc).__name__}: {exc})") from None
            sinks.append(rr.GrpcSink(connect) if connect else rr.GrpcSink())
        self.stream.set_sinks(*sinks)

    @staticmethod
    def temporary_file(target: Path) -> Path:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp.rrd", dir=target.parent)
        except OSError as exc:
            raise OutputError(f"cannot write in {target.parent}: {describe_os_error(exc)}") from None
        os.close(fd)
        return Path(name)

    def planned_outputs(self, names: list[str]) -> list[Path]:
        return [self.target] if self.target else []

    def write(self, frame, depth: np.ndarray, value_range: tuple[float, float] | None = None) -> None:
        """Log one frame (`frame.image` BGR uint8, `frame.index`) and its depth at the frame's size."""
        rr, log = self.rr, self.stream.log
        height, width = depth.shape
        self.stream.set_time("frame", sequence=int(frame.index))
        log("world/camera/image", rr.Image(np.ascontiguousarray(frame.image[..., ::-1])))
        log("depth", rr.Image(np.ascontiguousarray(processing.colorize(depth, self.cmap, value_range)[..., ::-1])))
        self.written += 1
        if not self.metric:
            self.warn_once("the depth is relative (no metric scale): the 3D view shows no points; give --anchors")
            return
        intrinsics = intrinsics_for_frame(self.intrinsics, width, height)
        if intrinsics.assumed:
            self.warn_once(default_note(intrinsics))
        log("world/camera", rr.Pinhole(image_from_camera=intrinsics.matrix, resolution=[width, height]))
        log("world/camera/depth", rr.DepthImage(depth.astype(np.float32), meter=1.0))
        cloud = unproject(depth, intrinsics, frame.image, stride=self.stride, max_depth=self.max_depth)
        log("world/points", rr.Points3D(cloud.points, colors=cloud.colors))

    def warn_once(self, message: str) -> None:
        if not self.warned:
            console.warn(message)
            self.warned = True

    def close(self, success: bool = True) -> None:
        """Flush and detach; publish the recording on success, remove it otherwise."""
        try:
            self.stream.flush()
        finally:
            self.stream.disconnect()
        if self.tmp is None:
            return
        if not success:
            self.discard()
            return
        try:
            check_output_file(self.target)
            os.replace(self.tmp, self.target)
        except OSError as exc:
            self.discard()
            raise write_failed(self.target, exc) from None
        except Dav2Error:
            self.discard()
            raise
        self.tmp = None

    def discard(self) -> None:
        if self.tmp is not None and self.tmp.exists():
            self.tmp.unlink()
        self.tmp = None

    def __enter__(self) -> "RerunViewer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(success=exc_type is None)
