"""dav2-run: run an artifact on images, folders, videos, cameras or streams, with per-stage FPS.

The options come in groups (common.OptionGroup), each parsed into one record before anything
opens: the artifact and how to open it (`BackendChoice`), the source (`SourceChoice`), the
outputs, processing, limits and 3D view (`dav2.runtime.session.RunOptions`); `RunRequest`
holds them all. The command then opens the two, plans the run, runs it and prints its report.
"""

import json
from dataclasses import dataclass

import click

from dav2 import console
from dav2.cli.common import (
    CONTEXT,
    INPUT_SIZE_OPTION,
    LIMIT_OPTIONS,
    MAX_THREADS,
    MODEL_OPTION,
    THREADS_OPTION,
    InputLimits,
    OptionGroup,
    check_number,
    default_of,
    parse_pair,
    user_errors,
)
from dav2.cli.ros2 import ROS_OPTIONS
from dav2.errors import Dav2Error
from dav2.media import ImageLimits
from dav2.processing import COLORMAPS
from dav2.ros2.messages import MAX_CLOUD_STRIDE
from dav2.runtime.backends import BACKENDS, open_backend
from dav2.runtime.backends.base import Backend
from dav2.runtime.fps import LiveSnapshot, RunSummary, format_summary
from dav2.runtime.live import (
    DEFAULT_MAX_HZ,
    DEFAULT_PORT,
    DEFAULT_QUALITY,
    DEFAULT_STRIDE,
    MAX_HZ,
    MIN_HZ,
    LiveSettings,
)
from dav2.runtime.session import PREPROCESS_CHOICES, RunOptions, RunPlan
from dav2.runtime.sinks import FORMATS
from dav2.runtime.sources import Source, open_source
from dav2.vocabulary import ModelKind

MAX_CAMERA_SIDE = 16384  # pixels; past any camera's sensor
MAX_CAMERA_FPS = 1000
MAX_RECONNECTS = 1000
MAX_DEPTH = 1e6  # metres: --max-depth of a metric .pth


@dataclass(frozen=True)
class BackendChoice:
    """--model and how to open it: --backend, --kind, --max-depth, --device, --threads."""

    model: str
    backend: str = default_of(open_backend, "backend")
    kind: str = default_of(open_backend, "kind")
    max_depth: float | None = None
    device: str = default_of(open_backend, "device")
    threads: int = default_of(open_backend, "threads")

    def __post_init__(self) -> None:
        check_number(self.threads, "--threads", 0, MAX_THREADS)
        check_number(self.max_depth, "--max-depth", 0, MAX_DEPTH, low_open=True)

    def open(self) -> Backend:
        return open_backend(
            self.model, self.backend, threads=self.threads, kind=self.kind, max_depth=self.max_depth, device=self.device
        )


@dataclass(frozen=True)
class SourceChoice:
    """--source and how to capture it: --camera-size, --camera-fps, --reconnects."""

    source: str
    camera_size: tuple[int, int] | None = None
    camera_fps: float | None = None
    reconnects: int = default_of(open_source, "reconnects")

    @classmethod
    def parse(cls, source: str, camera_size: str | None, camera_fps: float | None, reconnects: int) -> "SourceChoice":
        camera = parse_pair(camera_size, "x", int, "--camera-size")
        for side in camera or ():
            check_number(side, "--camera-size (each side)", 1, MAX_CAMERA_SIDE)
        check_number(camera_fps, "--camera-fps", 0, MAX_CAMERA_FPS, low_open=True)
        check_number(reconnects, "--reconnects", 0, MAX_RECONNECTS)
        return cls(source, camera, camera_fps, reconnects)

    def open(self, limits: ImageLimits) -> Source:
        return open_source(
            self.source,
            camera_size=self.camera_size,
            camera_fps=self.camera_fps,
            reconnects=self.reconnects,
            limits=limits,
        )


def parse_run_options(
    limits: InputLimits, color_range: str | None, intrinsics: str | None, anchors: str | None, **choices
) -> RunOptions:
    """RunOptions (checked when made); the files --intrinsics and --anchors name are read here,
    so a bad one fails before a model is loaded."""
    from dav2.geometry import parse_intrinsics, read_anchors

    ros = ROS_OPTIONS.parse(choices)
    serve = SERVE_OPTIONS.parse(choices)
    return RunOptions(
        ros=ros,
        serve=serve,
        color_range=parse_pair(color_range, ",", float, "--range"),
        limits=limits.images,
        max_tokens=limits.max_tokens,
        intrinsics=parse_intrinsics(intrinsics) if intrinsics is not None else None,
        anchors=tuple(read_anchors(anchors)) if anchors is not None else (),
        **choices,
    )


