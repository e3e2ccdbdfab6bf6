"""Every measured table in the README and docs/, made from the result files (benchmarks/results/*.json).

The JSON files are the single source of a measured number: each records its machine and command.
A page holds a generated table between `<!-- results:NAME:begin -->` and
`<!-- results:NAME:end -->`; BLOCKS below says which function makes each NAME. The headline
table in the README names the machine and the file it comes from.

A file is a headline source when it is a complete `dav2-bench` result (schema 1,
as `dav2.benchmarks.report.validate` checks) of a plain benchmark run; pipeline runs
(`--pipeline`), interrupted runs and JSON files of any other shape are skipped. The headline
shows the newest such run of each machine (rows of two runs on one shared machine do not
compare), at the largest input size it measured.

    python scripts/results_table.py            # rewrite every table between its markers
    python scripts/results_table.py --check    # exit 1 when a page's table is stale (CI)
    python scripts/results_table.py --print    # print the tables only
"""

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dav2.benchmarks.report import validate
from dav2.errors import Dav2Error

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
INT8_PAGE = ROOT / "docs" / "int8.md"
EXPORT_PAGE = ROOT / "docs" / "export.md"
BACKENDS = {
    "torch": "PyTorch", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "tensorrt": "TensorRT",
    "litert": "LiteRT", "executorch": "ExecuTorch",
}  # fmt: skip


@dataclass(frozen=True)
class Source:
    """One result file the headline table is made from."""

    path: Path
    machine: str
    encoder: str
    size: int
    cases: list[dict]
    date: str = ""  # when the run started (ISO 8601, UTC)


def headline_source(path: Path) -> Source | None:
    """The file's measured cases at its largest size, or None when it is no plain, complete dav2-bench run."""
    try:
        document = validate(json.loads(path.read_text()), str(path))
    except (OSError, ValueError, Dav2Error):
        return None
    settings = document["settings"]
    if not document.get("complete", True) or settings.get("pipeline") or settings.get("model"):
        return None
    measured = [case for case in document["cases"] if case["status"] == "ok"]
    if not measured:
        return None
    size = max(case["size"] for case in measured)
    cases = sorted((case for case in measured if case["size"] == size), key=lambda c: c["latency_ms"]["median"])
    machine = document["machine"]
    return Source(path, machine_name(machine), settings["encoder"], size, cases, machine.get("date", ""))


def machine_name(machine: dict) -> str:
    gpus = ", ".join(machine.get("gpus") or []) or "no GPU"
    return f"{machine['label']}, {gpus}"


def artifact_name(case: dict) -> str:
    return f"{BACKENDS.get(case['backend'], case['backend'])} {case['precision'].upper()}"


def artifact_label(case: dict) -> str:
    """The artifact with its recipe, when it has one (a LiteRT INT8 run has two)."""
    return artifact_name(case) + (f" ({case['recipe']})" if case.get("recipe") else "")


def number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(sources: list[Source]) -> str:
    if not sources:
        return "No recorded dav2-bench results yet (benchmarks/results/*.json)."
    lines = [
        "| machine | encoder, input | artifact | median ms | FPS | vs PyTorch FP32 | AbsRel vs FP32 |",
        "|---|---|---|---|---|---|---|",
    ]
    for source in sources:
        for case in source.cases:
            accuracy = case.get("accuracy") or {}
            lines.append(
                f"| {source.machine} | {source.encoder} {source.size}x{source.size} | {artifact_label(case)} | "
                f"{number(case['latency_ms']['median'], 1)} | {number(case.get('fps'), 2)} | "
                f"{number(case.get('speedup'), 2)}x | {number(accuracy.get('abs_rel'), 4)} |"
            )
    # the file records the exact command (with the machine's own paths); the README names the file only
    notes = [
        f"- {source.machine}: `benchmarks/results/{source.path.name}` (with the command that made it)"
        for source in sources
    ]
    return "\n".join([*lines, "", *notes])


def sources(folder: Path = RESULTS) -> list[Source]:
    """The newest headline source of each machine, in file-name order."""
    found = [source for path in sorted(folder.glob("*.json")) if (source := headline_source(path)) is not None]
    newest = {}
    for source in found:
        if source.machine not in newest or source.date > newest[source.machine].date:
            newest[source.machine] = source
    return [source for source in found if newest[source.machine] is source]


def headline() -> str:
    return table(sources())


def result(name: str) -> dict:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def source_note(name: str) -> str:
    link = f"[`{name}`](../benchmarks/results/{name})"
    return f"Made by `scripts/results_table.py` from {link} (machine and command in the file)."


