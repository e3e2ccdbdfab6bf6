"""dav2-eval: DA-2K pairwise accuracy, dense metrics against measured depth or a second artifact, and
temporal stability (flicker) on a video."""

import json
from pathlib import Path

import click

from dav2.cli.common import CONTEXT, INPUT_SIZE_OPTION, JSON_OPTION, OptionGroup, default_of, user_errors
from dav2.errors import Dav2Error
from dav2.evaluation.dense import ALIGNMENTS, evaluate_dense
from dav2.evaluation.groundtruth import FORMATS as DEPTH_FORMATS
from dav2.evaluation.groundtruth import read_depth


@click.group(context_settings=CONTEXT)
def eval_main():
    """Evaluate an exported model: DA-2K pairwise accuracy (da2k), dense metrics against measured
    depth (dense), or temporal stability on a video (temporal).

    da2k and dense also compare two artifacts with each other (e.g. INT8 against FP32) with
    --reference. `dav2-eval COMMAND --help` has each command's options and an example.
    """


# the model option both dav2-eval commands take (the artifact must exist)
EVAL_MODEL = click.option(
    "--model", required=True, type=click.Path(exists=True, dir_okay=False), help="Artifact (.onnx/.xml/.engine/.pth)."
)


def _print_result(result: dict, as_json: bool, lines: list[str]) -> None:
    for line in lines:
        click.echo(line)
    if as_json:
        click.echo(json.dumps(result))


@eval_main.command("da2k", short_help="DA-2K pairwise accuracy: the share of point pairs ordered right.")
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
@INPUT_SIZE_OPTION
@JSON_OPTION
@user_errors
def eval_da2k(annotations, images, model, reference, input_size, as_json):
    """DA-2K: the share of point pairs whose depth order the model gets right, overall and per scene type.

    \b
    Example:
      dav2-eval da2k --annotations DA-2K/annotations.json --images DA-2K/images --model m.onnx
    """
    from dav2.evaluation.da2k_run import evaluate_da2k

    result = evaluate_da2k(annotations, images, model, reference, input_size)
    title = "DA-2K accuracy" if reference is None else f"DA-2K agreement with {Path(reference).name}"
    lines = [f"{title}: {result['accuracy']:.4f} over {result['pairs']} pairs ({Path(model).name})"]
    lines += [f"  {name}: {s['accuracy']:.4f} ({s['pairs']} pairs)" for name, s in result["scenes"].items()]
    _print_result(result, as_json, lines)


@eval_main.command("temporal", short_help="Flicker and a TAE-like error on a video, with and without --stabilize.")
@EVAL_MODEL
@click.option("--video", required=True, type=click.Path(exists=True, dir_okay=False), help="Video clip to score.")
@click.option("--stabilize", is_flag=True, help="Also score the stabilised output (dav2-run --stabilize).")
@click.option("--max-frames", type=int, default=None, help="Score only the first N frames.")
@INPUT_SIZE_OPTION
@JSON_OPTION
@user_errors
def eval_temporal(model, video, stabilize, max_frames, input_size, as_json):
    """Flicker (mean change of disparity between frames on static pixels) and a TAE-like error on a video.

    \b
    Example:
      dav2-eval temporal --model m.onnx --video clip.mp4 --stabilize --json
    """
    from dav2.cli.common import check_number
    from dav2.evaluation.temporal import MAX_FRAMES, evaluate_temporal

    check_number(max_frames, "--max-frames", 2, MAX_FRAMES)
    result = evaluate_temporal(model, video, stabilize, input_size, max_frames)
    lines = [
        f"{result['video']}: {result['frames']} frames, flicker {result['flicker']:.4f}, tae {result['tae']:.4f} "
        f"({'stabilised' if stabilize else 'per-frame output'}, {Path(model).name})"
    ]
    if stabilize:
        base = result["unstabilized"]
        lines.append(
            f"  per-frame output: flicker {base['flicker']:.4f}, tae {base['tae']:.4f}; flicker reduced "
            f"{result['flicker_reduction']:.2f}x; AbsRel of stabilised vs per-frame "
            f"{result['abs_rel_vs_unstabilized']:.4f}"
        )
    _print_result(result, as_json, lines)


DENSE_REFERENCE_OPTIONS = OptionGroup(
    click.option(
        "--depth",
        type=click.Path(exists=True, file_okay=False),
        default=None,
        help="Folder of measured depth, one file per image (paired in sorted order).",
    ),
    click.option(
        "--depth-format",
        type=click.Choice(DEPTH_FORMATS),
        default=default_of(read_depth, "fmt"),
        help="Encoding of the depth files (see docs/bench.md).",
    ),
    EVAL_MODEL,
    click.option(
        "--reference",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Without --depth: compare with this artifact instead of measured depth.",
    ),
    click.option(
        "--alignment",
        type=click.Choice(ALIGNMENTS),
        default=default_of(evaluate_dense, "alignment"),
        help="Relative models: scale-and-shift (least squares) or median scale, in disparity space.",
    ),
    click.option(
        "--min-depth",
        type=float,
        default=default_of(evaluate_dense, "min_depth"),
        help="Ground truth below this (metres) is masked.",
    ),
    click.option(
        "--max-depth",
        type=float,
        default=default_of(evaluate_dense, "max_depth"),
        help="Ground truth above this (metres) is masked.",
    ),
)


@eval_main.command("dense", short_help="AbsRel, δ1-δ3 and RMSE against measured depth, or against --reference.")
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False), help="Folder of images.")
@DENSE_REFERENCE_OPTIONS
@INPUT_SIZE_OPTION
@JSON_OPTION
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
        lines = [depth_line(result, model)]
    else:
        result = evaluate_against_reference(images, model, reference, input_size)
        lines = [reference_line(result, model, reference)]
    lines += [f"  {name}: AbsRel {m['abs_rel']:.4f}, δ1 {m['delta1']:.4f}" for name, m in result["per_image"].items()]
    _print_result(result, as_json, lines)


def depth_line(r: dict, model: str) -> str:
    """The mean metrics against measured depth, on one line."""
    return (
        f"{Path(model).name} on {r['images']} image(s) ({r['alignment']}): AbsRel {r['abs_rel']:.4f}, "
        f"δ1 {r['delta1']:.4f}, δ2 {r['delta2']:.4f}, δ3 {r['delta3']:.4f}, RMSE {r['rmse']:.3f} m"
    )


def reference_line(r: dict, model: str, reference: str) -> str:
    """The agreement of two artifacts, on one line."""
    return (
        f"{Path(model).name} against {Path(reference).name} on {r['images']} image(s): "
        f"AbsRel {r['abs_rel']:.4f}, δ1 {r['delta1']:.4f}, max abs diff {r['max_abs_diff']:.3g}"
    )
