"""Command-line entry points: dav2-export, dav2-run and dav2-bench. Thin: parse, call, print.

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
from dav2.evaluation.dense import ALIGNMENTS
from dav2.evaluation.groundtruth import FORMATS as DEPTH_FORMATS
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
@click.option("--onnx", "to_onnx", is_flag=True, help="Export ONNX (the default target when none is named).")
@click.option("--fp16", is_flag=True, help="ONNX in FP16 (input and output stay FP32).")
@click.option("--int8", is_flag=True, help="ONNX in INT8 for ONNX Runtime on CPUs (see --ort-int8).")
@click.option(
    "--ort-int8",
    type=click.Choice(["dynamic", "static"]),
    default="dynamic",
    help="dynamic: INT8 MatMul weights, activations quantized per call (measured faster and accurate); "
    "static: QDQ calibrated on --calib-dir (slower on the CPU, for QDQ-fusing runtimes).",
)
@click.option(
    "--openvino",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default=None,
    help="OpenVINO IR (.xml/.bin). INT8 is NNCF post-training quantization and needs --calib-dir.",
)
@click.option(
    "--keep-head", is_flag=True, help="OpenVINO INT8: leave the DPT head unquantized (more accurate, slower)."
)
@click.option(
    "--trt",
    type=click.Choice(["fp16", "int8", "fp32"]),
    default=None,
    is_flag=False,
    flag_value="fp16",
    help="TensorRT engine (needs TensorRT and an NVIDIA GPU); --trt alone means fp16. INT8 needs --calib-dir.",
)
@click.option(
    "--keep-fp32",
    default="",
    help="TensorRT: comma-separated layer groups kept in FP32: layernorm, softmax, head.",
)
@click.option("--workspace", type=float, default=4.0, help="TensorRT builder workspace limit in GiB.")
@click.option(
    "--profile",
    type=click.Choice(["range", "camera", "batch"]),
    default=None,
    help="TensorRT shape profile for --dynamic: range (1x196x196..1x1036x1036), camera (4:3/16:9 at 364-518), "
    "batch (1-8 x 518x518). [default: range]",
)
@click.option("--min-shape", default=None, help="TensorRT --dynamic: smallest BATCHxHEIGHTxWIDTH, e.g. 1x308x308.")
@click.option("--opt-shape", default=None, help="TensorRT --dynamic: shape to tune for, e.g. 1x518x518.")
@click.option("--max-shape", default=None, help="TensorRT --dynamic: largest BATCHxHEIGHTxWIDTH, e.g. 1x728x1288.")
@click.option(
    "--calib-dir",
    type=click.Path(exists=True),
    default=None,
    help="INT8 calibration: a folder of real images (searched recursively) or a video.",
)
@click.option("--calib-count", type=int, default=32, help="Calibration images to use.")
@click.option("--calib-seed", type=int, default=0, help="Seed for shuffling the calibration images.")
@click.option(
    "--holdout",
    type=int,
    default=4,
    help="Images of --calib-dir kept out of calibration for the accuracy report.",
)
@click.option(
    "--max-abs-rel",
    type=float,
    default=None,
    help="Fail the export (nothing written) when a reduced-precision artifact's AbsRel vs PyTorch FP32 exceeds this.",
)
@click.option("--height", type=int, default=518, help="Input height (rounded to a multiple of 14).")
@click.option("--width", type=int, default=518, help="Input width (rounded to a multiple of 14).")
@click.option("--dynamic", is_flag=True, help="Dynamic batch, height and width (any multiple of 14).")
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
    help="Image for the parity check (and the accuracy report without --calib-dir). "
    "[default: the built-in sample scene]",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    default="models",
    help="Folder for the artifacts, their .json metadata and TensorRT caches.",
)
@user_errors
def export_main(encoder, kind, max_depth, checkpoint, to_onnx, fp16, int8, ort_int8, openvino, trt, keep_fp32, **rest):
    """Export a Depth Anything V2 checkpoint to ONNX, OpenVINO IR or a TensorRT engine, checked against PyTorch.

    FP32 artifacts must match PyTorch (the export fails otherwise); FP16 and INT8 artifacts
    print an accuracy report (AbsRel, δ1, max abs difference) on held-out images.

    \b
    Examples:
      dav2-export --encoder vits --onnx
      dav2-export --encoder vits --trt fp16
      dav2-export --encoder vits --trt int8 --calib-dir photos/
      dav2-export --encoder vits --openvino fp16
      dav2-export --encoder vits --openvino int8 --calib-dir photos/ --max-abs-rel 0.05
      dav2-export --encoder vits --onnx --int8
      dav2-export --encoder vitl --kind metric --max-depth 80 --checkpoint m.pth --dynamic

    Offline, pass the checkpoint with --checkpoint or DAV2_CHECKPOINT=PATH.
    """
    from dav2.export.pipeline import ExportRequest, export_artifacts

    if kind == "relative" and max_depth is not None:
        raise Dav2Error("--max-depth applies to --kind metric only")
    if fp16 and int8:
        raise Dav2Error("--fp16 and --int8 are two ONNX precisions; choose one")
    onnx = "fp16" if fp16 else "int8" if int8 else "fp32" if to_onnx else None
    request = ExportRequest(
        encoder=encoder,
        kind=kind,
        max_depth=max_depth,
        checkpoint=checkpoint,
        onnx=onnx,
        ort_int8=ort_int8,
        openvino=openvino,
        trt=trt,
        keep_fp32=[g.strip() for g in keep_fp32.split(",") if g.strip()],
        workspace_gb=rest.pop("workspace"),
        output=Path(rest.pop("output")),
        **rest,
    )
    for artifact in export_artifacts(request):
        click.echo(str(artifact))


# --- dav2-run --------------------------------------------------------------------------------


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--model",
    required=True,
    type=click.Path(),
    help="Artifact to run: .onnx (ONNX Runtime), .xml (OpenVINO), .engine (TensorRT) or .pth (PyTorch reference).",
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
@click.option("--device", default="cpu", help="torch: cpu or cuda; openvino: CPU, GPU, NPU or AUTO.")
@click.option("--threads", type=int, default=0, help="Inference threads (0: the library's default).")
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
      dav2-run --model models/depth_anything_v2_vits_518x518.onnx --save depth.png
      dav2-run --model m.onnx --source photos/ --save out/ --format png16
      dav2-run --model m.onnx --source clip.mp4 --save depth.mp4 --format side-by-side
      dav2-run --model m.onnx --source 0 --show
      dav2-run --model dynamic.onnx --input-size 700 --source photo.jpg --format npy --save d.npy
      dav2-run --model depth_anything_v2_vits_518x518_fp16.engine --source 0 --show
      dav2-run --model depth_anything_v2_vits_518x518_int8.xml --source clip.mp4 --save depth.mp4
      dav2-run --model m.onnx --source rtsp://camera/stream --show --range 0,8

    Capture, inference and output run in parallel. Cameras and streams keep only the newest
    frame (stale ones are dropped, so latency does not grow); files drop nothing.
    """
    from dav2.processing import ColorRange
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
    camera = _pair(camera_size, "x", int, "--camera-size")
    frames = open_source(source, camera_size=camera, camera_fps=camera_fps, reconnects=reconnects)
    fixed = _pair(color_range, ",", float, "--range")
    if fixed is not None and not fixed[0] < fixed[1]:
        raise Dav2Error("--range needs MIN < MAX")
    # one picture: its own range, as upstream; a sequence: smoothed so the colours do not flicker
    colours = ColorRange(fixed, smoothing=0.0 if frames.single or frames.kind == "folder" else 0.9)
    unit = "m" if engine.kind == "metric" else "disparity"
    sinks = []
    if save is not None:
        sinks.append(open_sink(save, fmt, cmap, unit, frames.single, frames.fps))
    if show:
        sinks.append(WindowSink(fmt, cmap))
    console.info(engine.describe())
    summary = run(
        frames,
        engine,
        sinks,
        input_size=input_size,
        max_frames=max_frames,
        on_frame=_progress_printer(frames),
        color_range=colours,
        on_tick=(lambda snapshot: click.echo(json.dumps({"live": snapshot}))) if as_json else None,
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


def _pair(text: str | None, separator: str, kind, option: str):
    """'1280x720' -> (1280, 720); '0,8' -> (0.0, 8.0); None stays None."""
    if text is None:
        return None
    parts = text.lower().split(separator)
    try:
        if len(parts) != 2:
            raise ValueError
        return kind(parts[0]), kind(parts[1])
    except ValueError:
        raise Dav2Error(f"{option} expects two numbers separated by '{separator}', not {text!r}") from None


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


# --- dav2-bench ------------------------------------------------------------------------------


def _csv(kind, choices=None):
    def parse(ctx, param, value):
        items = [v.strip() for v in value.split(",") if v.strip()]
        if choices:
            bad = [v for v in items if v not in choices]
            if bad:
                raise click.BadParameter(f"{', '.join(bad)} (choose from {', '.join(choices)})")
        try:
            return [kind(v) for v in items]
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc

    return parse


@click.group(
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.option("--encoder", type=click.Choice(ENCODERS), default="vits", help="ViT size to measure.")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="Local .pth (else as dav2-export).")
@click.option("--sizes", default="518", callback=_csv(int), help="Comma-separated square input sizes.")
@click.option(
    "--backends",
    default="torch,onnxruntime,openvino,tensorrt",
    callback=_csv(str, ("torch", "onnxruntime", "openvino", "tensorrt")),
    help="Backends to try (what is not installed is skipped with the reason; torch FP32 always runs as the baseline).",
)
@click.option(
    "--precisions", default="fp32,fp16,int8", callback=_csv(str, ("fp32", "fp16", "int8")), help="Precisions to try."
)
@click.option(
    "--images",
    type=click.Path(exists=True),
    default=None,
    help="Real photos (folder or video): held-out ones for accuracy and timing, the rest for INT8 calibration. "
    "[default: the sample scene; INT8 for OpenVINO/TensorRT skipped]",
)
@click.option("--eval-images", type=int, default=4, help="Held-out images for the accuracy columns.")
@click.option("--calib-count", type=int, default=32, help="INT8 calibration images.")
@click.option("--seconds", type=float, default=5.0, help="Timed seconds per case (within --min-runs/--max-runs).")
@click.option("--min-runs", type=int, default=5, help="Fewest timed runs per case.")
@click.option("--max-runs", type=int, default=200, help="Most timed runs per case.")
@click.option("--warmup", type=int, default=3, help="Untimed runs before timing.")
@click.option("--threads", type=int, default=0, help="CPU inference threads (0: each library's default).")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=str(Path.home() / ".cache" / "dav2" / "bench"),
    help="Where built artifacts are kept and reused.",
)
@click.option("--label", default=None, help="Machine name in tables. [default: GPU name, else CPU model and cores]")
@click.option("--save", type=click.Path(file_okay=False), default=None, help="Folder for the JSON, Markdown (and PNG).")
@click.pass_context
@user_errors
def bench_main(ctx, save, cache_dir, **options):
    """Latency, throughput, memory and accuracy of every backend x precision x size this machine can run.

    \b
    Examples:
      dav2-bench --encoder vits
      dav2-bench --encoder vits --sizes 308,364,518 --backends openvino,onnxruntime --precisions fp32,int8
      dav2-bench --encoder vits --checkpoint my.pth --images photos/ --save benchmarks/results/
      dav2-bench compare benchmarks/results/*.json
    """
    if ctx.invoked_subcommand is not None:
        return
    from dav2.benchmarks.report import save as save_results
    from dav2.benchmarks.report import to_markdown
    from dav2.benchmarks.runner import BenchSettings, run_bench

    if any(size < 14 for size in options["sizes"]) or not options["sizes"]:
        raise Dav2Error("--sizes must be at least 14")
    from dav2.export.pipeline import checked_size

    sizes = [checked_size("sizes", size) for size in options.pop("sizes")]
    command = " ".join(["dav2-bench", *sys.argv[1:]])
    settings = BenchSettings(sizes=sizes, cache_dir=Path(cache_dir), command=command, **options)
    document = run_bench(settings)
    markdown = to_markdown(document)
    if save:
        for path in save_results(document, Path(save)):
            console.info(f"saved {path}")
    click.echo(markdown)
    if not document["complete"]:
        sys.exit(130)