# dav2-bench's (backend, precision) -> what the artifact is on a CPU
CPU_ARTIFACTS = {
    ("onnxruntime", "fp32"): "ONNX Runtime FP32",
    ("onnxruntime", "fp16"): "ONNX Runtime FP16 (CPU EP)",
    ("onnxruntime", "int8"): "ONNX Runtime INT8, dynamic (default)",
    ("openvino", "fp32"): "OpenVINO FP32 (f32 hint)",
    ("openvino", "fp16"): "OpenVINO FP16 IR (runs BF16 here)",
    ("openvino", "int8"): "OpenVINO INT8 (NNCF transformer preset)",
}


def cpu_precisions() -> str:
    """docs/int8.md: every precision on the CPU, at the largest size of the CPU dav2-bench run."""
    name = "amd-epyc-2-cores-vits.json"
    cases = [case for case in result(name)["cases"] if case["status"] == "ok"]
    size = max(case["size"] for case in cases)
    cases = [case for case in cases if case["size"] == size]
    torch = next(case for case in cases if case["backend"] == "torch")
    lines = [
        f"| artifact | median ms | vs torch eager FP32 ({torch['latency_ms']['median']:.1f} ms) "
        "| AbsRel | δ1 | max abs diff |",
        "|---|---|---|---|---|---|",
    ]
    for case in cases:
        label = CPU_ARTIFACTS.get((case["backend"], case["precision"]))
        if label is None:
            continue
        accuracy = case.get("accuracy") or {}
        lines.append(
            f"| {label} | {number(case['latency_ms']['median'], 1)} | {number(case.get('speedup'), 2)}x | "
            f"{number(accuracy.get('abs_rel'), 4)} | {number(accuracy.get('delta1'), 4)} | "
            f"{number(accuracy.get('max_abs_diff'), 3)} |"
        )
    return "\n".join([*lines, "", source_note(name)])


def export_flag(command: str) -> str:
    """The option that picks an INT8 path in one of the file's dav2-export lines."""
    words = command.split()
    if "--ort-int8" in words:
        return f"--ort-int8 {words[words.index('--ort-int8') + 1]}"
    return "--openvino int8"


def int8_dynamic() -> str:
    """docs/int8.md: dynamic against static INT8 graphs, per INT8 path."""
    name = "amd-epyc-2-cores-int8-dynamic-vs-static.json"
    document = result(name)
    static = {row["path"]: row for row in document["rows"] if row["graph"] == "static"}
    lines = ["| path | graph | AbsRel (report) | AbsRel 518x518 | dynamic / static |", "|---|---|---|---|---|"]
    for row, command in zip(document["rows"], document["exports"], strict=True):
        label, ratio = row["path"], ""
        if row["graph"] == "dynamic":
            label = f"{label}: `{export_flag(command)}`"
            ratio = f"{row['abs_rel_518x518'] / static[row['path']]['abs_rel_518x518']:.2f}x"
        lines.append(
            f"| {label} | {row['graph']} | {row['abs_rel']:.4f} | {row['abs_rel_518x518']:.4f} | {ratio} |"
        )
    return "\n".join([*lines, "", source_note(name)])


# the int8_error_sources.py variants the docs summarise: (variants, what was quantized alone, verdict)
ERROR_SOURCES = [
    (("none",), "nothing: BF16 (the FP16 IR)", "the floor every INT8 mix sits on"),
    (("only:head-all",), "DPT head (incl. its transposed convolutions)", "**yes, the largest**"),
    (("only:proj",), "attention output projections (`proj`, 12)", "**yes**"),
    (("only:patch-pos",), "patch embedding (the image itself is quantized)", "**yes, from one layer**"),
    ((), "positional embedding",
     "no: at a fixed size its interpolation folds into one constant add, which NNCF does not quantize"),
    (("only:attn-sdpa",), "attention MatMuls (q·kᵀ; attn·v is never quantized)", "no"),
    (("only:qkv",), "qkv projections", "no"),
    (("only:mlp",), "MLP (fc1, fc2)", "little"),
    (("only:block0", "only:block11"), "first block / last block", "no: blocks 2-7 are the worst, through their `proj`"),
    (("full",), "everything (NNCF transformer preset)", ""),
]


def int8_error_sources() -> str:
    """docs/int8.md: the INT8 error of each part of the network quantized alone."""
    name = "amd-epyc-2-cores-int8-error-sources.json"
    results = result(name)["results"]
    lines = ["| part quantized alone | quantizers | AbsRel (INT8 alone) | error source? |", "|---|---|---|---|"]
    for variants, label, verdict in ERROR_SOURCES:
        rows = [results[variant] for variant in variants]
        if not rows:
            lines.append(f"| {label} | 0 | – | {verdict} |")
            continue
        ops = " / ".join(str(row["quantized_ops"]) for row in rows)
        bf16 = " / ".join(f"{row['abs_rel_bf16']:.4f}" for row in rows)
        f32 = " / ".join(f"{row['abs_rel_f32']:.4f}" for row in rows)
        lines.append(f"| {label} | {ops} | {bf16} ({f32}) | {verdict} |")
    return "\n".join([*lines, "", source_note(name)])


