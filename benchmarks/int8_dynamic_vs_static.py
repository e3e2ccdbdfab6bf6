#!/usr/bin/env python3
"""INT8 on a dynamic graph against the same recipe on a static one (issue 19).

For each INT8 path (OpenVINO/NNCF, ONNX Runtime dynamic and static, Model Optimizer's Q/DQ
graph) this runs `dav2-export` twice at --height/--width SIZE, once --dynamic and once
static, with the accuracy gate off (--max-abs-rel off: the point is to measure), and records
two numbers per artifact against PyTorch FP32:

- the export's own accuracy report (the sidecar's `accuracy`): the held-out pictures of
  --calib-dir, at their aspect ratio for the dynamic artifact (short side SIZE, as upstream's
  infer_image) and stretched to SIZE x SIZE for the static one: what a user is shown;
- AbsRel and δ1 at SIZE x SIZE for both, on the same held-out pictures and tensors, so the
  pair differs in the graph's shape and nothing else.

    python scripts/seeded_checkpoint.py vits relative /tmp/vits.pth
    python benchmarks/int8_dynamic_vs_static.py --checkpoint /tmp/vits.pth --calib-dir tests/data/images \\
        --save benchmarks/results/amd-epyc-2-cores-int8-dynamic-vs-static.md
"""

import argparse
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dav2 import accuracy, processing
from dav2.metadata import ArtifactMetadata
from dav2.models.checkpoint import load_model
from dav2.runtime.backends import open_backend
from dav2.vocabulary import ModelKind

PATHS = {  # name -> (what the table calls it, dav2-export's flags)
    "openvino": ("OpenVINO INT8 (NNCF)", ["--openvino", "int8"]),
    "ort-dynamic": ("ONNX Runtime INT8 (dynamic)", ["--onnx", "--int8", "--ort-int8", "dynamic"]),
    "ort-static": ("ONNX Runtime INT8 (static QDQ)", ["--onnx", "--int8", "--ort-int8", "static"]),
    "qdq": ("Model Optimizer Q/DQ (TensorRT's INT8 graph)", ["--onnx", "--int8", "--ort-int8", "qdq"]),
}


def export(arguments: list[str]) -> Path:
    """Run dav2-export; the artifact path it printed last."""
    result = subprocess.run(["dav2-export", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"dav2-export {shlex.join(arguments)} failed:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


def square_metrics(artifact: Path, model, pictures: list[np.ndarray], size: int) -> dict:
    """Mean AbsRel and δ1 against PyTorch FP32 at size x size."""
    rows = []
    with open_backend(artifact) as backend:
        for image in pictures:
            tensor = processing.preprocess(image, fixed_hw=(size, size))
            with torch.no_grad():
                expected = model(torch.from_numpy(tensor)).numpy()
            rows.append(accuracy.compare(backend.infer(tensor)[0], expected[0], ModelKind.RELATIVE))
    return {key: round(float(np.mean([row[key] for row in rows])), 4) for key in ("abs_rel", "delta1")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--calib-dir", required=True)
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated names of PATHS")
    parser.add_argument("--save", type=Path, required=True, help="the .md to write (and the .json beside it)")
    parser.add_argument("--resume", action="store_true", help="keep the rows already in the .json, run the rest")
    args = parser.parse_args()

    from dav2.calibration.dataset import CalibrationSet

    size = args.size
    model = load_model(None, None, None, args.checkpoint)[0]
    held_out = [image for _, image in CalibrationSet(args.calib_dir, (size, size), 32, 4, 0).holdout_images()]
    rows, commands = [], []
    if args.resume and args.save.with_suffix(".json").is_file():
        earlier = json.loads(args.save.with_suffix(".json").read_text())
        rows, commands = earlier["rows"], earlier["exports"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.paths.split(","):
            label, flags = PATHS[name]
            for shape in ("dynamic", "static"):
                if any(row["path"] == label and row["graph"] == shape for row in rows):
                    continue
                out = Path(tmp) / f"{len(rows)}"
                arguments = ["--checkpoint", args.checkpoint, *flags, "--calib-dir", args.calib_dir]
                arguments += ["--height", str(size), "--width", str(size), "--max-abs-rel", "off", "--output", str(out)]
                arguments += ["--dynamic"] if shape == "dynamic" else []
                start = time.perf_counter()
                artifact = export(arguments)
                report = ArtifactMetadata.read(artifact).accuracy
                square = square_metrics(artifact, model, held_out, size)
                row = {
                    "path": label,
                    "graph": shape,
                    "abs_rel": round(report.abs_rel, 4),
                    "delta1": round(report.delta1, 4),
                    "held_out": report.inputs,
                    f"abs_rel_{size}x{size}": square["abs_rel"],
                    f"delta1_{size}x{size}": square["delta1"],
                    "export_seconds": round(time.perf_counter() - start, 1),
                }
                rows.append(row)
                commands.append("dav2-export " + shlex.join(arguments).replace(str(out), "OUT"))
                print(json.dumps(row), flush=True)
                write(args, rows, commands)  # after every row, so that --resume can go on from here


def write(args, rows: list[dict], commands: list[str]) -> None:
    import onnxruntime
    import openvino

    size = args.size
    machine = f"{platform.processor() or platform.machine()}, 2 cores (AMD EPYC)"
    tools = {"onnxruntime": onnxruntime.__version__, "openvino": openvino.__version__, "torch": torch.__version__}
    runner = "python benchmarks/int8_dynamic_vs_static.py " + shlex.join(a for a in sys.argv[1:] if a != "--resume")
    record = {"machine": machine, "tools": tools, "command": runner, "exports": commands, "size": size, "rows": rows}
    args.save.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [
        f"# INT8 on dynamic vs static graphs (vits, {size}, seeded weights)",
        "",
        f"Machine: {machine}; {', '.join(f'{k} {v}' for k, v in tools.items())}.",
        "",
        f"Command: `{runner}`, which runs for each row (OUT: a scratch folder):",
        "",
        *[f"    {command}" for command in commands],
        "",
        "Report: the export's accuracy report (held-out pictures of --calib-dir; dynamic artifacts at the "
        f"pictures' aspect ratio, short side {size}; static ones stretched to {size}x{size}). "
        f"{size}x{size}: both artifacts on the same {size}x{size} tensors. AbsRel after scale-and-shift "
        "alignment against PyTorch FP32.",
        "",
        f"| path | graph | AbsRel (report) | δ1 (report) | AbsRel {size}x{size} | δ1 {size}x{size} "
        "| dynamic / static |",
        "|---|---|---|---|---|---|---|",
    ]
    static = {row["path"]: row[f"abs_rel_{size}x{size}"] for row in rows if row["graph"] == "static"}
    for row in rows:
        paired = row["graph"] == "dynamic" and row["path"] in static
        ratio = row[f"abs_rel_{size}x{size}"] / static[row["path"]] if paired else None
        lines.append(
            f"| {row['path']} | {row['graph']} | {row['abs_rel']:.4f} | {row['delta1']:.4f} | "
            f"{row[f'abs_rel_{size}x{size}']:.4f} | {row[f'delta1_{size}x{size}']:.4f} | "
            f"{'' if ratio is None else f'{ratio:.2f}x'} |"
        )
    args.save.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
