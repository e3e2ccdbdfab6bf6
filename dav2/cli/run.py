"""dav2-run: run an artifact on images, folders, videos, cameras or streams, with per-stage FPS."""

import json

import click

from dav2 import console
from dav2.cli.common import (
    CONTEXT,
    INPUT_SIZE_OPTION,
    MAX_THREADS,
    MODEL_OPTION,
    THREADS_OPTION,
    check_number,
    parse_pair,
    user_errors,
)
from dav2.cli.ros2 import ros_options
from dav2.errors import Dav2Error
from dav2.media import DEFAULT_MAX_ASPECT, DEFAULT_MAX_MEGAPIXELS, ImageLimits
from dav2.processing import COLORMAPS, DEFAULT_MAX_TOKENS, check_max_tokens
from dav2.runtime.backends import BACKENDS
from dav2.runtime.sinks import FORMATS
from dav2.vocabulary import ModelKind


@click.command(context_settings=CONTEXT)
@MODEL_OPTION
@click.option(
    "--source",
    default="sample",
    help="An existing image, folder or video file (an existing path is always a file or folder); "
    "cam:0 or cam:/dev/video0 for a camera (plain 0 or /dev/video0 when no such file exists); "
    "rtsp:// or http:// URL; gst:PIPELINE for a GStreamer pipeline; "
    "synthetic:FPS[:WxH] for a synthetic camera (the sample scene, panning, live at FPS frames a second: "
    "latency and drops measured without hardware); "
    "'sample' for the built-in scene (when no such file exists).",
)
@click.option(
    "--save", default=None, type=click.Path(), help="Output file (single image or .mp4/.avi video) or folder."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="color",
    help="color/gray/side-by-side pictures, 16-bit PNG with its scale, raw float32 .npy, or ply: a binary point "
    "cloud (metres, coloured) per image or frame, from a metric model or --anchors, with --intrinsics; a single "
    "image may be saved to a .ply file, folders, videos and cameras to a folder (one .ply per frame). "
    "rosbag: a ROS 2 bag folder (metadata.yaml + .mcap; pip install 'dav2[rosbag]') with depth (32FC1), "
    "camera_info and, for metric depth, PointCloud2 per frame (--ros-* options).",
)
@click.option(
    "--cmap",
    type=click.Choice(COLORMAPS),
    default="spectral",
    help="Colour map for color and side-by-side (spectral is upstream's Spectral_r).",
)
@INPUT_SIZE_OPTION
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    help="auto picks from the model's extension.",
)
@click.option(
    "--kind",
    type=click.Choice(ModelKind.values()),
    default=ModelKind.RELATIVE.value,
    help="Only for .pth models (artifacts record it).",
)
@click.option("--max-depth", type=float, default=None, help="Only for metric .pth models.")
@click.option("--device", default="cpu", help="torch: cpu or cuda; openvino: CPU, GPU, NPU or AUTO.")
@THREADS_OPTION
@click.option("--show", is_flag=True, help="Show depth in a window with a live FPS overlay (q or Esc quits).")
@click.option(
    "--max-frames",
    type=int,
    default=None,
    help="Stop after this many frames are processed and written (cameras and streams keep capturing, "
    "dropping stale frames, until then).",
)
@click.option(
    "--range",
    "color_range",
    default=None,
    help="Fixed depth range MIN,MAX for colouring. "
    "[default: each image's own; smoothed over time for videos and cameras]",
)
@click.option("--camera-size", default=None, help="Camera capture size WIDTHxHEIGHT, e.g. 1280x720.")
@click.option("--camera-fps", type=float, default=None, help="Camera capture frame rate.")
@click.option("--reconnects", type=int, default=5, help="Times a dropped rtsp/http stream is reopened (1 s apart).")
@click.option(
    "--max-megapixels",
    type=float,
    default=DEFAULT_MAX_MEGAPIXELS,
    help="Refuse images and frames larger than this (checked from the file header before decoding).",
)
@click.option(
    "--max-aspect",
    type=float,
    default=DEFAULT_MAX_ASPECT,
    help="Refuse images whose long side is more than this many times the short side.",
)
@click.option(
    "--max-tokens",
    type=int,
    default=DEFAULT_MAX_TOKENS,
    help="Refuse network inputs of more than this many 14x14 patches (dynamic models; memory grows with its square).",
)
@click.option(
    "--stabilize",
    is_flag=True,
    help="Videos and cameras: align each frame's relative depth to a running reference (least-squares scale "
    "and shift on a robust pixel subset, smoothed), so depth does not flicker; metric models keep their metres.",
)
@click.option(
    "--preprocess",
    type=click.Choice(["auto", "exact", "float32"]),
    default="auto",
    help="exact: float64, bit-equal with upstream's input tensor; float32: about 4x faster, within the "
    "conformance tolerances; auto: exact for images and folders, float32 for videos, cameras and streams. "
    "Models exported with --input uint8 preprocess in the graph.",
)
@click.option(
    "--intrinsics",
    default=None,
    help="Camera for --format ply and the 3D view: fx,fy,cx,cy[,width,height] in pixels, or an OpenCV / ROS "
    "CameraInfo calibration YAML; scaled to the frame when made at another resolution. "
    "[default: upstream's 470.4 px focal length, principal point at the centre (said once)]",
)
@click.option(
    "--anchors",
    default=None,
    help="CSV of u,v,metres: a few measured distances (tape measure, LiDAR) at pixels of the input image; "
    "each frame's depth is fitted to them (scale and shift of a relative model's disparity, a scale correction "
    "of a metric one) and written in metres. The fit's residual is printed.",
)
@click.option(
    "--viewer",
    is_flag=True,
    help="Stream the frame, the coloured depth and the point cloud to a Rerun 3D viewer (needs a display and "
    "pip install 'dav2[viewer]'); points for metric depth (or --anchors) only.",
)
@click.option(
    "--viewer-save",
    default=None,
    type=click.Path(dir_okay=False),
    help="Record the 3D view to this .rrd file (no display needed; open it later with `rerun FILE`).",
)
@ros_options()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print live numbers as one JSON line per second, and the final summary as the last line.",
)
@user_errors
def run_main(
    model,
    source,
    save,
    fmt,
    cmap,
    input_size,
    backend,
    kind,
    max_depth,
    device,
    threads,
    show,
    max_frames,
    color_range,
    camera_size,
    camera_fps,
    reconnects,
    max_megapixels,
    max_aspect,
    max_tokens,
    stabilize,
    preprocess,
    intrinsics,
    anchors,
    viewer,
    viewer_save,
    ros,
    as_json,
):
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

    Capture, inference and output run in parallel. Cameras and streams keep only the newest
    frame (stale ones are dropped, so latency does not grow); files drop nothing.

    Outputs are written under temporary names and renamed when complete; Ctrl-C or SIGTERM
    removes an unfinished video and keeps an earlier file of that name (exit 130/143).
    """
    from dav2.geometry import parse_intrinsics, read_anchors
    from dav2.runtime.backends import open_backend
    from dav2.runtime.fps import format_summary
    from dav2.runtime.pipeline import run
    from dav2.runtime.session import RunOptions, plan_run
    from dav2.runtime.sources import open_source

    check_numbers(threads, max_frames, max_depth, camera_fps, reconnects, max_megapixels, max_aspect, max_tokens)
    options = RunOptions(
        save=save,
        fmt=fmt,
        cmap=cmap,
        show=show,
        input_size=input_size,
        color_range=parse_pair(color_range, ",", float, "--range"),
        limits=ImageLimits(max_pixels=int(max_megapixels * 1_000_000), max_aspect=max_aspect),
        max_tokens=max_tokens,
        preprocess=preprocess,
        stabilize=stabilize,
        intrinsics=parse_intrinsics(intrinsics) if intrinsics is not None else None,
        anchors=tuple(read_anchors(anchors)) if anchors is not None else (),
        viewer=viewer,
        viewer_save=viewer_save,
        ros=ros,
    )
    camera = parse_pair(camera_size, "x", int, "--camera-size")
    if camera is not None:
        for side in camera:
            check_number(side, "--camera-size (each side)", 1, 16384)
    if save is None and not show and not as_json and not (viewer or viewer_save):
        console.warn("neither --save nor --show given: depth is computed and timed, but not kept")
    with (
        open_backend(model, backend, threads=threads, kind=kind, max_depth=max_depth, device=device) as engine,
        open_source(
            source, camera_size=camera, camera_fps=camera_fps, reconnects=reconnects, limits=options.limits
        ) as frames,
    ):
        plan = plan_run(engine, frames, options)
        console.info(engine.describe())
        summary = run(
            frames,
            engine,
            plan,
            max_frames=max_frames,
            on_tick=_live_printer(plan) if as_json else None,
            on_frame=_progress_printer(frames),
        )
    summary.update({"model": str(model), "backend": engine.name, "source": source, "input_size": plan.input_size})
    if plan.anchors is not None:
        summary["anchors"] = plan.anchors.summary()
        summary["unit"] = plan.unit
    console.info(format_summary(summary))
    if as_json:
        click.echo(json.dumps(summary))
    if save is not None:
        check_saved(save, summary["frames"])
        console.info(f"saved to {save}")


def check_saved(save: str, frames: int) -> None:
    """Say "saved to" only when something was: a run that processed no frame wrote nothing."""
    if frames == 0:
        raise Dav2Error(f"nothing saved to {save}: no frame was processed")


def check_numbers(threads, max_frames, max_depth, camera_fps, reconnects, max_megapixels, max_aspect, max_tokens):
    """Every numeric option within a sane range (nan and inf refused), before anything opens."""
    check_number(threads, "--threads", 0, MAX_THREADS)
    check_number(max_frames, "--max-frames", 1)
    check_number(max_depth, "--max-depth", 0, 1e6, low_open=True)
    check_number(camera_fps, "--camera-fps", 0, 1000, low_open=True)
    check_number(reconnects, "--reconnects", 0, 1000)
    check_number(max_megapixels, "--max-megapixels", 0, 100_000, low_open=True)
    check_number(max_aspect, "--max-aspect", 1, 100_000)
    check_max_tokens(max_tokens)  # at most MAX_TOKENS_CEILING: attention memory grows with tokens²


def _live_printer(plan):
    """--json: one line per second; with --anchors it carries the latest fit (its residual can drift)."""

    def tick(snapshot: dict) -> None:
        line = {"live": snapshot}
        if plan.anchors is not None:
            line["anchors"] = plan.anchors.summary()
        click.echo(json.dumps(line))

    return tick


def _progress_printer(source):
    """A once-in-a-while progress line for sources with many frames (folders, videos)."""
    total = len(source) if hasattr(source, "__len__") else 0
    if total <= 1 and not source.live:
        return None

    def report(done: int) -> None:
        if done == 1 or done % 25 == 0 or done == total:
            of = f"/{total}" if total else ""
            console.info(f"  frame {done}{of}")

    return report