BACKEND_OPTIONS = OptionGroup(
    MODEL_OPTION,
    click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        default=BackendChoice.backend,
        help="auto picks from the model's extension.",
    ),
    click.option(
        "--kind",
        type=click.Choice(ModelKind.values()),
        default=BackendChoice.kind,
        help="Only for .pth models (artifacts record it).",
    ),
    click.option("--max-depth", type=float, default=None, help="Only for metric .pth models."),
    click.option("--device", default=BackendChoice.device, help="torch: cpu or cuda; openvino: CPU, GPU, NPU or AUTO."),
    THREADS_OPTION,
    parser=BackendChoice,
)
SOURCE_OPTIONS = OptionGroup(
    click.option(
        "--source",
        default="sample",
        help="An existing image, folder or video file (an existing path is always a file or folder); "
        "cam:0 or cam:/dev/video0 for a camera (plain 0 or /dev/video0 when no such file exists); "
        "rtsp:// or http:// URL; gst:PIPELINE for a GStreamer pipeline; "
        "synthetic:FPS[:WxH] for a synthetic camera (the sample scene, panning, live at FPS frames a second: "
        "latency and drops measured without hardware); "
        "'sample' for the built-in scene (when no such file exists).",
    ),
    click.option("--camera-size", default=None, help="Camera capture size WIDTHxHEIGHT, e.g. 1280x720."),
    click.option("--camera-fps", type=float, default=None, help="Camera capture frame rate."),
    click.option(
        "--reconnects",
        type=int,
        default=SourceChoice.reconnects,
        help="Times a dropped rtsp/http stream is reopened (1 s apart).",
    ),
    parser=SourceChoice.parse,
)
OUTPUT_OPTIONS = OptionGroup(
    click.option(
        "--save", default=None, type=click.Path(), help="Output file (single image or .mp4/.avi video) or folder."
    ),
    click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=RunOptions.fmt,
        help="color/gray/side-by-side pictures, 16-bit PNG with its scale, raw float32 .npy, or ply: a binary point "
        "cloud (metres, coloured) per image or frame, from a metric model or --anchors, with --intrinsics; a single "
        "image may be saved to a .ply file, folders, videos and cameras to a folder (one .ply per frame). "
        "rosbag: a ROS 2 bag folder (metadata.yaml + .mcap; pip install 'dav2[rosbag]') with depth (32FC1), "
        "camera_info and, for metric depth, PointCloud2 per frame (--ros-* options).",
    ),
    click.option(
        "--cmap",
        type=click.Choice(COLORMAPS),
        default=RunOptions.cmap,
        help="Colour map for color and side-by-side (spectral is upstream's Spectral_r).",
    ),
    click.option("--show", is_flag=True, help="Show depth in a window with a live FPS overlay (q or Esc quits)."),
    click.option(
        "--range",
        "color_range",
        default=None,
        help="Fixed depth range MIN,MAX for colouring. "
        "[default: each image's own; smoothed over time for videos and cameras]",
    ),
)
PROCESSING_OPTIONS = OptionGroup(
    INPUT_SIZE_OPTION,
    click.option(
        "--stabilize",
        is_flag=True,
        help="Videos and cameras: align each frame's relative depth to a running reference (least-squares scale "
        "and shift on a robust pixel subset, smoothed), so depth does not flicker; metric models keep their metres.",
    ),
    click.option(
        "--preprocess",
        type=click.Choice(PREPROCESS_CHOICES),
        default=RunOptions.preprocess,
        help="exact: float64, bit-equal with upstream's input tensor; float32: about 4x faster, within the "
        "conformance tolerances; auto: exact for images and folders, float32 for videos, cameras and streams. "
        "Models exported with --input uint8 preprocess in the graph.",
    ),
)
VIEW_3D_OPTIONS = OptionGroup(
    click.option(
        "--intrinsics",
        default=None,
        help="Camera for --format ply and the 3D view: fx,fy,cx,cy[,width,height] in pixels, or an OpenCV / ROS "
        "CameraInfo calibration YAML; scaled to the frame when made at another resolution. "
        "[default: upstream's 470.4 px focal length, principal point at the centre (said once)]",
    ),
    click.option(
        "--anchors",
        default=None,
        help="CSV of u,v,metres: a few measured distances (tape measure, LiDAR) at pixels of the input image; "
        "each frame's depth is fitted to them (scale and shift of a relative model's disparity, a scale "
        "correction of a metric one) and written in metres. The fit's residual is printed.",
    ),
    click.option(
        "--viewer",
        is_flag=True,
        help="Stream the frame, the coloured depth and the point cloud to a Rerun 3D viewer (needs a display and "
        "pip install 'dav2[viewer]'); points for metric depth (or --anchors) only.",
    ),
    click.option(
        "--viewer-save",
        default=None,
        type=click.Path(dir_okay=False),
        help="Record the 3D view to this .rrd file (no display needed; open it later with `rerun FILE`).",
    ),
)


