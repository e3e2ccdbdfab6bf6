"""dav2-run: run an artifact on images, folders, videos, cameras or streams, with per-stage FPS."""

import json

import click

from dav2 import console
from dav2.cli.common import CONTEXT, INPUT_SIZE_OPTION, MODEL_OPTION, THREADS_OPTION, parse_pair, user_errors
from dav2.processing import COLORMAPS
from dav2.runtime.backends import BACKENDS
from dav2.runtime.sinks import FORMATS
from dav2.vocabulary import ModelKind


@click.command(context_settings=CONTEXT)
@MODEL_OPTION
@click.option(
    "--source",
    default="sample",
    help="Image, folder, video file, camera index or /dev/videoN, rtsp:// or http:// URL, "
    "or 'sample' (a built-in scene).",
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

    Capture, inference and output run in parallel. Cameras and streams keep only the newest
    frame (stale ones are dropped, so latency does not grow); files drop nothing.
    """
    from dav2.runtime.backends import open_backend
    from dav2.runtime.fps import format_summary
    from dav2.runtime.pipeline import run
    from dav2.runtime.session import RunOptions, plan_run
    from dav2.runtime.sources import open_source

    options = RunOptions(
        save=save,
        fmt=fmt,
        cmap=cmap,
        show=show,
        input_size=input_size,
        color_range=parse_pair(color_range, ",", float, "--range"),
    )
    camera = parse_pair(camera_size, "x", int, "--camera-size")
    if save is None and not show and not as_json:
        console.warn("neither --save nor --show given: depth is computed and timed, but not kept")
    with (
        open_backend(model, backend, threads=threads, kind=kind, max_depth=max_depth, device=device) as engine,
        open_source(source, camera_size=camera, camera_fps=camera_fps, reconnects=reconnects) as frames,
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
        )
    summary.update({"model": str(model), "backend": engine.name, "source": source, "input_size": plan.input_size})
    console.info(format_summary(summary))
    if save is not None:
        console.info(f"saved to {save}")
    if as_json:
        click.echo(json.dumps(summary))


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