@bench_main.command("compare")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@user_errors
def bench_compare(results):
    """Merge result files from several machines into one Markdown table."""
    from dav2.benchmarks.report import compare

    click.echo(compare([Path(p) for p in results]))


# --- dav2-eval -------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def eval_main():
    """Evaluate an exported model: DA-2K pairwise accuracy, or dense metrics against measured depth.

    Both compare two artifacts with each other (e.g. INT8 against FP32) with --reference.
    """


# options both dav2-eval commands take
EVAL_MODEL = click.option(
    "--model", required=True, type=click.Path(exists=True, dir_okay=False), help="Artifact (.onnx/.xml/.engine/.pth)."
)
EVAL_INPUT_SIZE = click.option(
    "--input-size", type=int, default=None, help="Short side for dynamic models. [default: the artifact's own]"
)
EVAL_JSON = click.option("--json", "as_json", is_flag=True, help="Also print the result as one JSON line.")


def _print_result(result: dict, as_json: bool, lines: list[str]) -> None:
    for line in lines:
        click.echo(line)
    if as_json:
        click.echo(json.dumps(result))


@eval_main.command("da2k")
@click.option("--annotations", required=True, type=click.Path(exists=True, dir_okay=False), help="DA-2K JSON file.")
@click.option(
    "--images", required=True, type=click.Path(exists=True, file_okay=False), help="Folder the paths are relative to."
)
@EVAL_MODEL
@click.option(
    "--reference",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Second artifact: report how often both order a pair the same way.",
)
@EVAL_INPUT_SIZE
@EVAL_JSON
@user_errors
def eval_da2k(annotations, images, model, reference, input_size, as_json):
    """DA-2K: the share of point pairs whose depth order the model gets right, overall and per scene type.

    \b
    Example:
      dav2-eval da2k --annotations DA-2K/annotations.json --images DA-2K/images --model m.onnx
    """
    from dav2.evaluation.da2k import da2k_accuracy, da2k_agreement, load_annotations
    from dav2.evaluation.predict import ModelPredictor

    pairs = load_annotations(annotations)
    predictor = ModelPredictor(model, images, input_size)
    if reference is None:
        result = da2k_accuracy(pairs, predictor, predictor.kind)
        title = "DA-2K accuracy"
    else:
        other = ModelPredictor(reference, images, input_size)
        result = da2k_agreement(pairs, predictor, predictor.kind, other, other.kind)
        title = f"DA-2K agreement with {Path(reference).name}"
    lines = [f"{title}: {result['accuracy']:.4f} over {result['pairs']} pairs ({Path(model).name})"]
    lines += [f"  {name}: {s['accuracy']:.4f} ({s['pairs']} pairs)" for name, s in result["scenes"].items()]
    _print_result(result, as_json, lines)


