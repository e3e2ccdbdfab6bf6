"""What dav2-bench does, in order.

1. Discover what this machine can run; plan the cases, and record what is skipped and why.
2. Prepare the inputs once per size: a real image for timing (or the sample scene) and the
   held-out images for accuracy, through the shared preprocessing.
3. For each case: build or reuse its artifact, then measure it in a child process. PyTorch
   eager FP32 runs first at each size: it is the speed-up baseline and writes the FP32
   references the accuracy columns compare against. With --pipeline VIDEO the child also runs
   the video through dav2-run's threaded pipeline (the backends asked for; not the implicit
   torch baseline), so end-to-end FPS stands next to the standalone FPS.
4. Ctrl-C (or SIGTERM) stops the run and keeps every case already measured; the document
   says how many were planned and which signal stopped it.
"""

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dav2 import console, processing
from dav2.benchmarks.artifacts import artifact_mb, build_artifact
from dav2.benchmarks.discovery import BACKENDS, PRECISIONS, Case, Machine, plan
from dav2.benchmarks.machine import machine_record
from dav2.benchmarks.pipeline import DEFAULT_FRAMES
from dav2.benchmarks.spec import CaseSpec, PipelineRequest
from dav2.calibration.dataset import DEFAULT_COUNT, DEFAULT_HOLDOUT, DEFAULT_VALIDATION, CalibrationSet
from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata
from dav2.vocabulary import DEFAULT_INPUT_SIZE, BackendName, Precision

SCHEMA_VERSION = 1
CASE_TIMEOUT_S = 1800
# The child runs benchmarks.case without the working directory on its import path. `python -m`
# (and `-c`) put it first, so a folder named `dav2` there (the clone, when a command starts in the
# folder that holds it) is imported as a namespace package before an editable install's finder is
# asked, and the child fails with "No module named dav2.benchmarks.case". `-P` would do this but
# needs Python 3.11; the code below does it on 3.10 too: `-c` puts '' first unless -P/PYTHONSAFEPATH
# is in force. The child keeps the working directory, so relative paths in its spec still hold.
CASE_CHILD = (
    "import sys; "
    "getattr(sys.flags, 'safe_path', False) or sys.path.pop(0); "
    "from dav2.benchmarks.case import main; main()"
)


def case_command(spec_path: Path) -> list[str]:
    """The child process that measures one case: this Python, importing the installed dav2
    whatever the working directory holds."""
    return [sys.executable, "-c", CASE_CHILD, str(spec_path)]


