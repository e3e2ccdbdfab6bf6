"""dav2-bench pick: the fastest artifact this machine runs within an accuracy budget.

Users have a frame-rate target and an accuracy budget, not an afternoon to try every backend,
precision, size and INT8 recipe. `pick` runs the benchmark over the candidates (the same
runner, cache and measurements as dav2-bench, so a second pick reuses every artifact), judges
every measured case against the budget, and installs the fastest one that meets it:

- accuracy: AbsRel against PyTorch FP32 on the held-out photos of the same run (never the
  calibration or validation ones), at most `--max-abs-rel`, or without it the budget
  dav2-export holds that precision to (default_budget);
- speed: the median batch-1 latency, optionally at most `--max-ms` or at least `--min-fps`.

Medians are noisy: candidates within the budget whose p10-p90 latency ranges overlap the
fastest one's are a tie, and the most accurate of them is chosen (decide).

The winner is copied with its sidecar and weights into the output folder, beside a report
(pick.md: the candidates table, the choice, why each faster candidate was rejected), the
result document (pick.json) and the speed/accuracy front (pick.png, with the budget line).
A pick that installs nothing (no candidate within the budget, or interrupted) leaves an
earlier pick's files as they are and reports beside them (pick-failed.*, pick-incomplete.*).
The PyTorch baseline (dav2's own module, eager FP32) is a candidate too but never installed:
it is a checkpoint, not an artifact.
"""

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dav2.benchmarks.discovery import BACKENDS
from dav2.benchmarks.report import FLOORED_MARKER, draw_floor, fit_abs_rel_axis, plotted_abs_rel
from dav2.benchmarks.stats import spread, within_noise
from dav2.errors import Dav2Error
from dav2.export.gate import AccuracyGate
from dav2.files import atomic_path, atomic_write_text, move_into_place
from dav2.jsonfile import read_json
from dav2.metadata import ArtifactMetadata, sidecar_path
from dav2.vocabulary import BackendName, Precision

PICK_STEM, FAILED_STEM, INCOMPLETE_STEM = "pick", "pick-failed", "pick-incomplete"
REPORT, DOCUMENT, PLOT = f"{PICK_STEM}.md", f"{PICK_STEM}.json", f"{PICK_STEM}.png"
# OpenVINO INT8 mixed-precision candidates: the groups left in float, from the measured error
# sources (benchmarks/results/amd-epyc-2-cores-int8-error-sources.md): the DPT head is the
# largest, then the attention output projections (proj) and the patch embedding; the attention
# MatMuls, qkv and the MLPs cost little
DEFAULT_INT8_RECIPES = "head;patch_embed,head;patch_embed,head,proj"
# the backends a pick tries unless told: PyTorch runs anyway, as the baseline and the reference
CANDIDATE_BACKENDS = tuple(backend.value for backend in BACKENDS if backend != BackendName.TORCH)
DEFAULT_SECONDS = 3.0  # timed seconds per candidate (dav2-bench's 5 are for its tables; a pick times many)


def parse_recipes(text: str, blocks: int) -> tuple[tuple[str, ...], ...]:
    """'head;patch_embed,head' -> (("head",), ("patch_embed", "head")), each group checked
    (`blocks`: the encoder's depth)."""
    from dav2.calibration.nncf import check_float_groups

    recipes = []
    for part in text.split(";"):
        groups = tuple(check_float_groups([g.strip() for g in part.split(",") if g.strip()], blocks))
        if groups and groups not in recipes:
            recipes.append(groups)
    return tuple(recipes)


def default_budget(precision: str) -> float | None:
    """The AbsRel budget a candidate of this precision is held to when the user gives none:
    the one dav2-export holds its artifacts to, so pick never installs a reduced-precision
    artifact that export itself would refuse. None: no default limit (FP32 reproduces PyTorch)."""
    return AccuracyGate().budget(precision)


@dataclass(frozen=True)
class QuickLimits:
    """What --quick keeps: a pick in minutes instead of most of an hour on a small CPU."""

    seconds: float = 1.0  # timed seconds per candidate (at least min_runs runs still)
    warmup: int = 1
    holdout: int = 2
    calib_count: int = 8


QUICK = QuickLimits()


QUICK_ORT_FP16 = "--quick: ONNX Runtime FP16 without a GPU (on the CPU it runs no faster than FP32)"


