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
from dav2.media import DEFAULT_MAX_ASPECT, DEFAULT_MAX_MEGAPIXELS, ImageLimits
from dav2.processing import COLORMAPS, DEFAULT_MAX_TOKENS
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
    help="color/gray/side-by-side pictures, 16-bit PNG with its scale, or raw float32 .npy.",
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
@click.option("--max-frames", type=int, default=None, help="Stop after this many frames.")
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

    Capture, inference and output run in parallel. Cameras and streams keep only the newest
    frame (stale ones are dropped, so latency does not grow); files drop nothing.

    Outputs are written under temporary names and renamed when complete; Ctrl-C or SIGTERM
    removes an unfinished video and keeps an earlier file of that name (exit 130/143).
    """
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
    )
    camera = parse_pair(camera_size, "x", int, "--camera-size")
    if camera is not None:
        for side in camera:
            check_number(side, "--camera-size (each side)", 1, 16384)
    if save is None and not show and not as_json:
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
            plan.sinks,
            input_size=plan.input_size,
            max_frames=max_frames,
            on_frame=_progress_printer(frames),
            color_range=plan.color_range,
            on_tick=(lambda snapshot: click.echo(json.dumps({"live": snapshot}))) if as_json else None,
            max_tokens=plan.max_tokens,
            preprocessing=plan.preprocessing,
            stabilizer=plan.stabilizer,
        )
    summary.update({"model": str(model), "backend": engine.name, "source": source, "input_size": plan.input_size})
    console.info(format_summary(summary))
    if save is not None:
        console.info(f"saved to {save}")
    if as_json:
        click.echo(json.dumps(summary))


def check_numbers(threads, max_frames, max_depth, camera_fps, reconnects, max_megapixels, max_aspect, max_tokens):
    """Every numeric option within a sane range (nan and inf refused), before anything opens."""
    check_number(threads, "--threads", 0, MAX_THREADS)
    check_number(max_frames, "--max-frames", 1)
    check_number(max_depth, "--max-depth", 0, 1e6, low_open=True)
    check_number(camera_fps, "--camera-fps", 0, 1000, low_open=True)
    check_number(reconnects, "--reconnects", 0, 1000)
    check_number(max_megapixels, "--max-megapixels", 0, 100_000, low_open=True)
    check_number(max_aspect, "--max-aspect", 1, 100_000)
    check_number(max_tokens, "--max-tokens", 1, 10_000_000)


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
