"""dav2-bench pick: the fastest artifact this machine runs within an accuracy budget.

Users have a frame-rate target and an accuracy budget, not an afternoon to try every backend,
precision, size and INT8 recipe. `pick` runs the benchmark over the candidates (the same
runner, cache and measurements as dav2-bench, so a second pick reuses every artifact), judges
every measured case against the budget, and installs the fastest one that meets it:

- accuracy: AbsRel against PyTorch FP32 on the held-out photos of the same run (never the
  calibration or validation ones), at most `--max-abs-rel`;
- speed: the median batch-1 latency, optionally at most `--max-ms` or at least `--min-fps`.

The winner is copied with its sidecar and weights into the output folder, beside a report
(pick.md: the candidates table, the choice, why each faster candidate was rejected), the
result document (pick.json) and the speed/accuracy front (pick.png, with the budget line).
The PyTorch baseline (dav2's own module, eager FP32) is a candidate too but never installed:
it is a checkpoint, not an artifact.
"""

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dav2.errors import Dav2Error
from dav2.files import atomic_path, atomic_write_text, move_into_place
from dav2.metadata import ArtifactMetadata, sidecar_path
from dav2.vocabulary import BackendName

REPORT, DOCUMENT, PLOT = "pick.md", "pick.json", "pick.png"
# OpenVINO INT8 mixed-precision candidates: the groups left in float, from the measured error
# sources (benchmarks/results/amd-epyc-2-cores-int8-error-sources.md): the DPT head is the
# largest, then the attention output projections (proj) and the patch embedding; the attention
# MatMuls, qkv and the MLPs cost little
DEFAULT_INT8_RECIPES = "head;patch_embed,head;patch_embed,head,proj"


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


@dataclass(frozen=True)
class Budget:
    """What the chosen artifact must meet."""

    max_abs_rel: float
    max_ms: float | None = None
    min_fps: float | None = None

    def describe(self) -> str:
        parts = [f"AbsRel ≤ {self.max_abs_rel:g}"]
        if self.max_ms is not None:
            parts.append(f"median ≤ {self.max_ms:g} ms")
        if self.min_fps is not None:
            parts.append(f"≥ {self.min_fps:g} FPS")
        return ", ".join(parts)


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


def case_label(row: dict) -> str:
    recipe = f" ({row['recipe']})" if row.get("recipe") else ""
    return f"{row['backend']} {row['precision']} {row['size']}{recipe}"


def judge(row: dict, budget: Budget) -> Verdict:
    """Whether a measured case meets the budget, and if not, why."""
    misses = []
    accuracy = row.get("accuracy")
    if accuracy is None:
        misses.append("no accuracy measured")
    elif not accuracy["abs_rel"] <= budget.max_abs_rel:
        misses.append(f"AbsRel {accuracy['abs_rel']:.4f} > {budget.max_abs_rel:g}")
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


def choose(verdicts: list[Verdict]) -> Verdict | None:
    """The fastest candidate that meets the budget and is an artifact (not the PyTorch baseline)."""
    for verdict in verdicts:
        if verdict.meets and verdict.row["backend"] != BackendName.TORCH:
            return verdict
    return None


def artifact_files(artifact: Path) -> list[Path]:
    """An artifact's weights file, sidecar and itself, in the order they are put in place."""
    metadata = ArtifactMetadata.read(artifact) if sidecar_path(artifact).is_file() else None
    files = [artifact.with_name(metadata.weights_file)] if metadata and metadata.weights_file else []
    return files + [sidecar_path(artifact), artifact]


def previous_choice(output: Path) -> list[Path]:
    """The files of the artifact an earlier pick installed in `output` (from its pick.json)."""
    try:
        choice = json.loads((output / DOCUMENT).read_text()).get("choice") or {}
    except (OSError, ValueError, AttributeError):
        return []
    name = Path(choice.get("artifact") or "").name
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
    return {
        "artifact": str(artifact),
        "backend": row["backend"],
        "precision": row["precision"],
        "size": row["size"],
        "recipe": row.get("recipe"),
        "abs_rel": row["accuracy"]["abs_rel"],
        "median_ms": chosen.median_ms,
        "fps": row["fps"],
        "speedup": speedup,
        "baseline": document.get("baseline"),
        "baseline_ms": speedup * chosen.median_ms if speedup else None,
        "budget": {"max_abs_rel": budget.max_abs_rel, "max_ms": budget.max_ms, "min_fps": budget.min_fps},
    }