def apply_quick(settings, has_gpu: bool, limits: QuickLimits = QUICK) -> list[str]:
    """Cut `settings` (a runner.BenchSettings) down for --quick; return what was left out, for the report."""
    skipped = []
    ort_fp16 = (BackendName.ONNXRUNTIME.value, Precision.FP16.value)
    if not has_gpu and ort_fp16[0] in settings.backends and ort_fp16[1] in settings.precisions:
        skipped.append(QUICK_ORT_FP16.removeprefix("--quick: "))
        settings.left_out = (*settings.left_out, (*ort_fp16, QUICK_ORT_FP16))
    if len(settings.sizes) > 1:
        skipped.append(f"sizes {', '.join(map(str, settings.sizes[1:]))} (only the first of --sizes is tried)")
        settings.sizes = settings.sizes[:1]
    if settings.int8_recipes:
        names = "; ".join("+".join(groups) for groups in settings.int8_recipes)
        skipped.append(f"the OpenVINO INT8 mixed-precision candidates (float: {names})")
        settings.int8_recipes = ()
    if settings.controlled_int8 is not None:
        skipped.append("OpenVINO INT8 with accuracy control")
        settings.controlled_int8 = None
    for name, what in (("seconds", "timed seconds per candidate"), ("warmup", "warm-up runs"),
                       ("holdout", "held-out images"), ("calib_count", "calibration images")):  # fmt: skip
        wanted, kept = getattr(settings, name), getattr(limits, name)
        if wanted > kept:
            skipped.append(f"{what} {wanted:g} cut to {kept:g}")
            setattr(settings, name, kept)
    settings.details = False
    skipped.append("the split and throughput columns")
    return skipped


@dataclass(frozen=True)
class Budget:
    """What the chosen artifact must meet."""

    max_abs_rel: float | None = None  # None: each candidate's default_budget(precision)
    max_ms: float | None = None
    min_fps: float | None = None

    def abs_rel_limit(self, precision: str) -> float | None:
        """The AbsRel a candidate of this precision must not exceed (None: no limit)."""
        return self.max_abs_rel if self.max_abs_rel is not None else default_budget(precision)

    def describe(self) -> str:
        if self.max_abs_rel is not None:
            parts = [f"AbsRel ≤ {self.max_abs_rel:g}"]
        else:
            defaults = ", ".join(f"{p} ≤ {default_budget(p):g}" for p in Precision.values() if default_budget(p))
            parts = [f"AbsRel ≤ dav2-export's default for the precision ({defaults})"]
        if self.max_ms is not None:
            parts.append(f"median ≤ {self.max_ms:g} ms")
        if self.min_fps is not None:
            parts.append(f"≥ {self.min_fps:g} FPS")
        return ", ".join(parts)

    def record(self) -> dict:
        """pick.json's `budget`: as given, and the AbsRel limits applied per precision."""
        limits = {p: self.abs_rel_limit(p) for p in Precision.values()}
        return {"max_abs_rel": self.max_abs_rel, "max_ms": self.max_ms, "min_fps": self.min_fps, "abs_rel": limits}


@dataclass
class Verdict:
    """One candidate, judged."""

    row: dict  # the benchmark's case row
    meets: bool
    why: str  # what it misses ("AbsRel 0.041 > 0.01"), or "" when it meets the budget

    @property
    def label(self) -> str:
        return case_label(self.row)

    @property
    def median_ms(self) -> float:
        return self.row["latency_ms"]["median"]

    @property
    def abs_rel(self) -> float:
        return self.row["accuracy"]["abs_rel"]


def case_label(row: dict) -> str:
    recipe = f" ({row['recipe']})" if row.get("recipe") else ""
    return f"{row['backend']} {row['precision']} {row['size']}{recipe}"


def judge(row: dict, budget: Budget) -> Verdict:
    """Whether a measured case meets the budget, and if not, why."""
    misses = []
    accuracy = row.get("accuracy")
    limit = budget.abs_rel_limit(row["precision"])
    if accuracy is None:
        misses.append("no accuracy measured")
    elif limit is not None and not accuracy["abs_rel"] <= limit:
        misses.append(f"AbsRel {accuracy['abs_rel']:.4f} > {limit:g}")
    elif accuracy["abs_rel"] != accuracy["abs_rel"]:
        misses.append("AbsRel is NaN")
    median = row["latency_ms"]["median"]
    if budget.max_ms is not None and median > budget.max_ms:
        misses.append(f"{median:.1f} ms > {budget.max_ms:g} ms")
    if budget.min_fps is not None and row["fps"] < budget.min_fps:
        misses.append(f"{row['fps']:.2f} FPS < {budget.min_fps:g} FPS")
    return Verdict(row, not misses, "; ".join(misses))


