"""Command-line entry points: dav2-export and dav2-run. Thin: parse, call, print.

Errors a user can cause arrive as Dav2Error and end in one line on standard error with exit
status 1; standard output is kept for results (and the --json summary line).
"""

import functools
import json
import sys
from pathlib import Path

import click

from dav2 import console
from dav2.errors import Dav2Error
from dav2.models.registry import ENCODERS, KINDS
from dav2.processing import COLORMAPS
from dav2.runtime.backends import BACKENDS
from dav2.runtime.sinks import FORMATS


def user_errors(command):
    """Turn Dav2Error into one 'error: ...' line and exit 1, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except Dav2Error as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


# --- dav2-export -----------------------------------------------------------------------------


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--encoder",
    type=click.Choice(ENCODERS),
    default="vits",
    help="ViT size: Small (24.8M parameters, Apache-2.0), Base, Large, Giant (CC-BY-NC-4.0).",
)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="relative",
    help="relative: disparity (larger = nearer); metric: metres.",
)
@click.option(
    "--max-depth",
    type=float,
    default=None,
    help="Metric models only: 20 (Hypersim, indoor) or 80 (Virtual KITTI 2, outdoor). [default: 20]",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="Local .pth file. Default: $DAV2_CHECKPOINT, else download the official file from Hugging Face.",
)
@click.option("--onnx", "to_onnx", is_flag=True, help="Export ONNX (the default target).")
@click.option("--height", type=int, default=518, help="Input height (rounded to a multiple of 14).")
@click.option("--width", type=int, default=518, help="Input width (rounded to a multiple of 14).")
@click.option("--dynamic", is_flag=True, help="Dynamic batch, height and width (any multiple of 14).")
@click.option("--fp16", is_flag=True, help="FP16 weights and activations (input and output stay FP32).")
@click.option(
    "--exporter",
    type=click.Choice(["torchscript", "dynamo"]),
    default="torchscript",
    help="torch.onnx exporter; both are checked for parity, torchscript measured as fast and exports faster.",
)
@click.option(
    "--check-image",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Image for the post-export parity check. [default: the built-in sample scene]",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    default="models",
    help="Folder for the artifact and its .json metadata.",
)
@user_errors
def export_main(
    encoder, kind, max_depth, checkpoint, to_onnx, height, width, dynamic, fp16, exporter, check_image, output
):
    """Export a Depth Anything V2 checkpoint to ONNX, checked against PyTorch.

    \b
    Examples:
      dav2-export --encoder vits --onnx
      dav2-export --encoder vits --checkpoint my.pth --height 518 --width 784 --output models/
      dav2-export --encoder vitl --kind metric --max-depth 80 --checkpoint m.pth --dynamic

    Offline, pass the checkpoint with --checkpoint or DAV2_CHECKPOINT=PATH.
    """
    from dav2.export.pipeline import export_artifacts

    if kind == "relative" and max_depth is not None:
        raise Dav2Error("--max-depth applies to --kind metric only")
    artifacts = export_artifacts(
        encoder=encoder,
        kind=kind,
        max_depth=max_depth,
        checkpoint=checkpoint,
        height=height,
        width=width,
        dynamic=dynamic,
        fp16=fp16,
        exporter=exporter,
        check_image=check_image,
        output=Path(output),
    )
    for artifact in artifacts:
        click.echo(str(artifact))


# --- dav2-run --------------------------------------------------------------------------------


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--model",
    required=True,
    type=click.Path(),
    help="Artifact to run: .onnx (ONNX Runtime) or .pth (PyTorch reference).",
)
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
@click.option(
    "--input-size",
    type=int,
    default=None,
    help="Short side fed to dynamic models, as upstream's input_size. [default: the artifact's own, else 518]",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    help="auto picks from the model's extension.",
)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="relative",
    help="Only for .pth models (artifacts record it).",
)
@click.option("--max-depth", type=float, default=None, help="Only for metric .pth models.")
@click.option("--device", default="cpu", help="torch backend only: cpu or cuda.")
@click.option("--threads", type=int, default=0, help="Inference threads (0: the library's default).")
@click.option("--show", is_flag=True, help="Show depth in a window with a live FPS overlay (q or Esc quits).")
@click.option("--max-frames", type=int, default=None, help="Stop after this many frames.")
@click.option("--json", "as_json", is_flag=True, help="Print the timing summary as one JSON object on the last line.")
@user_errors
def run_main(
    model, source, save, fmt, cmap, input_size, backend, kind, max_depth, device, threads, show, max_frames, as_json
):
    """Run a depth model on images, folders, videos, cameras or streams, with per-stage FPS.

    \b
    Examples:
      dav2-run --model models/depth_anything_v2_vits_518x518.onnx --save depth.png
      dav2-run --model m.onnx --source photos/ --save out/ --format png16
      dav2-run --model m.onnx --source clip.mp4 --save depth.mp4 --format side-by-side
      dav2-run --model m.onnx --source 0 --show
      dav2-run --model dynamic.onnx --input-size 700 --source photo.jpg --format npy --save d.npy
    """
    from dav2.runtime.backends import open_backend
    from dav2.runtime.pipeline import run
    from dav2.runtime.sinks import WindowSink, open_sink
    from dav2.runtime.sources import open_source

    if input_size is not None and (input_size < 14):
        raise Dav2Error("--input-size must be at least 14")
    if save is None and not show and not as_json:
        console.warn("neither --save nor --show given: depth is computed and timed, but not kept")
    engine = open_backend(model, backend, threads=threads, kind=kind, max_depth=max_depth, device=device)
    if input_size is not None and engine.fixed_hw is not None:
        console.warn(
            f"--input-size is ignored: {Path(model).name} has a fixed input of "
            f"{engine.fixed_hw[0]}x{engine.fixed_hw[1]} (images are stretched to it)"
        )
    frames = open_source(source)
    unit = "m" if engine.kind == "metric" else "disparity"
    sinks = []
    if save is not None:
        sinks.append(open_sink(save, fmt, cmap, unit, frames.single, frames.fps))
    if show:
        sinks.append(WindowSink(fmt, cmap))
    console.info(engine.describe())
    summary = run(
        frames, engine, sinks, input_size=input_size, max_frames=max_frames, on_frame=_progress_printer(frames)
    )
    summary.update(
        {
            "model": str(model),
            "backend": engine.name,
            "source": source,
            "input_size": input_size or engine.default_input_size,
        }
    )
    from dav2.runtime.fps import format_summary

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
