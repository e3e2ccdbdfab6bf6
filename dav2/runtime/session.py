"""The run policy: how one run colours depth and where it writes it, decided once.

dav2-run, the web app and `dav2-bench --pipeline` run depth the same way, through `plan_run`, so
the choices that are not the user's to repeat live here rather than in each front end:

- the colour range: a fixed MIN,MAX when given; otherwise one picture (an image, or a folder
  of unrelated photos) is coloured over its own min..max, as upstream, and a sequence (a video,
  a camera, a stream) over a range smoothed through time, so colours do not flicker;
- the unit written into 16-bit PNGs (and ROS 2 bags): metres for metric models, disparity for
  relative ones, metres for a relative model given --anchors (AnchorScale fits each frame's
  metric scale) or an artifact calibrated by dav2-calibrate (StoredCalibration applies the scale
  in its sidecar, said once; --anchors replace it for the run);
- whether 3D is possible: a point cloud (--format ply) needs metric depth, so a relative model
  without --anchors or a stored calibration is refused here, before a frame is read
  (dav2.geometry.require_metric); a ROS 2 bag of relative depth holds no points;
- the input size: at least one patch (14), at most processing.MAX_INPUT_SIZE and within the
  token limit (--max-tokens); ignored, with a warning, by a static artifact;
- the limits on images (dav2.media.ImageLimits: --max-megapixels, --max-aspect) and on the
  network input (--max-tokens, checked per frame by the pipeline);
- the sinks: the --save target (an image file, a folder or a video), any further files, and
  the window; no output may replace one of the source's own files (--save equal to --source,
  a folder saved into itself with outputs named like its inputs), checked before the run;
  the Rerun 3D view (--viewer, --viewer-save) is one more sink, and so is the live view of a
  headless run (--serve: a Foxglove WebSocket server, dav2.runtime.live), which gets the
  run's metric decision (points only for metres) and intrinsics like the ROS 2 bag; a run
  with --serve and no --save is valid (it keeps nothing).

`plan_run(backend, source, options)` returns a `RunPlan` with the sinks opened; pass it whole
to `dav2.runtime.pipeline.run(source, backend, plan)`, which closes them. Stretching frames
to a static artifact's shape is warned about once per run by the pipeline itself
(`StretchWarning`), since only it sees the frames.

dav2-batch does not plan a run: it has no Source and writes through its own Ray stages. It takes
from here what applies to a corpus of photos, the input size (`input_size_for`, checked by
`check_input_size`), and makes its tensors with the same Feeder (dav2.runtime.feed) at the
preprocessing a folder gets here; its unit is vocabulary.output_unit, as here without --anchors.
"""

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.geometry.anchors import Anchor, AnchorFit, fit_anchors
from dav2.geometry.intrinsics import Intrinsics
from dav2.geometry.pointcloud import require_metric
from dav2.media import DEFAULT_LIMITS, ImageLimits
from dav2.metadata import MetricCalibration
from dav2.ros2.messages import RosSettings
from dav2.runtime.backends.base import Backend
from dav2.runtime.live import LiveSettings, LiveView
from dav2.runtime.sinks import FORMATS, Sink, WindowSink, open_sink
from dav2.runtime.sources import Source
from dav2.runtime.stabilize import Stabilizer
from dav2.runtime.viewer import RerunViewer
from dav2.vocabulary import PATCH_SIZE, ModelKind, output_unit

SEQUENCE_SMOOTHING = 0.9  # weight of the past in a sequence's colour range (see processing.ColorRange)
PREPROCESS_CHOICES = ("auto", "exact", "float32")
STRETCH_TOLERANCE = 0.01  # aspect-ratio change below which stretching to a static input is not worth a word


@dataclass(frozen=True)
class SaveTarget:
    """One more output of the same run: a file (one image) or a folder, in one format."""

    path: str | Path
    fmt: str = "color"


