"""Result documents: JSON (the stable, machine-readable record), Markdown tables, a plot.

Schema 1 (one JSON object):
  schema: 1
  machine: {label, cpu, cores, memory_gb, os, python, gpus, nvidia_driver, cuda,
            openvino_devices, libraries, dav2, threads, command, date}
  settings: the dav2-bench options
  complete: false when interrupted (the cases list holds what was measured)
  planned: how many cases were to be measured; interrupted_by: SIGINT or SIGTERM when interrupted
  cases: [{backend, precision, size, status: ok|skipped|failed, reason (skipped/failed),
           latency_ms: {median, p10, p90, p99, mean, stdev, min, runs}, fps, speedup,
           throughput_fps, throughput_mode, split_ms: {preprocess, h2d, infer, d2h, postprocess},
           accuracy: {abs_rel, delta1, max_abs_diff, images}, peak_host_mb, peak_device_mb,
           artifact, artifact_mb, build_s, artifact_reused, backend_detail,
           pipeline (with --pipeline VIDEO): {video, frames, timed_frames, end_to_end_fps,
             inference_fps, inference_ms, host_ms: {read, preprocess, postprocess, write},
             host_ms_per_frame, latency_ms: {mean, p50, p90}, preprocessing, output,
             ratio_to_standalone} or {skipped: reason}}]
"""

import json
import re
from pathlib import Path

from dav2.errors import Dav2Error, quote
from dav2.files import atomic_path, atomic_write_text
from dav2.jsonfile import expect, read_json

REQUIRED_CASE_KEYS = ("backend", "precision", "size", "status")


def validate(document: dict, source: str = "result") -> dict:
    if not isinstance(document, dict) or document.get("schema") != 1:
        raise Dav2Error(f"{source} is not a dav2-bench result (schema 1)")
    for key in ("machine", "settings", "cases"):
        if key not in document:
            raise Dav2Error(f"{source} lacks '{key}'")
    expect(document["machine"], dict, f"{source}: machine")
    expect(document["settings"], dict, f"{source}: settings")
    for case in expect(document["cases"], list, f"{source}: cases"):
        expect(case, dict, f"{source}: a case")
        missing = [k for k in REQUIRED_CASE_KEYS if k not in case]
        if missing:
            raise Dav2Error(f"{source}: a case lacks {', '.join(missing)}")
        if case["status"] == "ok" and "latency_ms" not in case:
            raise Dav2Error(f"{source}: a measured case lacks latency_ms")
    return document