def judge_all(document: dict, budget: Budget) -> list[Verdict]:
    """Every measured case, fastest first."""
    rows = [row for row in document["cases"] if row["status"] == "ok"]
    return sorted((judge(row, budget) for row in rows), key=lambda verdict: verdict.median_ms)


@dataclass
class Decision:
    """The choice, and the tie it may have been: candidates within the budget whose p10-p90
    latency ranges overlap the fastest one's are not told apart by their medians, so the most
    accurate of them is chosen."""

    chosen: Verdict
    fastest: Verdict  # the fastest median within the budget
    tied: list[Verdict]  # within the budget and the noise of the fastest (itself included), fastest first

    @property
    def is_tie(self) -> bool:
        return len(self.tied) > 1


def decide(verdicts: list[Verdict]) -> Decision | None:
    """Among the artifacts within the budget (the PyTorch baseline is a checkpoint, never
    installed): the most accurate of those within the noise of the fastest."""
    eligible = [v for v in verdicts if v.meets and v.row["backend"] != BackendName.TORCH]
    if not eligible:
        return None
    fastest = eligible[0]
    tied = [v for v in eligible if within_noise(v.row["latency_ms"], fastest.row["latency_ms"])]
    chosen = min(tied, key=lambda v: (v.abs_rel, v.median_ms))
    return Decision(chosen, fastest, tied)


def choose(verdicts: list[Verdict]) -> Verdict | None:
    """The candidate decide() installs, or None."""
    decision = decide(verdicts)
    return decision.chosen if decision else None


def artifact_files(artifact: Path) -> list[Path]:
    """An artifact's weights file, sidecar and itself, in the order they are put in place."""
    metadata = ArtifactMetadata.read(artifact) if sidecar_path(artifact).is_file() else None
    files = [artifact.with_name(metadata.weights_file)] if metadata and metadata.weights_file else []
    return files + [sidecar_path(artifact), artifact]


def previous_choice(output: Path) -> list[Path]:
    """The files of the artifact an earlier pick installed in `output` (from its pick.json)."""
    try:
        document = read_json(output / DOCUMENT, "pick report") if (output / DOCUMENT).exists() else {}
    except Dav2Error:  # an unreadable report names no earlier choice
        return []
    choice = document.get("choice") if isinstance(document, dict) else None
    artifact = choice.get("artifact") if isinstance(choice, dict) else None
    name = Path(artifact).name if isinstance(artifact, str) else ""
    return artifact_files(output / name) if name and (output / name).is_file() else []


def install(verdict: Verdict, output: Path) -> Path:
    """Copy the chosen artifact, its weights and its sidecar into `output` (the artifact last,
    each file whole: copied to a temporary folder beside it, then moved into place), then
    remove the artifact an earlier pick installed there, so the folder holds one choice."""
    source = Path(verdict.row["artifact_path"])
    files = artifact_files(source)
    output.mkdir(parents=True, exist_ok=True)
    earlier = previous_choice(output)
    with tempfile.TemporaryDirectory(dir=output, prefix=".pick-") as tmp:
        copies = []
        for file in files:
            if not file.is_file():
                raise Dav2Error(f"the cached artifact lacks {file.name}; delete {source.parent} and run again")
            copies.append(Path(shutil.copy2(file, Path(tmp) / file.name)))
        placed = move_into_place(copies, output)
    for file in earlier:
        if file not in placed:
            file.unlink(missing_ok=True)
    return placed[-1]


def choice_record(document: dict, chosen: Verdict, artifact: Path, budget: Budget) -> dict:
    """What --json prints and pick.json's `choice` holds."""
    row = chosen.row
    speedup = row.get("speedup")  # runner.add_speedups: PyTorch FP32's median / this one's, same size
    p10, p90 = spread(row["latency_ms"])
    return {
        "artifact": str(artifact),
        "backend": row["backend"],
        "precision": row["precision"],
        "size": row["size"],
        "recipe": row.get("recipe"),
        "abs_rel": chosen.abs_rel,
        "median_ms": chosen.median_ms,
        "p10_ms": p10,
        "p90_ms": p90,
        "fps": row["fps"],
        "speedup": speedup,
        "baseline": document.get("baseline"),
        "baseline_ms": speedup * chosen.median_ms if speedup else None,
        "budget": budget.record(),
    }


