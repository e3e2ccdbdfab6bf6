"""dav2-bench: latency, throughput, memory and accuracy of every backend x precision x size."""

import sys
from pathlib import Path

import click

from dav2 import console
from dav2.cli.common import (
    CONTEXT,
    ENCODER_AND_CHECKPOINT,
    JSON_OPTION,
    THREADS_OPTION,
    check_number,
    csv_option,
    require_export_tools,
    user_errors,
)
from dav2.errors import Dav2Error
from dav2.vocabulary import ENCODER_SPECS, BackendName, Precision

PRECISIONS_OPTION = click.option(
    "--precisions", default="fp32,fp16,int8", callback=csv_option(str, Precision.values()), help="Precisions to try."
)
CACHE_DIR_OPTION = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=str(Path.home() / ".cache" / "dav2" / "bench"),
    help="Where built artifacts are kept and reused (dav2-bench and dav2-bench pick share them).",
)


@click.group(
    invoke_without_command=True,
    context_settings=CONTEXT,
)
@ENCODER_AND_CHECKPOINT
@click.option("--sizes", default="518", callback=csv_option(int), help="Comma-separated square input sizes.")
@click.option(
    "--backends",
    default="torch,onnxruntime,openvino,tensorrt",
    callback=csv_option(str, BackendName.values()),
    help="Backends to try (what is not installed is skipped with the reason; torch FP32 always runs as the baseline).",
)
@PRECISIONS_OPTION
@click.option(
    "--images",
    type=click.Path(exists=True),
    default=None,
    help="Real photos (folder or video): held-out ones for accuracy and timing, the rest for INT8 calibration. "
    "[default: the sample scene; INT8 for OpenVINO/TensorRT skipped]",
)
@click.option("--eval-images", type=int, default=4, help="Held-out images for the accuracy columns (1-64).")
@click.option("--calib-count", type=int, default=32, help="INT8 calibration images (1-10000).")
@click.option(
    "--seconds",
    type=float,
    default=5.0,
    help="Timed seconds per case, more than 0 and at most 600 (within --min-runs/--max-runs).",
)
@click.option("--min-runs", type=int, default=5, help="Fewest timed runs per case (1-100000).")
@click.option("--max-runs", type=int, default=200, help="Most timed runs per case (1-100000).")
@click.option("--warmup", type=int, default=3, help="Untimed runs before timing (0-10000).")
@THREADS_OPTION
@CACHE_DIR_OPTION
@click.option(
    "--pipeline",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Also run this video through dav2-run's threaded pipeline for each case of the backends asked for: "
    "end-to-end FPS beside the standalone FPS, and host ms per frame (read, preprocess, postprocess, write).",
)
@click.option(
    "--pipeline-frames",
    type=int,
    default=300,
    show_default=True,
    help="Most frames of the --pipeline video per case (1 to 100000).",
)
@click.option(
    "--pipeline-output",
    type=click.Choice(["video", "none"]),
    default="video",
    show_default=True,
    help="What the pipeline's write stage does: a colour mp4 (as dav2-run --save depth.mp4), or nothing kept.",
)
@click.option(
    "--model",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Measure this dav2-export artifact as it is (its own input shape and format) instead of building "
    "artifacts: no PyTorch baseline, no accuracy columns; --sizes/--backends/--precisions/--images are not used.",
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
      dav2-bench --backends openvino --precisions int8 --sizes 308 --images photos/ --pipeline clip.mp4
      dav2-bench --model depth_anything_v2_vits_308x546_int8.xml --pipeline clip.mp4 --save results/
      dav2-bench compare benchmarks/results/*.json
    """
    if ctx.invoked_subcommand is not None:
        return
    from dav2.benchmarks.report import save as save_results
    from dav2.benchmarks.report import to_markdown
    from dav2.benchmarks.runner import BenchSettings, nothing_measured, run_bench

    if not options["sizes"]:
        raise Dav2Error("--sizes needs at least one size")
    check_timing_options(options)
    check_pipeline_options(options["pipeline"], options["pipeline_frames"])
    if options["model"]:
        sizes = []
    else:
        require_export_tools("dav2-bench")
        from dav2.export.context import checked_size

        sizes = [checked_size("sizes", size) for size in options.pop("sizes")]
    options.pop("sizes", None)
    command = " ".join(["dav2-bench", *sys.argv[1:]])
    settings = BenchSettings(sizes=sizes, cache_dir=Path(cache_dir), command=command, **options)
    document = run_bench(settings)
    reason = nothing_measured(document) if document["complete"] else None
    if reason:  # before saving: a table of failures must not replace an earlier result file
        raise Dav2Error(f"nothing was measured (every case failed); first: {reason}")
    markdown = to_markdown(document)
    if save:
        for path in save_results(document, Path(save)):
            console.info(f"saved {path}")
    click.echo(markdown)
    if not document["complete"]:
        from dav2.benchmarks.runner import interrupted_status

        sys.exit(interrupted_status(document))


# bounds of the timing options: a case never runs for more than MAX_SECONDS + its runs, and no
# option can ask for a loop that would not end (--min-runs 100000000) or that reads as no time (nan)
MAX_SECONDS = 600.0
MAX_RUNS = 100_000
MAX_WARMUP = 10_000


def check_timing_options(options: dict) -> None:
    """--seconds, --min-runs, --max-runs, --warmup, --eval-images, --calib-count in range, before any work."""
    check_number(options["seconds"], "--seconds", 0, MAX_SECONDS, low_open=True)
    check_number(options["min_runs"], "--min-runs", 1, MAX_RUNS)
    check_number(options["max_runs"], "--max-runs", 1, MAX_RUNS)
    check_number(options["warmup"], "--warmup", 0, MAX_WARMUP)
    check_number(options["eval_images"], "--eval-images", 1, 64)
    check_number(options["calib_count"], "--calib-count", 1, 10_000)
    if options["min_runs"] > options["max_runs"]:
        raise Dav2Error(f"--min-runs {options['min_runs']} is more than --max-runs {options['max_runs']}")


def check_pipeline_options(video: str | None, frames: int) -> None:
    """A --pipeline that is not a video, or a frame count out of range, is one error line before any work."""
    from dav2.benchmarks.pipeline import MAX_FRAMES
    from dav2.media import is_video

    check_number(frames, "--pipeline-frames", 1, MAX_FRAMES)
    if video is not None and not is_video(Path(video)):
        raise Dav2Error(f"--pipeline needs a video file (by its extension), not {video}")


@bench_main.command("compare")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@user_errors
def bench_compare(results):
    """Merge result files from several machines into one Markdown table."""
    from dav2.benchmarks.report import compare

    click.echo(compare([Path(p) for p in results]))


@bench_main.command("pick", context_settings=CONTEXT)
@ENCODER_AND_CHECKPOINT
@click.option(
    "--max-abs-rel",
    type=float,
    default=None,
    help="Accuracy budget: AbsRel against PyTorch FP32 on held-out photos (0.01 is about FP16's error). "
    "[default: dav2-export's default for each candidate's precision: fp16 0.01, int8 0.05, fp32 none]",
)
@click.option("--max-ms", type=float, default=None, help="Also require a median latency of at most this (ms).")
@click.option("--min-fps", type=float, default=None, help="Also require at least this many frames per second.")
@click.option("--sizes", default="518", callback=csv_option(int), help="Comma-separated square input sizes to try.")
@click.option(
    "--backends",
    default="onnxruntime,openvino,tensorrt",
    callback=csv_option(str, BackendName.values()),
    help="Backends to try (what is not installed here is skipped with the reason; PyTorch FP32 always runs as "
    "the baseline).",
)
@PRECISIONS_OPTION
@click.option(
    "--images",
    type=click.Path(exists=True),
    default=None,
    help="Real photos (folder or video): held-out ones for accuracy, the others for INT8 calibration and "
    "validation. [default: the sample scene only; INT8 for OpenVINO/TensorRT skipped]",
)
@click.option("--eval-images", type=int, default=4, show_default=True, help="Held-out images for AbsRel (1-64).")
@click.option("--calib-count", type=int, default=16, show_default=True, help="INT8 calibration images (1-1000).")
@click.option(
    "--int8-float",
    default=None,
    help="OpenVINO INT8 mixed-precision candidates: recipes separated by ';', each a comma-separated list of "
    "parts left in float (as dav2-export --int8-float); '' for none. "
    "[default: head;patch_embed,head;patch_embed,head,proj]",
)
@click.option(
    "--accuracy-control",
    is_flag=True,
    help="Also try OpenVINO INT8 made by NNCF's accuracy control to --max-abs-rel (slow: it ranks every "
    "quantized layer; about half an hour at 518 on 2 cores).",
)
@click.option("--seconds", type=float, default=3.0, show_default=True, help="Timed seconds per candidate (0.5-600).")
@click.option(
    "--quick",
    is_flag=True,
    help="A pick in minutes: the first of --sizes only, no INT8 mixed-precision or accuracy-control candidates, "
    "no ONNX Runtime FP16 without a GPU, 1 timed second, 1 warm-up run, 2 held-out and 8 calibration images "
    "per candidate, no split/throughput columns. The report lists what was left out.",
)
@THREADS_OPTION
@CACHE_DIR_OPTION
@click.option(
    "--output",
    type=click.Path(file_okay=False),
    default="models/picked",
    show_default=True,
    help="Folder for the chosen artifact (with its sidecar and weights), pick.md, pick.json and pick.png. A pick "
    "that installs nothing leaves those untouched and reports beside them: pick-failed.* (no candidate within "
    "the budget, exit 1) or pick-incomplete.* (interrupted: what was measured, exit 130/143).",
)
@click.option("--label", default=None, help="Machine name in the report. [default: GPU name, else CPU model and cores]")
@JSON_OPTION
@user_errors
def bench_pick(
    output, cache_dir, as_json, max_abs_rel, max_ms, min_fps, int8_float, accuracy_control, quick, **options
):
    """Measure the candidates and install the fastest artifact within an accuracy budget.

    Every backend x precision x size this machine runs is a candidate (built once and cached,
    as dav2-bench does), plus OpenVINO INT8 in mixed precision (parts left in float, see
    --int8-float). Each is timed (median latency and its p10-p90 spread, batch 1) and compared
    with PyTorch FP32 on held-out photos. The fastest one within the budget is copied into
    --output with a report of every candidate and why the faster ones were rejected; candidates
    within the budget whose p10-p90 overlaps the fastest one's are a tie, and the most accurate
    of them is chosen. Without --max-abs-rel each candidate is held to dav2-export's default
    budget for its precision.

    \b
    A pick that installs nothing never touches an earlier pick's files in --output:
      no candidate within the budget: pick-failed.md/.json/.png beside them, exit 1;
      interrupted (Ctrl-C, SIGTERM): pick-incomplete.md/.json/.png with what was measured,
      exit 130/143.
    A pick that installs a choice removes those two reports.

    \b
    Examples:
      dav2-bench pick --encoder vits --max-abs-rel 0.01 --images photos/
      dav2-bench pick --quick --images photos/
      dav2-bench pick --max-abs-rel 0.02 --max-ms 120 --sizes 392,518 --images photos/ --json
      dav2-bench pick --max-abs-rel 0.05 --backends openvino --precisions fp16,int8 --images clip.mp4
    """
    from dav2.benchmarks.discovery import Machine
    from dav2.benchmarks.pick import DEFAULT_INT8_RECIPES, Budget, apply_quick, parse_recipes
    from dav2.benchmarks.runner import BenchSettings

    require_export_tools("dav2-bench pick")
    from dav2.export.context import checked_size

    budget = Budget(
        check_number(max_abs_rel, "--max-abs-rel", 0, 1, low_open=True),
        check_number(max_ms, "--max-ms", 0, 1e6, low_open=True),
        check_number(min_fps, "--min-fps", 0, 1e6, low_open=True),
    )
    check_number(options["eval_images"], "--eval-images", 1, 64)
    check_number(options["calib_count"], "--calib-count", 1, 1000)
    check_number(options["seconds"], "--seconds", 0.5, 600)
    if not options["sizes"]:
        raise Dav2Error("--sizes needs at least one size")
    options["sizes"] = [checked_size("sizes", size) for size in options["sizes"]]
    settings = BenchSettings(
        cache_dir=Path(cache_dir),
        command=" ".join(["dav2-bench", *sys.argv[1:]]),
        int8_recipes=parse_recipes(
            DEFAULT_INT8_RECIPES if int8_float is None else int8_float, ENCODER_SPECS[options["encoder"]].depth
        ),
        controlled_int8=budget.abs_rel_limit("int8") if accuracy_control else None,
        **options,
    )
    left_out = apply_quick(settings, bool(Machine.here().gpus)) if quick else []
    pick(settings, budget, Path(output), as_json, left_out)


def pick(settings, budget, output: Path, as_json: bool, left_out: list[str] | None = None) -> None:
    """Run the candidates, judge them, install the winner, write and print the report.

    Only a complete run with a choice writes pick.* (after installing); a run that installs
    nothing reports in pick-failed.* or pick-incomplete.* beside them (picking.report_stem)."""
    import json

    from dav2.benchmarks import pick as picking
    from dav2.benchmarks.runner import interrupted_status, nothing_measured, run_bench

    document = run_bench(settings)
    if left_out:
        document["quick"] = left_out
    if document["complete"]:
        reason = nothing_measured(document)
        if reason:
            raise Dav2Error(f"no candidate was measured; first: {reason}")
    verdicts = picking.judge_all(document, budget)
    decision = picking.decide(verdicts)
    stem = picking.report_stem(document, decision)
    artifact = picking.install(decision.chosen, output) if stem == picking.PICK_STEM else None
    choice = picking.choice_record(document, decision.chosen, artifact, budget) if artifact else None
    text = picking.report(document, verdicts, decision, budget, output)
    written = picking.save(document, text, choice, output, stem)
    png = picking.plot_front(document, verdicts, decision, budget, output / f"{stem}.png")
    for path in [*written, *([png] if png else [])]:
        console.info(f"saved {path}")
    click.echo(text)
    if stem == picking.INCOMPLETE_STEM:
        console.warn(f"dav2-bench pick was interrupted: nothing installed; what was measured is in {written[1]}")
        sys.exit(interrupted_status(document))
    if stem == picking.FAILED_STEM:
        raise Dav2Error(f"no candidate meets {budget.describe()}: nothing installed; see {written[1]}")
    click.echo(f"installed {artifact}")
    if as_json:
        click.echo(json.dumps(choice))
