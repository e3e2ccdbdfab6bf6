"""dav2-bench: latency, throughput, memory and accuracy of every backend x precision x size.

The options come in groups (common.OptionGroup): the candidates (sizes, backends, precisions),
the images, the timing, the pipeline pass, the machine. `bench_settings` and `PickRequest`
parse them into the library's own records (benchmarks.runner.BenchSettings, pick.Budget),
whose fields are the options' defaults.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

import click

from dav2 import console
from dav2.benchmarks.discovery import BACKENDS
from dav2.benchmarks.pick import CANDIDATE_BACKENDS, DEFAULT_INT8_RECIPES, DEFAULT_SECONDS, QUICK, Budget
from dav2.benchmarks.pipeline import MAX_FRAMES, OUTPUTS
from dav2.benchmarks.runner import BenchSettings
from dav2.cli.common import (
    CONTEXT,
    ENCODER_AND_CHECKPOINT,
    JSON_OPTION,
    MAX_CALIB_COUNT,
    THREADS_OPTION,
    OptionGroup,
    check_number,
    csv_option,
    require_export_tools,
    user_errors,
)
from dav2.errors import Dav2Error
from dav2.export.gate import defaults_text
from dav2.vocabulary import DEFAULT_INPUT_SIZE, ENCODER_SPECS, BackendName, Precision

# bounds of the timing options: a case never runs for more than MAX_SECONDS + its runs, and no
# option can ask for a loop that would not end (--min-runs 100000000) or that reads as no time (nan)
MAX_SECONDS = 600.0
MAX_RUNS = 100_000
MAX_WARMUP = 10_000
MAX_HOLDOUT = 64
MIN_PICK_SECONDS = 0.5  # a pick ranks candidates by their spread, which needs several runs
DEFAULTS = BenchSettings()  # the options' defaults are the settings' own


def sizes_option(help_text: str) -> click.Option:
    return click.option("--sizes", default=str(DEFAULT_INPUT_SIZE), callback=csv_option(int), help=help_text)


def backends_option(default: tuple[str, ...], help_text: str) -> click.Option:
    return click.option(
        "--backends", default=",".join(default), callback=csv_option(str, BackendName.values()), help=help_text
    )


PRECISIONS_OPTION = click.option(
    "--precisions",
    default=",".join(DEFAULTS.precisions),
    callback=csv_option(str, Precision.values()),
    help="Precisions to try.",
)
CACHE_DIR_OPTION = click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=str(DEFAULTS.cache_dir),
    help="Where built artifacts are kept and reused (dav2-bench and dav2-bench pick share them).",
)
LABEL_OPTION = click.option(
    "--label", default=None, help="Machine name in tables. [default: GPU name, else CPU model and cores]"
)


def image_options(images_help: str, holdout_help: str) -> OptionGroup:
    """--images and how many of them are held out (--holdout, as in dav2-export) and calibrated on (--calib-count)."""
    return OptionGroup(
        click.option("--images", type=click.Path(exists=True), default=None, help=images_help),
        click.option(
            "--holdout",
            "--eval-images",
            "holdout",
            type=int,
            default=DEFAULTS.holdout,
            help=f"{holdout_help} (1-{MAX_HOLDOUT}; --eval-images is its old name).",
        ),
        click.option(
            "--calib-count",
            type=int,
            default=DEFAULTS.calib_count,
            help=f"INT8 calibration images (1-{MAX_CALIB_COUNT}).",
        ),
    )


TIMING_OPTIONS = OptionGroup(
    click.option(
        "--seconds",
        type=float,
        default=DEFAULTS.seconds,
        help=f"Timed seconds per case, more than 0 and at most {MAX_SECONDS:g} (within --min-runs/--max-runs).",
    ),
    click.option("--min-runs", type=int, default=DEFAULTS.min_runs, help=f"Fewest timed runs per case (1-{MAX_RUNS})."),
    click.option("--max-runs", type=int, default=DEFAULTS.max_runs, help=f"Most timed runs per case (1-{MAX_RUNS})."),
    click.option("--warmup", type=int, default=DEFAULTS.warmup, help=f"Untimed runs before timing (0-{MAX_WARMUP})."),
)
PIPELINE_OPTIONS = OptionGroup(
    click.option(
        "--pipeline",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Also run this video through dav2-run's threaded pipeline for each case of the backends asked for: "
        "end-to-end FPS beside the standalone FPS, and host ms per frame (read, preprocess, postprocess, write).",
    ),
    click.option(
        "--pipeline-frames",
        type=int,
        default=DEFAULTS.pipeline_frames,
        show_default=True,
        help=f"Most frames of the --pipeline video per case (1 to {MAX_FRAMES}).",
    ),
    click.option(
        "--pipeline-output",
        type=click.Choice(list(OUTPUTS)),
        default=DEFAULTS.pipeline_output,
        show_default=True,
        help="What the pipeline's write stage does: a colour mp4 (as dav2-run --save depth.mp4), or nothing kept.",
    ),
)
BENCH_OPTIONS = OptionGroup(
    ENCODER_AND_CHECKPOINT,
    sizes_option("Comma-separated square input sizes."),
    backends_option(
        tuple(backend.value for backend in BACKENDS),
        "Backends to try (what is not installed is skipped with the reason; torch FP32 always runs as the baseline).",
    ),
    PRECISIONS_OPTION,
    image_options(
        "Real photos (folder or video): held-out ones for accuracy and timing, the rest for INT8 calibration. "
        "[default: the sample scene; INT8 for OpenVINO/TensorRT skipped]",
        "Held-out images for the accuracy columns",
    ),
    TIMING_OPTIONS,
    THREADS_OPTION,
    CACHE_DIR_OPTION,
    PIPELINE_OPTIONS,
    click.option(
        "--model",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Measure this dav2-export artifact as it is (its own input shape and format) instead of building "
        "artifacts: no PyTorch baseline, no accuracy columns; --sizes/--backends/--precisions/--images are not used.",
    ),
    LABEL_OPTION,
)


def command_line() -> str:
    """The command as typed, recorded with the results."""
    return " ".join(["dav2-bench", *sys.argv[1:]])


def checked_sizes(sizes: list[int]) -> list[int]:
    """--sizes, each rounded to the patch size (said when it changes); one at least."""
    if not sizes:
        raise Dav2Error("--sizes needs at least one size")
    from dav2.export.context import checked_size

    return [checked_size("sizes", size) for size in sizes]


def check_images(holdout: int, calib_count: int) -> None:
    check_number(holdout, "--holdout", 1, MAX_HOLDOUT)
    check_number(calib_count, "--calib-count", 1, MAX_CALIB_COUNT)


def check_timing(seconds: float, min_runs: int, max_runs: int, warmup: int) -> None:
    """--seconds, --min-runs, --max-runs and --warmup in range, before any work."""
    check_number(seconds, "--seconds", 0, MAX_SECONDS, low_open=True)
    check_number(min_runs, "--min-runs", 1, MAX_RUNS)
    check_number(max_runs, "--max-runs", 1, MAX_RUNS)
    check_number(warmup, "--warmup", 0, MAX_WARMUP)
    if min_runs > max_runs:
        raise Dav2Error(f"--min-runs {min_runs} is more than --max-runs {max_runs}")


def check_pipeline_options(video: str | None, frames: int) -> None:
    """A --pipeline that is not a video, or a frame count out of range, is one error line before any work."""
    from dav2.media import is_video

    check_number(frames, "--pipeline-frames", 1, MAX_FRAMES)
    if video is not None and not is_video(Path(video)):
        raise Dav2Error(f"--pipeline needs a video file (by its extension), not {video}")


def bench_settings(values: dict) -> BenchSettings:
    """The run the options describe, every number checked before any work. --model measures one
    artifact as it is: no sizes, and no PyTorch or onnx needed to build anything."""
    sizes = values.pop("sizes")
    if not sizes:
        raise Dav2Error("--sizes needs at least one size")
    check_timing(**{name: values[name] for name in TIMING_OPTIONS.names})
    check_images(values["holdout"], values["calib_count"])
    check_pipeline_options(values["pipeline"], values["pipeline_frames"])
    if not values["model"]:
        require_export_tools("dav2-bench")
    sizes = [] if values["model"] else checked_sizes(sizes)
    cache_dir = Path(values.pop("cache_dir"))
    return BenchSettings(sizes=sizes, cache_dir=cache_dir, command=command_line(), **values)


@click.group(invoke_without_command=True, context_settings=CONTEXT)
@BENCH_OPTIONS
@click.option("--save", type=click.Path(file_okay=False), default=None, help="Folder for the JSON, Markdown (and PNG).")
@click.pass_context
@user_errors
def bench_main(ctx, save, **values):
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
    from dav2.benchmarks.report import to_markdown
    from dav2.benchmarks.runner import interrupted_status, nothing_measured, run_bench

    document = run_bench(bench_settings(values))
    reason = nothing_measured(document) if document["complete"] else None
    if reason:  # before saving: a table of failures must not replace an earlier result file
        raise Dav2Error(f"nothing was measured (every case failed); first: {reason}")
    markdown = to_markdown(document)
    if save:
        from dav2.benchmarks.report import save as save_results

        for path in save_results(document, Path(save)):
            console.info(f"saved {path}")
    click.echo(markdown)
    if not document["complete"]:
        sys.exit(interrupted_status(document))


@bench_main.command("compare")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@user_errors
def bench_compare(results):
    """Merge result files from several machines into one Markdown table."""
    from dav2.benchmarks.report import compare

    click.echo(compare([Path(p) for p in results]))


BUDGET_OPTIONS = OptionGroup(
    click.option(
        "--max-abs-rel",
        type=float,
        default=None,
        help="Accuracy budget: AbsRel against PyTorch FP32 on held-out photos (0.01 is about FP16's error). "
        f"[default: dav2-export's default for each candidate's precision: {defaults_text()}, fp32 none]",
    ),
    click.option("--max-ms", type=float, default=None, help="Also require a median latency of at most this (ms)."),
    click.option("--min-fps", type=float, default=None, help="Also require at least this many frames per second."),
)
INT8_CANDIDATE_OPTIONS = OptionGroup(
    click.option(
        "--int8-float",
        default=None,
        help="OpenVINO INT8 mixed-precision candidates: recipes separated by ';', each a comma-separated list of "
        "parts left in float (as dav2-export --int8-float); '' for none. "
        f"[default: {DEFAULT_INT8_RECIPES}]",
    ),
    click.option(
        "--accuracy-control",
        is_flag=True,
        help="Also try OpenVINO INT8 made by NNCF's accuracy control to --max-abs-rel (slow: it ranks every "
        "quantized layer; about half an hour at 518 on 2 cores).",
    ),
)
QUICK_OPTION = click.option(
    "--quick",
    is_flag=True,
    help="A pick in minutes: the first of --sizes only, no INT8 mixed-precision or accuracy-control candidates, "
    f"no ONNX Runtime FP16 without a GPU, {QUICK.seconds:g} timed second, {QUICK.warmup} warm-up run, "
    f"{QUICK.holdout} held-out and {QUICK.calib_count} calibration images per candidate, no split/throughput "
    "columns. The report lists what was left out.",
)
PICK_OPTIONS = OptionGroup(
    ENCODER_AND_CHECKPOINT,
    BUDGET_OPTIONS,
    sizes_option("Comma-separated square input sizes to try."),
    backends_option(
        CANDIDATE_BACKENDS,
        "Backends to try (what is not installed here is skipped with the reason; PyTorch FP32 always runs as "
        "the baseline).",
    ),
    PRECISIONS_OPTION,
    image_options(
        "Real photos (folder or video): held-out ones for accuracy, the others for INT8 calibration and "
        "validation. [default: the sample scene only; INT8 for OpenVINO/TensorRT skipped]",
        "Held-out images for AbsRel",
    ),
    INT8_CANDIDATE_OPTIONS,
    click.option(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        show_default=True,
        help=f"Timed seconds per candidate ({MIN_PICK_SECONDS:g}-{MAX_SECONDS:g}).",
    ),
    QUICK_OPTION,
    THREADS_OPTION,
    CACHE_DIR_OPTION,
    click.option(
        "--output",
        type=click.Path(file_okay=False),
        default="models/picked",
        show_default=True,
        help="Folder for the chosen artifact (with its sidecar and weights), pick.md, pick.json and pick.png. A "
        "pick that installs nothing leaves those untouched and reports beside them: pick-failed.* (no candidate "
        "within the budget, exit 1) or pick-incomplete.* (interrupted: what was measured, exit 130/143).",
    ),
    click.option(
        "--label", default=None, help="Machine name in the report. [default: GPU name, else CPU model and cores]"
    ),
    JSON_OPTION,
)


@dataclass(frozen=True)
class PickRequest:
    """What `dav2-bench pick` was asked: the candidates to measure, the budget, where to install."""

    settings: BenchSettings
    budget: Budget
    output: Path
    as_json: bool = False
    left_out: tuple[str, ...] = ()  # what --quick left out, for the report

    @classmethod
    def parse(cls, values: dict) -> "PickRequest":
        """From the command's keyword arguments (each number checked before any work)."""
        budget = parse_budget(**BUDGET_OPTIONS.take(values))
        check_images(values["holdout"], values["calib_count"])
        check_number(values["seconds"], "--seconds", MIN_PICK_SECONDS, MAX_SECONDS)
        output, as_json, quick = Path(values.pop("output")), values.pop("as_json"), values.pop("quick")
        int8_float, accuracy_control = (values.pop(name) for name in INT8_CANDIDATE_OPTIONS.names)
        settings = BenchSettings(
            sizes=checked_sizes(values.pop("sizes")),
            cache_dir=Path(values.pop("cache_dir")),
            command=command_line(),
            int8_recipes=int8_recipes(int8_float, values["encoder"]),
            controlled_int8=budget.abs_rel_limit("int8") if accuracy_control else None,
            **values,
        )
        return cls(settings, budget, output, as_json, tuple(apply_quick(settings)) if quick else ())