def _num(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _precision(case: dict) -> str:
    """The precision cell: with the recipe when the case has one, so variants of one
    backend x precision (OpenVINO INT8 with parts in float, LiteRT full-integer INT8) differ."""
    return case["precision"] + (f" ({case['recipe']})" if case.get("recipe") else "")


def case_cells(case: dict) -> list[str]:
    if case["status"] != "ok":
        return [case["backend"], _precision(case), str(case["size"]), case["status"] + ": " + case.get("reason", "")]
    lat = case["latency_ms"]
    acc = case.get("accuracy") or {}
    split = case.get("split_ms") or {}
    return [
        case["backend"],
        _precision(case),
        str(case["size"]),
        _num(lat.get("p10")),  # results written before p10 was recorded have none
        _num(lat["median"]),
        _num(lat["p90"]),
        _num(lat["p99"]),
        f"{_num(lat['mean'])} ± {_num(lat['stdev'])}",
        _num(case["fps"], 2),
        _num(case.get("throughput_fps"), 2),
        f"{case['speedup']:.2f}x" if case.get("speedup") else "–",
        _num(acc.get("abs_rel"), 4),
        _num(acc.get("delta1"), 4),
        _num(acc.get("max_abs_diff"), 3),
        f"{_num(split.get('preprocess'))} / {_num(split.get('h2d'), 2)} / {_num(split.get('infer'))} / "
        f"{_num(split.get('d2h'), 2)} / {_num(split.get('postprocess'))}",
        _num(case.get("peak_host_mb"), 0),
        _num(case.get("peak_device_mb"), 0),
        _num(case.get("artifact_mb")),
        _num(case.get("build_s")),
    ]


HEADER = [
    "backend", "precision", "size", "p10 ms", "median ms", "p90", "p99", "mean ± sd", "FPS", "throughput FPS",
    "vs torch FP32", "AbsRel", "δ1", "max abs diff", "split ms: pre / h2d / infer / d2h / post",
    "peak host MB", "peak GPU MB", "artifact MB", "build s",
]  # fmt: skip


def table(cases: list[dict], first_columns: list[str] | None = None, prefix: list[list[str]] | None = None) -> str:
    header = (first_columns or []) + HEADER
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, case in enumerate(cases):
        cells = (prefix[index] if prefix else []) + case_cells(case)
        if case["status"] != "ok":
            cells += [""] * (len(header) - len(cells))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(document: dict) -> str:
    machine = document["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items() if v)
    gpus = ", ".join(machine["gpus"]) or "none"
    notes = [
        f"# dav2-bench: {document['settings']['encoder']} on {machine['label']}",
        "",
        f"Command: `{machine['command']}`",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB; GPU: {gpus}"
        + (f" (driver {machine['nvidia_driver']}, CUDA {machine['cuda']})" if machine.get("cuda") else "")
        + f"; {machine['os']}, Python {machine['python']}, threads {machine['threads'] or 'library default'}.",
        "",
        f"Libraries: {libs}. Date: {machine['date']}.",
        "",
        "Latency: one network forward at batch 1 on a real preprocessed image, after warm-up; FPS = "
        "1000 / median; p10-p90 is the spread: medians whose p10-p90 ranges overlap are within the noise. "
        "Throughput: several frames in flight where the backend can. Accuracy: against "
        "PyTorch FP32 on held-out images at the same size (relative models after scale-and-shift "
        "alignment). Each case runs in its own process (peak host memory is that process's).",
        "",
    ]
    if not document.get("complete", True):
        notes += ["**Interrupted**: the table holds the cases measured before Ctrl-C.", ""]
    text = "\n".join(notes) + "\n" + table(document["cases"]) + "\n"
    pipeline = pipeline_table(document["cases"])
    return text + ("\n" + pipeline if pipeline else "")


PIPELINE_HEADER = [
    "backend", "precision", "size", "standalone FPS", "pipeline FPS", "pipeline / standalone",
    "inference FPS in pipeline", "host ms/frame: read / pre / post / write", "host ms/frame", "latency p50 / p90 ms",
    "frames", "preprocessing",
]  # fmt: skip


def pipeline_cells(case: dict) -> list[str] | None:
    measured = case.get("pipeline")
    if case["status"] != "ok" or not measured:
        return None
    head = [case["backend"], _precision(case), str(case["size"]), _num(case["fps"], 2)]
    if measured.get("skipped"):
        return head + [f"skipped: {measured['skipped']}"] + [""] * (len(PIPELINE_HEADER) - len(head) - 1)
    host = measured["host_ms"]
    latency = measured.get("latency_ms") or {}
    ratio = measured.get("ratio_to_standalone")
    return head + [
        _num(measured["end_to_end_fps"], 2),
        f"{100 * ratio:.1f}%" if ratio else "–",
        _num(measured["inference_fps"], 2),
        " / ".join(_num(host.get(stage)) for stage in ("read", "preprocess", "postprocess", "write")),
        _num(measured["host_ms_per_frame"]),
        f"{_num(latency.get('p50'), 0)} / {_num(latency.get('p90'), 0)}",
        str(measured["frames"]),
        measured["preprocessing"],
    ]


def pipeline_table(cases: list[dict]) -> str:
    """The --pipeline table: end-to-end FPS of dav2-run's pipeline beside the standalone FPS."""
    rows = [cells for cells in map(pipeline_cells, cases) if cells]
    if not rows:
        return ""
    first = next(c["pipeline"] for c in cases if c.get("pipeline", {}).get("video"))
    lines = [
        f"## Pipeline on `{first['video']}`",
        "",
        f"dav2-run's threaded pipeline on the video, writing: {first['output']}; on the same open backend right "
        "after the standalone timing. Pipeline FPS: frames after the "
        "first over their wall time; standalone FPS: 1000 / median of batch-1 inference. Host ms: mean per "
        "frame of each stage beside inference (they share the CPU with it). Latency: capture to written "
        "frame (files queue frames, so it spans several inferences).",
        "",
        "| " + " | ".join(PIPELINE_HEADER) + " |",
        "|" + "---|" * len(PIPELINE_HEADER),
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def save(document: dict, folder: Path) -> list[Path]:
    """<machine>-<encoder>.json and .md (and .png when matplotlib is installed) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{slug(document['machine']['label'])}-{document['settings']['encoder']}"
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    atomic_write_text(json_path, json.dumps(document, indent=2) + "\n")
    atomic_write_text(md_path, to_markdown(document))
    written = [json_path, md_path]
    png = plot(document, folder / f"{stem}.png")
    if png:
        written.append(png)
    return written


# A log axis has no 0, and PyTorch FP32 against itself is 0 (FP32 artifacts about 1e-7): AbsRel
# below the floor is drawn at the floor, with its own marker, and the plot says so.
ABS_REL_FLOOR = 1e-6
FLOORED_MARKER = "v"


def plotted_abs_rel(abs_rel: float) -> tuple[float, bool]:
    """(where an AbsRel is drawn on the log axis, whether it was raised to the floor)."""
    return (abs_rel, False) if abs_rel >= ABS_REL_FLOOR else (ABS_REL_FLOOR, True)


def draw_floor(axes, abs_rels: list[float]) -> bool:
    """The floor line and a legend entry saying what sits on it, when anything does."""
    if not any(plotted_abs_rel(value)[1] for value in abs_rels):
        return False
    axes.axhline(ABS_REL_FLOOR, color="grey", linestyle=":", linewidth=0.8)
    text = f"AbsRel below {ABS_REL_FLOOR:g} (0 included) drawn at {ABS_REL_FLOOR:g}"
    axes.scatter([], [], marker=FLOORED_MARKER, color="grey", label=text)
    return True


def fit_abs_rel_axis(axes, values: list[float]) -> None:
    """A log AbsRel axis from below the floor to above every value drawn (points, budget lines):
    points all on the floor would otherwise give matplotlib an empty range."""
    axes.set_ylim(ABS_REL_FLOOR / 2, max([ABS_REL_FLOOR, *values]) * 2)


def plot(document: dict, path: Path) -> Path | None:
    """Latency against AbsRel, one point per measured case (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cases = [c for c in document["cases"] if c["status"] == "ok" and c.get("accuracy")]
    if not cases:
        return None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for case in cases:
        x, (y, floored) = case["latency_ms"]["median"], plotted_abs_rel(case["accuracy"]["abs_rel"])
        axes.scatter(x, y, marker=FLOORED_MARKER if floored else "o")
        recipe = f" ({case['recipe']})" if case.get("recipe") else ""
        axes.annotate(f"{case['backend']} {case['precision']} {case['size']}{recipe}", (x, y), fontsize=7)
    axes.set_xlabel("median latency, ms (batch 1)")
    axes.set_ylabel("AbsRel vs PyTorch FP32 (log)")
    fit_abs_rel_axis(axes, [c["accuracy"]["abs_rel"] for c in cases])
    axes.set_yscale("log")
    if draw_floor(axes, [c["accuracy"]["abs_rel"] for c in cases]):
        axes.legend(fontsize=7, loc="best")
    axes.set_title(document["machine"]["label"], fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120)
    plt.close(figure)
    return path


def load(path: Path) -> dict:
    """A result file, read with dav2.jsonfile (bounded) and checked by `validate`."""
    return validate(read_json(path, "dav2-bench result"), quote(path))


MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def compare(paths: list[Path]) -> str:
    """One Markdown table over the measured cases of several result files (machines).

    Each file is rendered on its own first: a file whose fields have the wrong type or lack
    one (hand-edited, another tool's JSON) is one Dav2Error naming it, not a KeyError."""
    if not paths:
        raise Dav2Error("give at least one result file")
    rows, prefix, legend = [], [], []
    for path in paths:
        document = load(path)
        try:
            machine = document["machine"]
            legend.append(f"- **{machine['label']}**: `{machine['command']}` ({machine['date']}, {Path(path).name})")
            measured = [case for case in document["cases"] if case["status"] == "ok"]
            table(measured)  # every cell formatted once here, where a bad field can be named
            rows += measured
            prefix += [[str(machine["label"]), str(document["settings"]["encoder"])]] * len(measured)
        except MALFORMED as exc:
            raise Dav2Error(f"{quote(path)} is not a well-formed dav2-bench result ({malformed_reason(exc)})") from None
    return "\n".join(["# dav2-bench comparison", "", *legend, "", table(rows, ["machine", "encoder"], prefix), ""])


def malformed_reason(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"a field {str(exc)[:60]} is missing"
    return f"a field has the wrong type: {type(exc).__name__}"
