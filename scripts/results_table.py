"""The README's headline table, made from the recorded `dav2-bench` results (benchmarks/results/*.json).

Every number in the table comes from a result file, and the table names the machine and the file
(which records its command). A file is a headline source when it is a complete `dav2-bench` result (schema 1,
as `dav2.benchmarks.report.validate` checks) of a plain benchmark run; pipeline runs
(`--pipeline`), interrupted runs and JSON files of any other shape are skipped. From each source
the table shows the measured cases at the largest input size it measured.

    python scripts/results_table.py            # rewrite the table between the README's markers
    python scripts/results_table.py --check    # exit 1 when the README's table is stale (CI)
    python scripts/results_table.py --print    # print the table only
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from dav2.benchmarks.report import validate
from dav2.errors import Dav2Error

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
BACKENDS = {"torch": "PyTorch", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "tensorrt": "TensorRT"}


@dataclass(frozen=True)
class Source:
    """One result file the headline table is made from."""

    path: Path
    machine: str
    encoder: str
    size: int
    cases: list[dict]


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
    return Source(path, machine_name(machine), settings["encoder"], size, cases)


def machine_name(machine: dict) -> str:
    gpus = ", ".join(machine.get("gpus") or []) or "no GPU"
    return f"{machine['label']}, {gpus}"


def artifact_name(case: dict) -> str:
    return f"{BACKENDS.get(case['backend'], case['backend'])} {case['precision'].upper()}"


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
                f"| {source.machine} | {source.encoder} {source.size}x{source.size} | {artifact_name(case)} | "
                f"{number(case['latency_ms']['median'], 1)} | {number(case.get('fps'), 2)} | "
                f"{number(case.get('speedup'), 2)}x | {number(accuracy.get('abs_rel'), 4)} |"
            )
    # the file records the exact command (with the machine's own paths); the README names the file only
    notes = [
        f"- {source.machine}: `{source.path.relative_to(ROOT)}` (with the command that made it)"
        for source in sources
    ]
    return "\n".join([*lines, "", *notes])


def sources() -> list[Source]:
    found = (headline_source(path) for path in sorted(RESULTS.glob("*.json")))
    return [source for source in found if source is not None]


def with_table(readme: str, text: str) -> str:
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or readme.index(BEGIN) > readme.index(END):
        raise SystemExit(f"error: README.md needs one {BEGIN} ... {END} pair")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{text}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", action="store_true", help="exit 1 when README.md's table is not the current one")
    group.add_argument("--print", action="store_true", help="print the table and change nothing")
    args = parser.parse_args()
    text = table(sources())
    if args.print:
        print(text)
        return 0
    readme = README.read_text(encoding="utf-8")
    updated = with_table(readme, text)
    if args.check:
        if updated != readme:
            print("error: README.md's results table is stale: run python scripts/results_table.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