def parse_live_settings(
    serve: str | None, serve_hz: float, serve_quality: int, serve_stride: int
) -> LiveSettings | None:
    """--serve [HOST:]PORT and its limits as one checked LiveSettings; None without --serve (the
    other --serve-* options then change nothing, and a changed one says so)."""
    if serve is None:
        given = [
            name
            for name, value, default in (
                ("--serve-hz", serve_hz, DEFAULT_MAX_HZ),
                ("--serve-quality", serve_quality, DEFAULT_QUALITY),
                ("--serve-stride", serve_stride, DEFAULT_STRIDE),
            )
            if value != default
        ]
        if given:
            console.warn(f"{', '.join(given)} without --serve: ignored")
        return None
    return LiveSettings.parse(serve, serve_hz, serve_quality, serve_stride)


SERVE_OPTIONS = OptionGroup(
    click.option(
        "--serve",
        is_flag=False,
        flag_value=str(DEFAULT_PORT),
        default=None,
        metavar="[HOST:]PORT",
        help="Live view for a headless machine: a Foxglove WebSocket server (pip install 'dav2[live]') streaming "
        "the frame, the coloured depth, the point cloud (metric depth), the camera and the FPS/latency numbers; "
        "open Foxglove on another machine and connect to ws://HOST:PORT (docs/live.md). Alone: "
        f"127.0.0.1:{DEFAULT_PORT} (reach it through an SSH tunnel); 0.0.0.0:PORT listens on every network "
        "(no authentication); port 0 picks a free one. Needs no --save.",
    ),
    click.option(
        "--serve-hz",
        type=click.FloatRange(MIN_HZ, MAX_HZ),
        default=DEFAULT_MAX_HZ,
        help="--serve: at most this many frames a second are sent (the newest; the others are skipped).",
    ),
    click.option(
        "--serve-quality",
        type=click.IntRange(1, 100),
        default=DEFAULT_QUALITY,
        help="--serve: JPEG quality of the frame and the coloured depth.",
    ),
    click.option(
        "--serve-stride",
        type=click.IntRange(1, MAX_CLOUD_STRIDE),
        default=DEFAULT_STRIDE,
        help="--serve: one point every N pixels in each direction (N² fewer points, N² less bandwidth).",
    ),
    parser=parse_live_settings,
)
RUN_OPTIONS = OptionGroup(
    OUTPUT_OPTIONS, PROCESSING_OPTIONS, VIEW_3D_OPTIONS, ROS_OPTIONS, SERVE_OPTIONS, parser=parse_run_options
)
MAX_FRAMES_OPTION = click.option(
    "--max-frames",
    type=int,
    default=None,
    help="Stop after this many frames are processed and written (cameras and streams keep capturing, "
    "dropping stale frames, until then).",
)
RUN_JSON_OPTION = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print live numbers as one JSON line per second, and the final summary as the last line.",
)


@dataclass(frozen=True)
class RunRequest:
    """Everything dav2-run was asked, parsed and checked before a model or a source opens."""

    backend: BackendChoice
    source: SourceChoice
    options: RunOptions
    max_frames: int | None = None
    as_json: bool = False

    @classmethod
    def parse(cls, values: dict) -> "RunRequest":
        """From the command's keyword arguments, group by group (each takes its own values)."""
        limits = LIMIT_OPTIONS.parse(values)
        return cls(
            backend=BACKEND_OPTIONS.parse(values),
            source=SOURCE_OPTIONS.parse(values),
            options=RUN_OPTIONS.parse(values, limits=limits),
            max_frames=check_number(values.pop("max_frames"), "--max-frames", 1),
            as_json=values.pop("as_json"),
        )

    @property
    def keeps_nothing(self) -> bool:
        """No file, window, JSON, 3D view or live view: the depth is computed and timed only."""
        options = self.options
        views = options.viewer or options.viewer_save or options.serve is not None
        return options.save is None and not (options.show or self.as_json or views)


@dataclass(frozen=True)
class RunReport:
    """What a finished run reports: its numbers and what ran (the --json record's extra keys)."""

    summary: RunSummary
    model: str
    backend: str
    source: str
    input_size: int
    anchors: dict | None = None  # the last --anchors fit (session.AnchorScale.summary)
    unit: str | None = None  # given with --anchors only: the depth's unit, "m"

    def as_dict(self) -> dict:
        record = {
            **self.summary.as_dict(),
            "model": self.model,
            "backend": self.backend,
            "source": self.source,
            "input_size": self.input_size,
        }
        if self.unit is not None:
            record.update({"anchors": self.anchors, "unit": self.unit})
        return record