def pick_verdict(case: dict, choice: dict) -> str:
    if all(case.get(key) == choice.get(key) for key in ("backend", "precision", "size", "recipe")):
        return "**chosen**"
    budget = choice["budget"]["max_abs_rel"]
    if budget is not None and (case.get("accuracy") or {}).get("abs_rel", 0.0) > budget:
        return "misses the budget"
    return "within, slower"


def pick_candidates() -> str:
    """docs/int8.md: the candidates of a recorded `dav2-bench pick`, fastest first."""
    name = "amd-epyc-2-cores-pick-vits518/pick.json"
    document = result(name)
    choice = document["choice"]
    cases = sorted(
        (c for c in document["cases"] if c["status"] == "ok" and c["backend"] != "torch"),
        key=lambda c: c["latency_ms"]["median"],
    )
    lines = [
        f"| candidate (fastest first) | median ms | vs dav2 PyTorch eager FP32 ({choice['baseline_ms']:.0f} ms) "
        "| AbsRel | verdict |",
        "|---|---|---|---|---|",
    ]
    for case in cases:
        label = artifact_name(case) + (f", {case['recipe']}" if case.get("recipe") else "")
        lines.append(
            f"| {label} | {case['latency_ms']['median']:.1f} | {case['speedup']:.2f}x | "
            f"{case['accuracy']['abs_rel']:.4f} | {pick_verdict(case, choice)} |"
        )
    return "\n".join([*lines, "", source_note(name)])


EDGE_RESULT = "amd-epyc-2-cores-vits-edge.json"


def edge_side_by_side() -> str:
    """docs/export.md: every backend this CPU runs, LiteRT and ExecuTorch included, from one run."""
    document = result(EDGE_RESULT)
    cases = sorted(
        (case for case in document["cases"] if case["status"] == "ok"),
        key=lambda case: (case["size"], case["latency_ms"]["median"]),
    )
    lines = ["| input | artifact | median ms | vs PyTorch FP32 | AbsRel | δ1 | MB |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        accuracy = case.get("accuracy") or {}
        lines.append(
            f"| {case['size']}x{case['size']} | {artifact_label(case)} | {number(case['latency_ms']['median'], 1)} | "
            f"{number(case.get('speedup'), 2)}x | {number(accuracy.get('abs_rel'), 4)} | "
            f"{number(accuracy.get('delta1'), 4)} | {number(case.get('artifact_mb'), 1)} |"
        )
    skipped = [f"{case['backend']} {case['precision']} {case['size']}: {case.get('reason', '')}"
               for case in document["cases"] if case["status"] != "ok"]  # fmt: skip
    notes = ["", f"Not measured: {'; '.join(skipped)}."] if skipped else []
    return "\n".join([*lines, *notes, "", source_note(EDGE_RESULT)])


@dataclass(frozen=True)
class Block:
    """One generated table: the page it lives on and the function that makes it."""

    name: str
    page: Path
    render: Callable[[], str]


BLOCKS = [
    Block("headline", README, headline),
    Block("cpu-precisions", INT8_PAGE, cpu_precisions),
    Block("int8-dynamic", INT8_PAGE, int8_dynamic),
    Block("int8-error-sources", INT8_PAGE, int8_error_sources),
    Block("pick-candidates", INT8_PAGE, pick_candidates),
    Block("edge-side-by-side", EXPORT_PAGE, edge_side_by_side),
]


def with_table(page: str, name: str, text: str) -> str:
    begin, end = f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->"
    if page.count(begin) != 1 or page.count(end) != 1 or page.index(begin) > page.index(end):
        raise SystemExit(f"error: the page needs one {begin} ... {end} pair")
    head, rest = page.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{text}\n{end}{tail}"


def updated_pages() -> dict[Path, tuple[str, str]]:
    """Each page's text now and with every table made afresh."""
    pages: dict[Path, tuple[str, str]] = {}
    for block in BLOCKS:
        old, new = pages.get(block.page) or (block.page.read_text(encoding="utf-8"),) * 2
        pages[block.page] = (old, with_table(new, block.name, block.render()))
    return pages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="exit 1 when a page's table is not the current one")
    group.add_argument("--print", action="store_true", help="print the tables and change nothing")
    args = parser.parse_args()
    if args.print:
        for block in BLOCKS:
            print(f"## {block.name} ({block.page.relative_to(ROOT)})\n\n{block.render()}\n")
        return 0
    stale = [page for page, (old, new) in updated_pages().items() if old != new]
    if args.check:
        for page in stale:
            print(f"error: {page.relative_to(ROOT)}'s results tables are stale: run python scripts/results_table.py",
                  file=sys.stderr)
        return 1 if stale else 0
    for page, (_, new) in updated_pages().items():
        page.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
