#!/usr/bin/env python3
"""Latency and AbsRel of the LiteRT and ExecuTorch artifacts through dav2's backends (issue 24).

For each size, converts the checkpoint with dav2's edge converters (LiteRT FP32 and static
INT8, ExecuTorch FP32 and INT8; INT8 calibrated on --calib-dir) and, for reference, exports the
FP32 ONNX graph of the same size; then opens each artifact with `open_backend(..., threads=N)`
and records the median latency of --runs calls of `infer` after --warmup calls, with AbsRel and
δ1 against PyTorch FP32 on the held-out pictures (dav2.accuracy, after scale-and-shift
alignment) and the FP32 artifacts' parity (max |a - PyTorch| / max(1, max |PyTorch|)).

    python scripts/seeded_checkpoint.py vits relative /tmp/vits.pth
    python benchmarks/edge_targets.py --checkpoint /tmp/vits.pth --calib-dir tests/data/images \\
        --sizes 308,518 --threads 2 --save benchmarks/results/amd-epyc-2-cores-edge-targets.json
"""

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dav2 import accuracy, optional, processing
from dav2.calibration.dataset import CalibrationSet
from dav2.export.context import GraphOptions
from dav2.export.executorch import convert_executorch
from dav2.export.litert import convert_litert
from dav2.export.onnx import export_graph
from dav2.models.checkpoint import load_model
from dav2.runtime.backends import open_backend

Convert = Callable[[torch.nn.Module, Path, int, int, CalibrationSet], Path]
CASES: dict[str, tuple[str, str, Convert]] = {  # name -> (backend, precision, how to make it)
    "onnx-fp32": ("onnxruntime", "fp32", lambda m, p, h, w, c: onnx_fp32(m, p.with_suffix(".onnx"), h, w)),
    "litert-fp32": ("litert", "fp32", lambda m, p, h, w, c: convert_litert(m, p.with_suffix(".tflite"), h, w)),
    "litert-int8": (
        "litert",
        "int8 static",
        lambda m, p, h, w, c: convert_litert(m, p.with_suffix(".tflite"), h, w, "int8", c.tensors(), "static"),
    ),
    "executorch-fp32": ("executorch", "fp32", lambda m, p, h, w, c: convert_executorch(m, p.with_suffix(".pte"), h, w)),
    "executorch-int8": (
        "executorch",
        "int8",
        lambda m, p, h, w, c: convert_executorch(m, p.with_suffix(".pte"), h, w, "int8", c.tensors()),
    ),
}


def onnx_fp32(model: torch.nn.Module, path: Path, height: int, width: int) -> Path:
    export_graph(model, path, GraphOptions(height, width, dynamic=False))
    return path


def latency_ms(backend, tensor: np.ndarray, warmup: int, runs: int) -> dict[str, float]:
    for _ in range(warmup):
        backend.infer(tensor)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.infer(tensor)
        times.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": float(np.median(times)), "min_ms": float(np.min(times)), "runs": runs}


def measure(path: Path, model, tensors: list[np.ndarray], args) -> dict:
    """Latency on the first tensor; AbsRel/δ1 and parity against PyTorch FP32 on all of them."""
    with open_backend(path, threads=args.threads) as backend:
        timing = latency_ms(backend, tensors[0], args.warmup, args.runs)
        outputs = [backend.infer(t) for t in tensors]
    with torch.no_grad():
        expected = [model(torch.from_numpy(t)).numpy() for t in tensors]
    summary = accuracy.summarize([accuracy.compare(o[0], e[0]) for o, e in zip(outputs, expected)])
    parity = max(float(np.abs(o - e).max()) / max(1.0, float(np.abs(e).max())) for o, e in zip(outputs, expected))
    return {**timing, "abs_rel": summary["abs_rel"], "delta1": summary["delta1"], "parity": parity}


def run_size(model, size: int, args, folder: Path, rows: list[dict], save: Callable[[], None]) -> None:
    calibration = CalibrationSet(args.calib_dir, (size, size), args.calib_count, args.holdout)
    tensors = [processing.preprocess(image, fixed_hw=(size, size)) for _, image in calibration.holdout_images()]
    for name in args.cases:
        backend, precision, convert = CASES[name]
        start = time.perf_counter()
        path = convert(model, folder / f"{name}_{size}", size, size, calibration)
        seconds = time.perf_counter() - start
        row = {"case": name, "backend": backend, "precision": precision, "size": size, "convert_s": round(seconds, 1)}
        row.update(measure(path, model, tensors, args))
        row["file_mb"] = round(path.stat().st_size / 1e6, 1)
        row["load_average_1min"] = round(os.getloadavg()[0], 2)  # other processes inflate the latency
        print(json.dumps(row), flush=True)
        rows.append(row)
        save()  # after every row: a long run interrupted keeps what it measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--calib-dir", required=True)
    parser.add_argument("--calib-count", type=int, default=8)
    parser.add_argument("--holdout", type=int, default=3)
    parser.add_argument("--sizes", default="308,518")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()
    args.cases = args.cases.split(",")
    torch.set_num_threads(args.threads)
    model, _ = load_model("vits", "relative", None, args.checkpoint)
    rows: list[dict] = []

    def save() -> None:
        if args.save:
            args.save.write_text(json.dumps(document(args, rows), indent=2) + "\n")

    with tempfile.TemporaryDirectory() as folder:
        for size in map(int, args.sizes.split(",")):
            run_size(model, size, args, Path(folder), rows, save)
    return 0


def document(args, rows: list[dict]) -> dict:
    return {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads used (AMD EPYC, 2 cores)",
        "command": shlex.join(["python", *sys.argv]),
        "tools": {
            name: optional.version(name) or "missing"
            for name in ("torch", "onnxruntime", "litert-torch", "ai-edge-litert", "executorch")
        },
        "note": "latency: median of `runs` infer calls on one held-out picture; AbsRel/δ1 and parity against "
        "PyTorch FP32 on the held-out pictures; ARM CPUs not measured",
        "rows": rows,
    }


if __name__ == "__main__":
    sys.exit(main())
