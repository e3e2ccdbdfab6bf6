#!/usr/bin/env python3
"""Accuracy and speed of the precision-explicit ONNX graphs (what TensorRT engines are built from).

Runs the real commands (`dav2-export --onnx`, `--fp16`, `--int8 --ort-int8 qdq`) on a seeded
checkpoint, then measures each graph on the held-out photos of the export (never calibrated
on) against PyTorch FP32, in ONNX Runtime and in OpenVINO, and times one 518x518 frame in
each (median of --runs after warm-up). Writes a Markdown table with the command line.

    python scripts/seeded_checkpoint.py vits relative /tmp/vits.pth
    python benchmarks/explicit_precision.py --checkpoint /tmp/vits.pth --images PHOTOS \\
        --save benchmarks/results/amd-epyc-2-cores-explicit-precision.md
"""

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dav2 import accuracy, processing
from dav2.media import read_image, scan_folder
from dav2.metadata import ArtifactMetadata
from dav2.runtime.backends import open_backend
from dav2.runtime.backends.openvino import OpenVinoBackend

VARIANTS = [  # (label, dav2-export arguments, artifact suffix)
    ("FP32 graph", ["--onnx"], ".onnx"),
    ("FP16 AutoCast (FP32 islands)", ["--onnx", "--fp16"], "_fp16.onnx"),
    ("INT8 Q/DQ (Model Optimizer)", ["--onnx", "--int8", "--ort-int8", "qdq"], "_int8_qdq.onnx"),
]


def export(checkpoint: str, images: str, out: Path, args: list[str], count: int) -> None:
    calibration = ["--calib-dir", images, "--calib-count", str(count), "--holdout", "4"]
    command = ["dav2-export", "--checkpoint", checkpoint, *args, *calibration, "--output", str(out)]
    subprocess.run(command, check=True)


def median_ms(infer, tensor: np.ndarray, runs: int) -> float:
    for _ in range(2):
        infer(tensor)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        infer(tensor)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def measure(path: Path, reference, held_out: list[np.ndarray], frame: np.ndarray, runs: int) -> list[dict]:
    rows = []
    runtimes = [("ONNX Runtime", lambda: open_backend(path, "onnxruntime"))]
    runtimes.append(("OpenVINO", lambda: OpenVinoBackend(path, None)))  # the device's own precision
    for name, opener in runtimes:
        with opener() as backend:
            scores = [accuracy.compare(backend.infer(t)[0], reference(t)[0]) for t in held_out]
            rows.append({"runtime": name, **accuracy.summarize(scores), "ms": median_ms(backend.infer, frame, runs)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--calib-count", type=int, default=16)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--work", default="/tmp/dav2-explicit")
    parser.add_argument("--save", default=None)
    parser.add_argument("--reuse", action="store_true", help="measure the artifacts already in --work")
    options = parser.parse_args()
    work = Path(options.work)
    stem = work / "depth_anything_v2_vits_dynamic"
    for _, args, suffix in VARIANTS:
        if not (options.reuse and Path(f"{stem}{suffix}").is_file()):
            export(options.checkpoint, options.images, work, args, options.calib_count)
    held_names = ArtifactMetadata.read(Path(f"{stem}_int8_qdq.onnx")).accuracy.inputs
    photos = {p.name: p for p in scan_folder(Path(options.images)).files}
    held_out = [processing.preprocess(read_image(photos[n]), 518) for n in held_names]
    frame = processing.preprocess(read_image(photos[held_names[0]]), fixed_hw=(518, 518))
    with open_backend(options.checkpoint) as torch_fp32:
        reference = torch_fp32.infer
        lines = table(options, stem, reference, held_out, frame, held_names)
    text = "\n".join(lines) + "\n"
    print(text)
    if options.save:
        Path(options.save).write_text(text)


def table(options, stem: Path, reference, held_out, frame, held_names) -> list[str]:
    lines = [
        "# Precision-explicit ONNX graphs: accuracy and CPU speed",
        "",
        f"Machine: {platform.processor() or platform.machine()}, 2 cores, no GPU; vits, seeded weights.",
        f"Command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`",
        f"Accuracy: against PyTorch FP32 on the {len(held_out)} held-out photos ({', '.join(held_names)}) at "
        "input size 518, after scale-and-shift alignment; INT8 calibrated on the other photos "
        f"({options.calib_count}). Latency: one 518x518 frame, median of {options.runs} runs, 2 threads.",
        "OpenVINO runs each graph in the CPU's own precision (BF16 on this CPU for FP32/FP16 parts).",
        "",
        "| graph | runtime | AbsRel | δ1 | max abs diff | median ms |",
        "|---|---|---|---|---|---|",
    ]
    for label, _, suffix in VARIANTS:
        for row in measure(Path(f"{stem}{suffix}"), reference, held_out, frame, options.runs):
            lines.append(
                f"| {label} | {row['runtime']} | {row['abs_rel']:.4f} | {row['delta1']:.4f} | "
                f"{row['max_abs_diff']:.3g} | {row['ms']:.1f} |"
            )
    return lines


if __name__ == "__main__":
    main()