@dataclass(frozen=True)
class RunOptions:
    """The user's choices for a run (dav2-run's options; the web app fills them in too).

    Checked when made, so a wrong choice fails before a model is loaded.
    """

    save: str | Path | None = None  # --save: an image file, a folder or a video file
    fmt: str = "color"  # --format of --save, and what the window shows
    cmap: str = "spectral"
    show: bool = False  # a window with the live FPS overlay
    input_size: int | None = None  # short side for dynamic artifacts; None: the artifact's own
    color_range: tuple[float, float] | None = None  # --range MIN,MAX; None: automatic
    also_save: tuple[SaveTarget, ...] = ()  # further outputs (the web app writes four formats at once)
    limits: ImageLimits = DEFAULT_LIMITS  # --max-megapixels, --max-aspect
    max_tokens: int = processing.DEFAULT_MAX_TOKENS  # --max-tokens
    stabilize: bool = False  # --stabilize: align relative depth through time (runtime.stabilize)
    preprocess: str = "auto"  # --preprocess: auto (exact for stills, float32 for sequences), exact, float32
    intrinsics: Intrinsics | None = None  # --intrinsics, parsed; None: upstream's default camera (said once)
    anchors: tuple[Anchor, ...] = ()  # --anchors: u,v,metres that fix each frame's metric scale
    viewer: bool = False  # --viewer: a live Rerun 3D view (needs a display)
    viewer_save: str | Path | None = None  # --viewer-save: record the 3D view to an .rrd file
    ros: RosSettings = RosSettings()  # --format rosbag: frame id, topic prefix, cloud stride, colour
    serve: LiveSettings | None = None  # --serve: the live view's address, rate, JPEG quality, cloud stride

    def __post_init__(self) -> None:
        if self.preprocess not in PREPROCESS_CHOICES:
            raise Dav2Error(f"unknown --preprocess {self.preprocess!r}; choose one of {', '.join(PREPROCESS_CHOICES)}")
        for fmt in (self.fmt, *(target.fmt for target in self.also_save)):
            if fmt not in FORMATS:
                raise Dav2Error(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
        if self.cmap not in processing.COLORMAPS:
            raise Dav2Error(f"unknown colour map {self.cmap!r}; choose one of {', '.join(processing.COLORMAPS)}")
        if self.input_size is not None:
            check_input_size(self.input_size, self.max_tokens)
        if self.color_range is not None:
            if not all(math.isfinite(value) for value in self.color_range):
                raise Dav2Error("--range needs two finite numbers MIN,MAX")
            if not self.color_range[0] < self.color_range[1]:
                raise Dav2Error("--range needs MIN < MAX")

    def saves(self) -> list[SaveTarget]:
        first = [SaveTarget(self.save, self.fmt)] if self.save is not None else []
        return first + list(self.also_save)

    @property
    def wants_3d(self) -> bool:
        """A point cloud file, a ROS 2 bag (CameraInfo), the 3D view or the live view (its cloud and
        calibration): what --intrinsics is for."""
        views = self.viewer or self.viewer_save is not None or self.serve is not None
        return views or any(t.fmt in ("ply", "rosbag") for t in self.saves())


def check_input_size(input_size: int, max_tokens: int) -> None:
    """--input-size: at least one patch, at most MAX_INPUT_SIZE, and a square input within the token limit."""
    if input_size < PATCH_SIZE:
        raise Dav2Error(f"--input-size must be at least {PATCH_SIZE}")
    if input_size > processing.MAX_INPUT_SIZE:
        raise Dav2Error(f"--input-size must be at most {processing.MAX_INPUT_SIZE}")
    side = processing.round_to_multiple(input_size)
    if processing.tokens((side, side)) > max_tokens:
        raise Dav2Error(
            f"--input-size {input_size} needs at least {processing.tokens((side, side)):,} patch tokens, over the "
            f"limit of {max_tokens:,} (raise it with --max-tokens)"
        )


class AnchorScale:
    """Turns each frame's depth into metres from the user's anchors (`--anchors`), as a depth
    transform of the pipeline (after postprocessing, at the frame's resolution, where the
    anchors' pixel coordinates live; before the colour range and the sinks).

    Fitted per frame, because a relative model's scale and shift change from frame to frame;
    the first fit is reported (its residual says whether to trust the metres), later ones are
    kept in `last` for --json. The first fit that misses its anchors by more than
    anchors.WARN_MEDIAN_REL is warned about once (a run of many frames does not repeat it)."""

    def __init__(self, anchors: tuple[Anchor, ...] | list[Anchor], kind: str):
        self.anchors, self.kind = list(anchors), ModelKind(kind)
        self.last: AnchorFit | None = None
        self.fits = 0
        self.warned = False

    def __call__(self, depth: np.ndarray) -> np.ndarray:
        fit = fit_anchors(depth, self.anchors, self.kind)
        if self.last is None:
            console.info(fit.describe())
        warning = fit.warning()
        if warning is not None and not self.warned:
            console.warn(warning)
            self.warned = True
        self.last, self.fits = fit, self.fits + 1
        return fit.apply(depth)

    def summary(self) -> dict | None:
        """The last fit as JSON-able numbers (None before the first frame)."""
        fit = self.last
        if fit is None:
            return None
        return {
            "scale": fit.scale,
            "shift": fit.shift,
            "anchors": fit.anchors,
            "inliers": fit.inliers,
            "rms_m": fit.rms_m,
            "median_rel": fit.median_rel,
        }


class StoredCalibration:
    """The metric scale dav2-calibrate stored in the artifact's sidecar, as a depth transform:
    a calibrated artifact gives metres in every command without flags (--anchors, given,
    replace it for that run)."""

    def __init__(self, record: MetricCalibration, kind: str, artifact: str):
        self.record, self.artifact = record, artifact
        self.fit = AnchorFit(
            ModelKind(kind),
            record.scale,
            record.shift,
            record.points,
            record.inliers,
            record.residual_rms_m,
            record.residual_median_rel,
        )

    def __call__(self, depth: np.ndarray) -> np.ndarray:
        return self.fit.apply(depth)

    def describe(self) -> str:
        record = self.record
        heldout = "" if record.heldout_abs_rel is None else f", held-out AbsRel {record.heldout_abs_rel:.3g}"
        return (
            f"metres from the calibration stored in {self.artifact} ({record.method}: {record.points} points "
            f"on {record.frames} image(s), residual {record.residual_rms_m:.3g} m RMS{heldout})"
        )


def stored_calibration(backend: Backend) -> StoredCalibration | None:
    """The artifact's stored metric calibration (dav2-calibrate), if its sidecar has one."""
    metadata = getattr(backend, "metadata", None)
    record = getattr(metadata, "metric_calibration", None)
    if record is None:
        return None
    return StoredCalibration(record, backend.kind, Path(str(getattr(backend, "path", "the artifact"))).name)


@dataclass
class RunPlan:
    """Everything `pipeline.run` needs besides the source and the backend; the sinks are open.

    One record so that every front end (dav2-run, the web app, dav2-bench --pipeline) passes
    the same choices: none of them unpacks it, so none can drop a part (the web app once ran
    videos with "exact" preprocessing while dav2-run used "float32")."""

    sinks: list[Sink]
    color_range: processing.ColorRange
    unit: str  # "m" or "disparity"
    input_size: int  # the short side fed to a dynamic artifact (a static one ignores it)
    max_tokens: int = processing.DEFAULT_MAX_TOKENS  # the pipeline refuses larger network inputs
    stabilizer: Stabilizer | None = None  # --stabilize
    preprocessing: str = "exact"  # "exact" or "float32" (dav2.runtime.feed); uint8 artifacts ignore it
    warnings: list[str] = field(default_factory=list)  # already printed; kept for callers that show them
    anchors: AnchorScale | None = None  # --anchors: the metric scale fitted per frame
    calibration: StoredCalibration | None = None  # the artifact's stored scale (dav2-calibrate)

    @classmethod
    def for_sinks(cls, backend: Backend, sinks: list[Sink], **choices) -> "RunPlan":
        """A plan for library callers that bring their own sinks: the backend's unit and input
        size, one colour range per frame, and `choices` (any other RunPlan field) as given."""
        choices.setdefault("color_range", processing.ColorRange())
        choices.setdefault("unit", output_unit(backend.kind))
        choices.setdefault("input_size", backend.default_input_size)
        return cls(sinks=list(sinks), **choices)

    def with_sinks(self, *extra: Sink) -> "RunPlan":
        """The same plan writing to `extra` too (the web app's in-memory copy for the page)."""
        return dataclasses.replace(self, sinks=[*self.sinks, *extra])

    def depth_transforms(self) -> list[Callable[[np.ndarray], np.ndarray]]:
        """pipeline.run's `transforms`, in order: what turns the model's depth into the run's unit."""
        if self.anchors is not None:
            return [self.anchors]
        return [self.calibration] if self.calibration is not None else []

    def close(self, success: bool = False) -> None:
        """Close the sinks when the run never starts (pipeline.run closes them otherwise)."""
        for sink in self.sinks:
            sink.close(success)


def plan_run(backend: Backend, source: Source, options: RunOptions) -> RunPlan:
    """The colour range, unit, input size and opened sinks for running `backend` on `source`.

    Raises Dav2Error for choices that cannot work together (a video format for a folder, a
    file for many frames, a window without a display); sinks opened before such an error are
    closed again, so nothing is left half-written.
    """
    anchors = AnchorScale(options.anchors, backend.kind) if options.anchors else None
    calibration = announced_calibration(backend, anchors is not None)
    scale_known = anchors is not None or calibration is not None
    if any(target.fmt == "ply" for target in options.saves()):
        require_metric(backend.kind, scale_known=scale_known)  # before any frame is read
    unit = "m" if scale_known else output_unit(backend.kind)
    warnings = input_size_warnings(backend, options) + intrinsics_warnings(options)
    for message in warnings:
        console.warn(message)
    return RunPlan(
        sinks=open_sinks(options, unit, source),
        color_range=processing.ColorRange(options.color_range, smoothing=color_smoothing(source)),
        unit=unit,
        input_size=input_size_for(backend, options.input_size),
        max_tokens=options.max_tokens,
        preprocessing=preprocessing(options, source),
        stabilizer=Stabilizer(backend.kind) if options.stabilize else None,
        warnings=warnings,
        anchors=anchors,
        calibration=calibration,
    )


def input_size_for(backend: Backend, requested: int | None) -> int:
    """The short side fed to a dynamic artifact: the user's --input-size, else the artifact's own
    (a static artifact ignores it; input_size_warnings says so)."""
    return requested or backend.default_input_size


def announced_calibration(backend: Backend, anchored: bool) -> StoredCalibration | None:
    """The stored calibration this run applies, said once; --anchors replace it (said too)."""
    calibration = stored_calibration(backend)
    if calibration is None:
        return None
    if anchored:
        console.warn(f"--anchors replace the calibration stored in {calibration.artifact} for this run")
        return None
    console.info(calibration.describe())
    return calibration


def intrinsics_warnings(options: RunOptions) -> list[str]:
    if options.intrinsics is None or options.wants_3d:
        return []
    return [
        "--intrinsics is used by --format ply and rosbag, the 3D view (--viewer, --viewer-save) and the live "
        "view (--serve) only; ignored"
    ]


def preprocessing(options: RunOptions, source: Source) -> str:
    """Stills keep upstream's exact float64 input (a photo's depth equals infer_image's);
    sequences (videos, cameras, streams) take the float32 path, within the conformance
    tolerances and 4x faster, because there the host's time per frame is the frame rate."""
    if options.preprocess != "auto":
        return options.preprocess
    return "exact" if source.single or source.kind == "folder" else "float32"


def input_size_warnings(backend: Backend, options: RunOptions) -> list[str]:
    if options.input_size is None or backend.fixed_hw is None:
        return []
    height, width = backend.fixed_hw
    return [
        f"--input-size is ignored: {artifact_name(backend)} has a fixed input of {height}x{width} "
        "(images are stretched to it)"
    ]


def color_smoothing(source: Source) -> float:
    """0 for one picture or a folder of unrelated photos (each its own range, as upstream);
    SEQUENCE_SMOOTHING for frames of one scene through time."""
    return 0.0 if source.single or source.kind == "folder" else SEQUENCE_SMOOTHING


def open_sinks(options: RunOptions, unit: str, source: Source) -> list[Sink]:
    """Every output the options name, opened in order; all closed again if one fails."""
    sinks: list[Sink] = []
    try:
        for target in options.saves():
            sinks.append(
                open_sink(
                    target.path,
                    target.fmt,
                    options.cmap,
                    unit,
                    source.single,
                    source.fps,
                    options.intrinsics,
                    ros=options.ros,
                    live=source.live,
                )
            )
        if options.show:
            sinks.append(WindowSink(options.fmt, options.cmap))
        if options.viewer or options.viewer_save is not None:
            sinks.append(open_viewer(options, unit))
        if options.serve is not None:
            sinks.append(LiveView(options.serve, unit, options.intrinsics, options.cmap))
        check_inputs_kept(sinks, source)
    except BaseException:
        for sink in sinks:
            sink.close(False)
        raise
    return sinks


def open_viewer(options: RunOptions, unit: str) -> Sink:
    """The Rerun 3D view: points only for metric depth (a relative model's 3D shape is unknown).
    rerun-sdk itself is imported by the viewer, so a missing one is one line naming the extra."""
    return RerunViewer(
        metric=unit == "m",
        intrinsics=options.intrinsics,
        save=options.viewer_save,
        live=options.viewer,
        cmap=options.cmap,
    )


def check_inputs_kept(sinks: list[Sink], source: Source) -> None:
    """Refuse a run whose outputs would replace a file the source reads (symbolic and hard
    links included: files are compared by device and inode)."""
    inputs = {}
    for path in source.input_files():
        try:
            info = os.stat(path)
        except OSError:
            continue
        inputs[(info.st_dev, info.st_ino)] = path
    if not inputs:
        return
    names = source.frame_names()
    for sink in sinks:
        for output in sink.planned_outputs(names):
            try:
                info = os.stat(output)
            except OSError:
                continue
            original = inputs.get((info.st_dev, info.st_ino))
            if original is not None:
                raise Dav2Error(f"--save would overwrite the input {original}; save somewhere else")


def artifact_name(backend: Backend) -> str:
    path = getattr(backend, "path", None)
    return Path(path).name if path is not None else "the model"


class StretchWarning:
    """Says once per run that a static artifact stretches frames out of their shape.

    A static artifact takes one H x W; preprocessing stretches every frame to it, which
    distorts frames of another aspect ratio (and the depth with them). One warning per run,
    at the first such frame, names the artifact, its size and the frames' size.
    """

    def __init__(
        self, name: str, fixed_hw: tuple[int, int], tolerance: float = STRETCH_TOLERANCE, fixed_only: bool = False
    ):
        self.name, self.fixed_hw, self.tolerance = name, fixed_hw, tolerance
        self.fixed_only = fixed_only  # its format has no dynamic export (LiteRT, ExecuTorch)
        self.warned = False

    @classmethod
    def for_backend(cls, backend: Backend) -> "StretchWarning | None":
        """None for a dynamic artifact: it keeps every frame's shape."""
        if backend.fixed_hw is None:
            return None
        fixed_only = bool(getattr(backend, "fixed_size_only", False))
        return cls(artifact_name(backend), tuple(backend.fixed_hw), fixed_only=fixed_only)

    def check(self, image_hw: tuple[int, int]) -> None:
        if self.warned or processing.aspect_change(image_hw, self.fixed_hw) <= self.tolerance:
            return
        self.warned = True
        (fh, fw), (h, w) = self.fixed_hw, image_hw
        console.warn(
            f"{self.name} has a fixed {fh}x{fw} input: {h}x{w} images are stretched to it; {self.advice(image_hw)}"
        )

    def advice(self, image_hw: tuple[int, int]) -> str:
        """What to export instead: a dynamic model where the format has one, else a fixed size
        of the frames' shape (LiteRT and ExecuTorch artifacts are fixed-size only)."""
        if not self.fixed_only:
            return "export without --height/--width (or --static) for a dynamic model"
        height, width = frames_shape_size(self.fixed_hw, image_hw)
        return (
            f"this format is fixed-size only: export it again at the frames' shape "
            f"(dav2-export ... --height {height} --width {width})"
        )


def frames_shape_size(fixed_hw: tuple[int, int], image_hw: tuple[int, int]) -> tuple[int, int]:
    """(H, W) in multiples of 14 with the frames' aspect ratio and the artifact's short side."""
    short = min(fixed_hw)
    h, w = image_hw
    scale = short / min(h, w)
    return processing.round_to_multiple(h * scale), processing.round_to_multiple(w * scale)