@eval_main.command("dense")
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of images.")
@click.option(
    "--depth",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Folder of measured depth, one file per image (paired in sorted order).",
)
@click.option(
    "--depth-format",
    type=click.Choice(DEPTH_FORMATS),
    default="png-mm",
    help="Encoding of the depth files (see README).",
)
@EVAL_MODEL
@click.option(
    "--reference",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Without --depth: compare with this artifact instead of measured depth.",
)
@click.option(
    "--alignment",
    type=click.Choice(ALIGNMENTS),
    default="least-squares",
    help="Relative models: scale-and-shift (least squares) or median scale, in disparity space.",
)
@click.option("--min-depth", type=float, default=1e-3, help="Ground truth below this (metres) is masked.")
@click.option("--max-depth", type=float, default=80.0, help="Ground truth above this (metres) is masked.")
@EVAL_INPUT_SIZE
@EVAL_JSON
@user_errors
def eval_dense(images, depth, depth_format, model, reference, alignment, min_depth, max_depth, input_size, as_json):
    """AbsRel, δ1-δ3 and RMSE against measured depth (or AbsRel, δ1, max difference against --reference).

    \b
    Examples:
      dav2-eval dense --images nyu/rgb --depth nyu/depth --model m.onnx
      dav2-eval dense --images kitti/rgb --depth kitti/depth --depth-format png-kitti --model metric.xml
      dav2-eval dense --images photos/ --model int8.xml --reference fp32.onnx
    """
    from dav2.evaluation.dense_run import evaluate_against_depth, evaluate_against_reference

    if depth is None and reference is None:
        raise Dav2Error("give --depth (measured depth) or --reference (a second artifact)")
    if depth is not None:
        result = evaluate_against_depth(images, depth, depth_format, model, alignment, min_depth, max_depth, input_size)
        r = result
        lines = [
            f"{Path(model).name} on {r['images']} image(s) ({r['alignment']}): AbsRel {r['abs_rel']:.4f}, "
            f"δ1 {r['delta1']:.4f}, δ2 {r['delta2']:.4f}, δ3 {r['delta3']:.4f}, RMSE {r['rmse']:.3f} m"
        ]
    else:
        result = evaluate_against_reference(images, model, reference, input_size)
        lines = [
            f"{Path(model).name} against {Path(reference).name} on {result['images']} image(s): "
            f"AbsRel {result['abs_rel']:.4f}, δ1 {result['delta1']:.4f}, max abs diff {result['max_abs_diff']:.3g}"
        ]
    lines += [f"  {name}: AbsRel {m['abs_rel']:.4f}, δ1 {m['delta1']:.4f}" for name, m in result["per_image"].items()]
    _print_result(result, as_json, lines)


# --- dav2-app --------------------------------------------------------------------------------


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--models", type=click.Path(file_okay=False), default="models", help="Folder searched for exported models."
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also offer this checkpoint, exported to ONNX on first use.",
)
@click.option("--encoder", type=click.Choice(ENCODERS), default="vits", help="Encoder of --checkpoint.")
@click.option("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0 to share on the network).")
@click.option("--port", type=int, default=7860, help="Port to listen on.")
@user_errors
def app_main(models, checkpoint, encoder, host, port):
    """A web app: upload images or a video, pick a model, get colour/grey/16-bit/.npy depth back.

    \b
    Example:
      dav2-app --models models/          # then open http://127.0.0.1:7860
    """
    try:
        import gradio  # noqa: F401
    except ImportError as exc:
        raise Dav2Error("dav2-app needs Gradio: pip install 'dav2[app]'") from exc
    from dav2.app import DepthService, build_app

    service = DepthService(Path(models), checkpoint, encoder)
    if not service.choices():
        raise Dav2Error(f"no exported models in {models}; export one (dav2-export) or pass --checkpoint")
    console.info(f"models: {', '.join(Path(c).name for c in service.choices())}")
    build_app(service).launch(server_name=host, server_port=port)