def parse_budget(max_abs_rel: float | None, max_ms: float | None, min_fps: float | None) -> Budget:
    return Budget(
        check_number(max_abs_rel, "--max-abs-rel", 0, 1, low_open=True),
        check_number(max_ms, "--max-ms", 0, 1e6, low_open=True),
        check_number(min_fps, "--min-fps", 0, 1e6, low_open=True),
    )


def int8_recipes(int8_float: str | None, encoder: str) -> tuple[tuple[str, ...], ...]:
    """--int8-float (or the default recipes), each group checked against the encoder's depth."""
    from dav2.benchmarks.pick import parse_recipes

    return parse_recipes(DEFAULT_INT8_RECIPES if int8_float is None else int8_float, ENCODER_SPECS[encoder].depth)


def apply_quick(settings: BenchSettings) -> list[str]:
    """--quick: cut the settings down (pick.apply_quick) for this machine; what was left out."""
    from dav2.benchmarks.discovery import Machine
    from dav2.benchmarks.pick import apply_quick as cut_down

    return cut_down(settings, bool(Machine.here().gpus))


@bench_main.command("pick", context_settings=CONTEXT)
@PICK_OPTIONS
@user_errors
def bench_pick(**values):
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
    require_export_tools("dav2-bench pick")
    request = PickRequest.parse(values)
    pick(request.settings, request.budget, request.output, request.as_json, list(request.left_out))


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