@click.command(context_settings=CONTEXT)
@BACKEND_OPTIONS
@SOURCE_OPTIONS
@RUN_OPTIONS
@MAX_FRAMES_OPTION
@LIMIT_OPTIONS
@RUN_JSON_OPTION
@user_errors
def run_main(**values):
    """Run a depth model on images, folders, videos, cameras or streams, with per-stage FPS.

    \b
    Examples:
      dav2-run --model models/depth_anything_v2_vits_dynamic.onnx --save depth.png
      dav2-run --model m.onnx --source photos/ --save out/ --format png16
      dav2-run --model m.onnx --source clip.mp4 --save depth.mp4 --format side-by-side
      dav2-run --model m.onnx --source 0 --show
      dav2-run --model dynamic.onnx --input-size 700 --source photo.jpg --format npy --save d.npy
      dav2-run --model depth_anything_v2_vits_dynamic_fp16.engine --source 0 --show
      dav2-run --model depth_anything_v2_vits_dynamic_int8.xml --source clip.mp4 --save depth.mp4
      dav2-run --model m.onnx --source rtsp://camera/stream --show --range 0,8
      dav2-run --model m_uint8_1280x720.xml --source 0 --camera-size 1280x720 --show --stabilize
      dav2-run --model metric.onnx --source room.jpg --format ply --intrinsics 600,600,320,240 --save room.ply
      dav2-run --model metric.onnx --source 0 --intrinsics camera.yaml --viewer
      dav2-run --model relative.onnx --source street.jpg --anchors tape.csv --format npy --save d.npy
      dav2-run --model metric.onnx --source clip.mp4 --intrinsics camera.yaml --format rosbag --save run_bag/
      dav2-run --model metric.engine --source 0 --intrinsics camera.yaml --serve

    Capture, inference and output run in parallel. Cameras and streams keep only the newest
    frame (stale ones are dropped, so latency does not grow); files drop nothing.

    Outputs are written under temporary names and renamed when complete; Ctrl-C or SIGTERM
    removes an unfinished video and keeps an earlier file of that name (exit 130/143).
    """
    request = RunRequest.parse(values)
    if request.keeps_nothing:
        console.warn("neither --save nor --show given: depth is computed and timed, but not kept")
    report = execute(request)
    console.info(format_summary(report.summary))
    if request.as_json:
        click.echo(json.dumps(report.as_dict()))
    save = request.options.save
    if save is not None:
        check_saved(save, report.summary.frames)
        console.info(f"saved to {save}")


def execute(request: RunRequest) -> RunReport:
    """Open the backend and the source, plan the run (dav2.runtime.session.plan_run) and run it."""
    from dav2.runtime.pipeline import run
    from dav2.runtime.session import plan_run

    with request.backend.open() as engine, request.source.open(request.options.limits) as frames:
        plan = plan_run(engine, frames, request.options)
        console.info(engine.describe())
        summary = run(
            frames,
            engine,
            plan,
            max_frames=request.max_frames,
            on_tick=_live_printer(plan) if request.as_json else None,
            on_frame=_progress_printer(frames),
        )
    anchors = plan.anchors is not None
    return RunReport(
        summary,
        str(request.backend.model),
        engine.name,
        request.source.source,
        plan.input_size,
        anchors=plan.anchors.summary() if anchors else None,
        unit=plan.unit if anchors else None,
    )


def check_saved(save: str, frames: int) -> None:
    """Say "saved to" only when something was: a run that processed no frame wrote nothing."""
    if frames == 0:
        raise Dav2Error(f"nothing saved to {save}: no frame was processed")


def _live_printer(plan: RunPlan):
    """--json: one line per second; with --anchors it carries the latest fit (its residual can drift)."""

    def tick(snapshot: LiveSnapshot) -> None:
        line = {"live": snapshot.as_dict()}
        if plan.anchors is not None:
            line["anchors"] = plan.anchors.summary()
        click.echo(json.dumps(line))

    return tick


def _progress_printer(source: Source):
    """A once-in-a-while progress line for sources with many frames (folders, videos)."""
    total = len(source) if hasattr(source, "__len__") else 0
    if total <= 1 and not source.live:
        return None

    def report(done: int) -> None:
        if done == 1 or done % 25 == 0 or done == total:
            of = f"/{total}" if total else ""
            console.info(f"  frame {done}{of}")

    return report