def report(document: dict, verdicts: list[Verdict], chosen: Verdict | None, budget: Budget) -> str:
    """pick.md: the budget, the choice, and every candidate with why it was or was not taken."""
    lines = [f"# dav2-bench pick: {budget.describe()}", "", f"Command: `{document['machine']['command']}`", ""]
    lines.append(f"Machine: {document['machine']['label']}. Baseline: {document.get('baseline', 'PyTorch FP32')}.")
    images = max((v.row["accuracy"]["images"] for v in verdicts if v.row.get("accuracy")), default=0)
    lines.append(
        f"AbsRel: against PyTorch FP32 on {images} held-out image(s), never calibrated on"
        + (" (the sample scene only: pass --images for a real measurement)." if images <= 1 else ".")
    )
    lines.append("")
    if chosen is None:
        lines.append("**No candidate meets the budget.**")
    else:
        acc = chosen.row["accuracy"]["abs_rel"]
        lines.append(
            f"**Chosen: {chosen.label}**, {chosen.median_ms:.1f} ms ({chosen.row['fps']:.2f} FPS), AbsRel {acc:.4f}."
        )
    lines += ["", "| candidate | median ms | FPS | vs PyTorch | AbsRel | verdict |", "|---|---|---|---|---|---|"]
    for verdict in verdicts:
        lines.append(verdict_cells(verdict, verdict is chosen, chosen))
    failed = [row for row in document["cases"] if row["status"] != "ok"]
    for row in failed:
        lines.append(f"| {case_label(row)} | – | – | – | – | {row['status']}: {row.get('reason', '')} |")
    return "\n".join(lines) + "\n"


def verdict_cells(verdict: Verdict, is_chosen: bool, chosen: Verdict | None) -> str:
    row = verdict.row
    accuracy = row.get("accuracy") or {}
    abs_rel = f"{accuracy['abs_rel']:.4f}" if accuracy else "–"
    speedup = f"{row['speedup']:.2f}x" if row.get("speedup") else "–"
    if is_chosen:
        text = "**chosen**: the fastest within the budget"
    elif not verdict.meets:
        faster = chosen is None or verdict.median_ms < chosen.median_ms
        text = ("rejected: " if faster else "slower, and misses: ") + verdict.why
    elif row["backend"] == BackendName.TORCH:
        text = "the baseline (a checkpoint, not an artifact)"
    else:
        text = "within the budget, slower"
    return f"| {verdict.label} | {verdict.median_ms:.1f} | {row['fps']:.2f} | {speedup} | {abs_rel} | {text} |"


def plot_front(
    document: dict, verdicts: list[Verdict], chosen: Verdict | None, budget: Budget, path: Path
) -> Path | None:
    """Latency against AbsRel, one point per candidate, the budget line drawn (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    measured = [v for v in verdicts if v.row.get("accuracy")]
    if not measured:
        return None
    figure, axes = plt.subplots(figsize=(11, 5))
    for number, verdict in enumerate(measured, 1):  # numbered: close points would hide their labels
        x, y = verdict.median_ms, max(verdict.row["accuracy"]["abs_rel"], 1e-6)
        colour = "tab:green" if verdict is chosen else ("tab:blue" if verdict.meets else "tab:red")
        text = f"{number}. {verdict.label}: {x:.1f} ms, AbsRel {verdict.row['accuracy']['abs_rel']:.4f}"
        axes.scatter(x, y, color=colour, s=70 if verdict is chosen else 30, zorder=3, label=text)
        axes.annotate(str(number), (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    axes.axhline(budget.max_abs_rel, color="black", linestyle="--", linewidth=1, label=f"budget: {budget.describe()}")
    if budget.max_ms is not None:
        axes.axvline(budget.max_ms, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("median latency, ms (batch 1)")
    axes.set_ylabel("AbsRel vs PyTorch FP32 (held-out photos)")
    axes.set_yscale("log")
    axes.set_title(f"{document['machine']['label']}: green chosen, blue within the budget, red rejected", fontsize=9)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120)
    plt.close(figure)
    return path


def save(document: dict, text: str, choice: dict | None, output: Path) -> list[Path]:
    """pick.json (the result document with the choice) and pick.md in `output`."""
    output.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / DOCUMENT, json.dumps({**document, "choice": choice}, indent=2) + "\n")
    atomic_write_text(output / REPORT, text)
    return [output / DOCUMENT, output / REPORT]