def outcome_lines(document: dict, decision: Decision | None, output: Path) -> list[str]:
    """The report's verdict: chosen, nothing within the budget, or interrupted."""
    if not document.get("complete", True):
        measured = sum(1 for row in document["cases"] if row["status"] != "skipped")
        lines = [
            f"**Incomplete**: interrupted ({document.get('interrupted_by', 'SIGINT')}) after {measured} of "
            f"{document.get('planned', measured)} candidate(s); nothing installed, and {output / REPORT} with "
            "its artifact (if any) is unchanged."
        ]
        if decision:
            lines.append(f"Among those measured, the choice would be {decision.chosen.label} (not installed).")
        return lines
    if decision is None:
        return [f"**No candidate meets the budget**: nothing installed; {output / REPORT} with its artifact (if any) "
                "is unchanged."]  # fmt: skip
    chosen = decision.chosen
    p10, p90 = spread(chosen.row["latency_ms"])
    lines = [
        f"**Chosen: {chosen.label}**, {chosen.median_ms:.1f} ms (p10-p90 {p10:.1f}-{p90:.1f}, "
        f"{chosen.row['fps']:.2f} FPS), AbsRel {chosen.abs_rel:.4f}."
    ]
    if decision.is_tie:
        others = ", ".join(v.label for v in decision.tied if v is not decision.fastest)
        if chosen is decision.fastest:
            lines.append(
                f"Tie within noise: the p10-p90 latency range of {others} overlaps the chosen one's (each within "
                "the budget); the chosen one is also the most accurate of them."
            )
        else:
            lines.append(
                f"Tie within noise: {decision.fastest.label} has the fastest median, but the p10-p90 latency range "
                f"of {others} overlaps its own (each within the budget), so the order of their medians is noise; "
                "the most accurate of them is chosen."
            )
    return lines


def report(
    document: dict,
    verdicts: list[Verdict],
    decision: Decision | None,
    budget: Budget,
    output: Path,
) -> str:
    """pick.md (or pick-failed.md, pick-incomplete.md): the budget, the outcome, and every
    candidate with its spread and why it was or was not taken."""
    lines = [f"# dav2-bench pick: {budget.describe()}", "", f"Command: `{document['machine']['command']}`", ""]
    lines.append(f"Machine: {document['machine']['label']}. Baseline: {document.get('baseline', 'PyTorch FP32')}.")
    images = max((v.row["accuracy"]["images"] for v in verdicts if v.row.get("accuracy")), default=0)
    lines.append(
        f"AbsRel: against PyTorch FP32 on {images} held-out image(s), never calibrated on"
        + (" (the sample scene only: pass --images for a real measurement)." if images <= 1 else ".")
    )
    lines.append(
        "Latency: median of batch-1 runs, p10-p90 their spread; candidates within the budget whose p10-p90 "
        "overlaps the fastest one's are a tie, broken by accuracy."
    )
    quick = document.get("quick")
    if quick:
        lines += ["", "Quick mode (--quick) left out: " + "; ".join(quick) + "."]
    lines += ["", *outcome_lines(document, decision, output)]
    header = "| candidate | median ms | p10-p90 ms | FPS | vs PyTorch | AbsRel | verdict |"
    lines += ["", header, "|---|---|---|---|---|---|---|"]
    for verdict in verdicts:
        lines.append(verdict_cells(verdict, decision, document.get("complete", True)))
    for row in document["cases"]:
        if row["status"] != "ok":
            lines.append(f"| {case_label(row)} | – | – | – | – | – | {row['status']}: {row.get('reason', '')} |")
    return "\n".join(lines) + "\n"


def verdict_text(verdict: Verdict, decision: Decision | None, complete: bool) -> str:
    """Why a candidate was, or was not, taken."""
    chosen = decision.chosen if decision else None
    if verdict is chosen:
        how = (
            "within the noise of the fastest, the most accurate" if decision.is_tie else "the fastest within the budget"
        )
        return f"**chosen**: {how}" if complete else f"the choice among those measured ({how}); not installed"
    if not verdict.meets:
        faster = chosen is None or verdict.median_ms < chosen.median_ms
        return ("rejected: " if faster else "slower, and misses: ") + verdict.why
    if verdict.row["backend"] == BackendName.TORCH:
        return "the baseline (a checkpoint, not an artifact)"
    if decision and verdict in decision.tied:
        return f"within the budget, a tie within noise; less accurate (AbsRel {verdict.abs_rel:.4f})"
    return "within the budget, slower"