@dataclass
class BenchSettings:
    """What one dav2-bench (or dav2-bench pick) run measures and how; the CLI's options default
    to these fields."""

    encoder: str = "vits"
    checkpoint: str | None = None
    sizes: list[int] = field(default_factory=lambda: [DEFAULT_INPUT_SIZE])
    backends: list[str] = field(default_factory=lambda: [backend.value for backend in BACKENDS])
    precisions: list[str] = field(default_factory=lambda: list(Precision.values()))
    images: str | None = None
    holdout: int = DEFAULT_HOLDOUT  # held out of calibration: the accuracy columns' images
    calib_count: int = DEFAULT_COUNT
    seconds: float = 5.0
    min_runs: int = 5
    max_runs: int = 200
    warmup: int = 3
    threads: int = 0
    cache_dir: Path = Path.home() / ".cache" / "dav2" / "bench"
    label: str | None = None
    command: str | None = None  # the command line, recorded with the results
    pipeline: str | None = None  # --pipeline VIDEO: also time dav2-run's pipeline on it
    pipeline_frames: int = DEFAULT_FRAMES  # at most this many frames of it
    pipeline_output: str = "video"  # a key of benchmarks.pipeline.OUTPUTS: what the write stage does
    model: str | None = None  # --model ARTIFACT: measure this artifact as it is (no export, no baseline)
    int8_recipes: tuple[tuple[str, ...], ...] = ()  # also OpenVINO INT8 with these groups in float (pick)
    controlled_int8: float | None = None  # also OpenVINO INT8 with accuracy control to this AbsRel (pick)
    details: bool = True  # the split and throughput columns (pick --quick leaves them out)
    left_out: tuple[tuple[str, str, str], ...] = ()  # (backend, precision, reason): planned, not run (pick --quick)

    def public(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


def prepare_inputs(settings: BenchSettings, work: Path) -> tuple[str, str | None]:
    """Write timing_<size>.npy and input_<size>_<i>.npy; return (timing image, calibration hash)."""
    calibration_sha = None
    if settings.images:
        # the same draw as the exports' (a video's frames depend on how many are drawn)
        validation = DEFAULT_VALIDATION if settings.controlled_int8 is not None else 0
        calib = CalibrationSet(
            settings.images,
            (settings.sizes[0], settings.sizes[0]),
            settings.calib_count,
            settings.holdout,
            validation=validation,
        )
        calibration_sha = calib.identity()["sha256"]
        holdout_pairs = calib.holdout_images()
        timing_image_name = str(Path(settings.images) / calib.holdout[0].name) if calib.holdout else "sample"
    else:
        from dav2.sample import render_sample

        holdout_pairs = [("sample", render_sample()[0])]
        timing_image_name = "sample"
    for size in settings.sizes:
        for index, (_name, image) in enumerate(holdout_pairs):
            np.save(work / f"input_{size}_{index}.npy", processing.preprocess(image, fixed_hw=(size, size)))
        np.save(work / f"timing_{size}.npy", np.load(work / f"input_{size}_0.npy"))
    return timing_image_name, calibration_sha


def run_child(spec: CaseSpec, work: Path) -> dict:
    """Measure one case in its own process (benchmarks.case); its row's measured columns."""
    spec_path = spec.write(work)
    process = subprocess.Popen(
        case_command(spec_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=CASE_TIMEOUT_S)
    except BaseException:
        process.kill()
        process.wait()
        raise
    if process.returncode != 0:
        last = [line for line in err.strip().splitlines() if line.strip()]
        raise Dav2Error(last[-1] if last else f"the case exited with status {process.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def checkpoint_for(settings: BenchSettings) -> tuple[str, str]:
    from dav2.models.checkpoint import resolve_checkpoint, sha256_file
    from dav2.models.registry import checkpoint_info

    path = resolve_checkpoint(checkpoint_info(settings.encoder, "relative", None), settings.checkpoint)
    return str(path), sha256_file(path)


def run_bench(settings: BenchSettings, machine: Machine | None = None) -> dict:
    """Measure every runnable case; return the result document (see report.py for its schema)."""
    machine = machine or Machine.here()
    if settings.model:
        return run_artifact_bench(settings, machine)
    backends = list(settings.backends)
    if "torch" not in backends and machine.has("torch"):
        backends.insert(0, "torch")  # the baseline and the accuracy reference are always measured
    cases, skipped = plan(
        machine,
        backends,
        settings.precisions,
        settings.sizes,
        bool(settings.images),
        settings.int8_recipes,
        settings.controlled_int8,
    )
    cases, skipped = leave_out(cases, skipped, settings.left_out)
    cases = with_baseline(cases, settings.sizes, machine)
    result = {
        "schema": SCHEMA_VERSION,
        "machine": machine_record(machine, settings.threads, settings.label, settings.command),
        "settings": settings.public(),
        "baseline": baseline_name(machine),
        "cases": [skipped_row(case, reason) for case, reason in skipped],
        "planned": len(cases),
        "complete": False,
    }
    for case, reason in skipped:
        console.info(f"skipping {case.label}: {reason}")
    checkpoint, digest = checkpoint_for(settings)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dav2-bench-") as tmp:
        work = Path(tmp)
        timing_image, calibration_sha = prepare_inputs(settings, work)
        try:
            for number, case in enumerate(cases, 1):
                console.info(f"[{number}/{len(cases)}] {case.label}")
                row = measure(case, settings, machine, checkpoint, digest, work, timing_image, calibration_sha)
                result["cases"].append(row)
                console.info(f"  {summary_line(row)}")
            result["complete"] = True
        except KeyboardInterrupt as stop:
            result["interrupted_by"] = interruption(stop)
            console.warn("interrupted: keeping the cases measured so far")
    add_speedups(result["cases"])
    result["cases"].sort(key=case_order)
    return result


def leave_out(
    cases: list[Case], skipped: list[tuple[Case, str]], left_out: tuple[tuple[str, str, str], ...]
) -> tuple[list[Case], list[tuple[Case, str]]]:
    """Move the cases of the (backend, precision) pairs in `left_out` to the skipped ones, with their reason."""
    reasons = {(backend, precision): reason for backend, precision, reason in left_out}
    kept = [case for case in cases if (case.backend, case.precision) not in reasons]
    dropped = [(case, reasons[(case.backend, case.precision)]) for case in cases if case not in kept]
    return kept, skipped + dropped


def interruption(stop: KeyboardInterrupt) -> str:
    """SIGINT (Ctrl-C), or the signal the CLI raised the interrupt for (SIGTERM: cli.common.Terminated)."""
    return getattr(stop, "signal_name", "SIGINT")


def interrupted_status(document: dict) -> int:
    """The exit status an interrupted run ends with, as shells report the signal: 130 or 143."""
    return 143 if document.get("interrupted_by") == "SIGTERM" else 130


def with_baseline(cases: list[Case], sizes: list[int], machine: Machine) -> list[Case]:
    """`cases` with PyTorch FP32 first at every size, even when --precisions leaves fp32 out:
    it is the speed-up baseline and writes the references every accuracy column needs."""
    if not machine.has(BackendName.TORCH):
        return cases
    planned = set(cases)
    baselines = [Case(BackendName.TORCH.value, Precision.FP32.value, size) for size in sizes]
    return [case for case in baselines if case not in planned] + cases


def artifact_case(path: Path) -> Case:
    """The case an existing artifact is: its backend, precision and short side, from its sidecar."""
    from dav2.runtime.backends import backend_for

    metadata = ArtifactMetadata.read(path)
    if metadata is None:
        raise Dav2Error(f"{path.name} has no dav2 sidecar ({path.name}.json): --model measures dav2-export artifacts")
    size = min(metadata.fixed_hw) if metadata.fixed_hw else metadata.default_input_size
    return Case(backend_for(path, metadata).value, metadata.precision or Precision.FP32, size)


def run_artifact_bench(settings: BenchSettings, machine: Machine) -> dict:
    """dav2-bench --model ARTIFACT: one case, the artifact as it is (its own input shape and
    format), timed on the --pipeline video's first frame (else the sample scene); no export,
    no PyTorch baseline, no accuracy columns (there are no references to compare with)."""
    artifact = Path(settings.model)
    case = artifact_case(artifact)
    settings.backends = [case.backend]  # the pipeline pass is for this case
    settings.encoder = ArtifactMetadata.read(artifact).encoder or "unknown encoder"
    result = {
        "schema": SCHEMA_VERSION,
        "machine": machine_record(machine, settings.threads, settings.label, settings.command),
        "settings": settings.public(),
        "cases": [],
        "complete": False,
    }
    row = {"backend": case.backend, "precision": case.precision, "size": case.size, "status": "ok"}
    with tempfile.TemporaryDirectory(prefix="dav2-bench-") as tmp:
        spec = case_spec(case, settings, artifact, "cpu", settings.pipeline or "sample", Path(tmp), False)
        spec = dataclasses.replace(spec, own_input=True, image_is_video=settings.pipeline is not None)
        try:
            console.info(f"[1/1] {case.label} ({artifact.name})")
            start = time.perf_counter()
            row.update(run_child(spec, Path(tmp)))
            row.update(artifact_fields(artifact, None, True, time.perf_counter() - start))
            console.info(f"  {summary_line(row)}")
            result["complete"] = True
        except Dav2Error as exc:
            row.update({"status": "failed", "reason": str(exc)})
        except KeyboardInterrupt as stop:
            result["interrupted_by"] = interruption(stop)
            console.warn("interrupted")
            return result
    result["cases"].append(row)
    return result


def case_spec(
    case: Case, settings: BenchSettings, artifact: Path, device: str, image: str, work: Path, writes_reference: bool
) -> CaseSpec:
    """What the child process (benchmarks.case) needs to measure one case."""
    return CaseSpec(
        case=case,
        artifact=str(artifact),
        device=device,
        threads=settings.threads,
        image=image,
        work_dir=str(work),
        writes_reference=writes_reference,
        seconds=settings.seconds,
        min_runs=settings.min_runs,
        max_runs=settings.max_runs,
        warmup=settings.warmup,
        pipeline=pipeline_request(case, settings),
        details=settings.details,
    )


def artifact_fields(artifact: Path, build_s: float | None, reused: bool, wall_s: float) -> dict:
    return {
        "artifact": artifact.name,
        "artifact_path": str(artifact),
        "artifact_mb": artifact_mb(artifact),
        "build_s": build_s,
        "artifact_reused": reused,
        "case_wall_s": wall_s,
    }


def nothing_measured(document: dict) -> str | None:
    """Why a finished run measured no case (the first failure's or skip's reason), or None
    when at least one case was measured: a table of failures is not a benchmark, and a
    script must be able to tell from the exit status."""
    rows = document["cases"]
    if any(row["status"] == "ok" for row in rows):
        return None
    failed = [row for row in rows if row["status"] == "failed"] or rows
    if not failed:
        return "no case could be planned"
    first = failed[0]
    return f"{first['backend']} {first['precision']} {first['size']}: {first['reason']}"


def case_order(row: dict) -> tuple:
    """Rows by size, then backend and precision in the documented order (skipped ones in place)."""
    return (row["size"], BACKENDS.index(row["backend"]), PRECISIONS.index(row["precision"]), row.get("recipe", ""))


def baseline_name(machine: Machine) -> str:
    """Which PyTorch the speed-ups are against (upstream's own module is slower on CPUs:
    benchmarks/pytorch_modules.py measures both)."""
    device = "CUDA" if machine.gpus else "CPU"
    return f"dav2's DepthAnythingV2 module (dav2.models.dpt), PyTorch eager FP32 on the {device}"


def case_row(case: Case, status: str = "ok") -> dict:
    row = {"backend": case.backend, "precision": case.precision, "size": case.size, "status": status}
    if case.recipe:
        row["recipe"] = case.recipe
    return row


def measure(case: Case, settings, machine, checkpoint, digest, work, timing_image, calibration_sha) -> dict:
    row = case_row(case)
    try:
        if case.backend == "torch":
            artifact, build_s, reused = Path(checkpoint), 0.0, True
        else:
            artifact, build_s, reused = build_artifact(
                case, checkpoint, digest, settings.encoder, machine, settings.cache_dir, settings.images,
                settings.calib_count, settings.holdout, calibration_sha,
            )  # fmt: skip
        device = "cuda" if case.backend == "torch" and machine.gpus else "cpu"
        writes_reference = case.backend == BackendName.TORCH and case.precision == Precision.FP32
        spec = case_spec(case, settings, artifact, device, timing_image, work, writes_reference)
        start = time.perf_counter()
        measured = run_child(spec, work)
        row.update(measured)
        row.update(artifact_fields(artifact, build_s, reused, time.perf_counter() - start))
    except Dav2Error as exc:
        row.update({"status": "failed", "reason": str(exc)})
    return row


def pipeline_request(case: Case, settings: BenchSettings) -> PipelineRequest | None:
    """What the child needs for a pipeline pass, for the backends the user asked for."""
    if settings.pipeline is None or case.backend not in settings.backends:
        return None
    return PipelineRequest(settings.pipeline, settings.pipeline_frames, settings.pipeline_output)


def skipped_row(case: Case, reason: str) -> dict:
    return {**case_row(case, "skipped"), "reason": reason}


def add_speedups(rows: list[dict]) -> None:
    """speedup = PyTorch eager FP32 median / this case's median, at the same size."""
    baseline = {
        r["size"]: r["latency_ms"]["median"]
        for r in rows
        if r["status"] == "ok" and r["backend"] == BackendName.TORCH and r["precision"] == Precision.FP32
    }
    for row in rows:
        if row["status"] == "ok" and row["size"] in baseline:
            row["speedup"] = baseline[row["size"]] / row["latency_ms"]["median"]


def summary_line(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['status']}: {row['reason']}"
    acc = row.get("accuracy")
    accuracy_text = f", AbsRel {acc['abs_rel']:.4f}, δ1 {acc['delta1']:.4f}" if acc else ""
    return f"median {row['latency_ms']['median']:.1f} ms ({row['fps']:.1f} FPS){accuracy_text}{pipeline_text(row)}"


def pipeline_text(row: dict) -> str:
    measured = row.get("pipeline") or {}
    if measured.get("skipped"):
        return f"; pipeline skipped: {measured['skipped']}"
    if not measured.get("end_to_end_fps"):
        return ""
    ratio = measured.get("ratio_to_standalone")
    share = f" ({100 * ratio:.0f}% of standalone)" if ratio else ""
    return (
        f"; pipeline {measured['end_to_end_fps']:.2f} FPS end-to-end{share}, "
        f"host {measured['host_ms_per_frame']:.1f} ms/frame"
    )
