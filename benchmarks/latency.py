"""CPU latency of one network forward: PyTorch eager FP32 against ONNX Runtime, same weights.

Times backend.infer() only (no pre/post-processing), batch 1, after warm-up; reports the
median of `--passes` medians of `--runs` runs each. dav2-bench (issue 4) will supersede this.

    python benchmarks/latency.py --checkpoint depth_anything_v2_vits.pth --size 518 --threads 2
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def median_latency_ms(infer, batch, warmup: int, runs: int, passes: int) -> tuple[float, list[float]]:
    for _ in range(warmup):
        infer(batch)
    medians = []
    for _ in range(passes):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            infer(batch)
            times.append((time.perf_counter() - start) * 1000)
        medians.append(statistics.median(times))
    return statistics.median(medians), medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--encoder", default="vits")
    parser.add_argument("--size", type=int, default=518, help="square input H = W")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()

    from dav2.export.pipeline import export_artifacts
    from dav2.runtime.backends import open_backend

    batch = np.random.default_rng(0).standard_normal((1, 3, args.size, args.size)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_artifacts(
            args.encoder,
            "relative",
            None,
            args.checkpoint,
            args.size,
            args.size,
            False,
            False,
            "torchscript",
            None,
            Path(tmp),
        )[0]
        for name, model in (("torch eager FP32", args.checkpoint), ("ONNX Runtime FP32 (CPU EP)", onnx_path)):
            backend = open_backend(model, threads=args.threads)
            median, medians = median_latency_ms(backend.infer, batch, args.warmup, args.runs, args.passes)
            rows.append(
                {"backend": name, "median_ms": round(median, 1), "pass_medians_ms": [round(m, 1) for m in medians]}
            )
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "threads": args.threads}
    print(f"| {args.encoder} {args.size}x{args.size}, batch 1, {args.threads} threads | median ms | speed-up |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['backend']} | {row['median_ms']} | {rows[0]['median_ms'] / row['median_ms']:.2f}x |")
    print(json.dumps({"machine": machine, "args": vars(args), "results": rows}))


if __name__ == "__main__":
    main()