def verdict_cells(verdict: Verdict, decision: Decision | None, complete: bool = True) -> str:
    row = verdict.row
    accuracy = row.get("accuracy") or {}
    abs_rel = f"{accuracy['abs_rel']:.4f}" if accuracy else "–"
    speedup = f"{row['speedup']:.2f}x" if row.get("speedup") else "–"
    p10, p90 = spread(row["latency_ms"])
    text = verdict_text(verdict, decision, complete)
    return (
        f"| {verdict.label} | {verdict.median_ms:.1f} | {p10:.1f}-{p90:.1f} | {row['fps']:.2f} | {speedup} | "
        f"{abs_rel} | {text} |"
    )


def plot_front(
    document: dict, verdicts: list[Verdict], decision: Decision | None, budget: Budget, path: Path
) -> Path | None:
    """Latency (median, p10-p90 bars) against AbsRel, one point per candidate, the budget drawn
    (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    measured = [v for v in verdicts if v.row.get("accuracy")]
    if not measured:
        return None
    chosen = decision.chosen if decision else None
    figure, axes = plt.subplots(figsize=(11, 5))
    for number, verdict in enumerate(measured, 1):  # numbered: close points would hide their labels
        x, (y, floored) = verdict.median_ms, plotted_abs_rel(verdict.abs_rel)
        p10, p90 = spread(verdict.row["latency_ms"])
        colour = "tab:green" if verdict is chosen else ("tab:blue" if verdict.meets else "tab:red")
        abs_rel = f"{verdict.abs_rel:.4f}" if verdict.abs_rel >= 1e-4 else f"{verdict.abs_rel:.1e}"
        text = f"{number}. {verdict.label}: {x:.1f} ms ({p10:.1f}-{p90:.1f}), AbsRel {abs_rel}"
        axes.errorbar(x, y, xerr=[[x - p10], [p90 - x]], color=colour, linewidth=0.8, capsize=2, zorder=2)
        axes.scatter(x, y, color=colour, s=70 if verdict is chosen else 30, zorder=3, label=text,
                     marker=FLOORED_MARKER if floored else "o")  # fmt: skip
        axes.annotate(str(number), (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    limits = draw_budget(axes, budget, {v.row["precision"] for v in measured})
    draw_floor(axes, [v.abs_rel for v in measured])
    axes.set_xlabel("median latency, ms (batch 1); bars: p10-p90")
    axes.set_ylabel("AbsRel vs PyTorch FP32 (held-out photos, log)")
    fit_abs_rel_axis(axes, [v.abs_rel for v in measured if v.abs_rel == v.abs_rel] + limits)
    axes.set_yscale("log")
    state = "" if document.get("complete", True) else "INCOMPLETE (interrupted), nothing installed: "
    title = f"{state}{document['machine']['label']}: green chosen, blue within the budget, red rejected"
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120)
    plt.close(figure)
    return path


def draw_budget(axes, budget: Budget, precisions: set[str]) -> list[float]:
    """The AbsRel budget line(s): one, or the default of each precision measured; the latency
    budget. Returns the AbsRel levels drawn."""
    if budget.max_abs_rel is not None:
        levels = {budget.max_abs_rel: f"budget: {budget.describe()}"}
    else:
        defaults = {p: default_budget(p) for p in sorted(precisions)}
        levels = {level: f"{p} budget: {level:g}" for p, level in defaults.items() if level is not None}
    for level, text in levels.items():
        axes.axhline(level, color="black", linestyle="--", linewidth=1, label=text)
    if budget.max_ms is not None:
        axes.axvline(budget.max_ms, color="grey", linestyle=":", linewidth=1)
    return list(levels)


def report_stem(document: dict, decision: Decision | None) -> str:
    """pick: a choice installed; pick-incomplete: interrupted; pick-failed: nothing within the budget.
    Only `pick` replaces an earlier pick's files: a run that installs nothing reports beside them."""
    if not document.get("complete", True):
        return INCOMPLETE_STEM
    return PICK_STEM if decision else FAILED_STEM


def save(document: dict, text: str, choice: dict | None, output: Path, stem: str = "pick") -> list[Path]:
    """STEM.json (the result document with the choice) and STEM.md in `output`; after a choice
    (stem `pick`), the failed or interrupted runs' reports there are out of date and removed."""
    output.mkdir(parents=True, exist_ok=True)
    written = [output / f"{stem}.json", output / f"{stem}.md"]
    atomic_write_text(written[0], json.dumps({**document, "choice": choice}, indent=2) + "\n")
    atomic_write_text(written[1], text)
    if stem == PICK_STEM:
        for old in (FAILED_STEM, INCOMPLETE_STEM):
            for suffix in (".json", ".md", ".png"):
                (output / f"{old}{suffix}").unlink(missing_ok=True)
    return written
