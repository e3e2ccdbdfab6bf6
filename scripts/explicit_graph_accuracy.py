#!/usr/bin/env python3
"""AbsRel of the precision-explicit FP16 and Q/DQ INT8 graphs (what TensorRT engines are built
from) against the FP32 graph, in ONNX Runtime and OpenVINO, on held-out photos.

    python scripts/seeded_checkpoint.py vits relative /tmp/vits.pth
    python scripts/explicit_graph_accuracy.py /tmp/vits.pth /work/shared/images /tmp/explicit out.json

Exports (dav2-export) the FP32, FP16 (--fp16) and INT8 Q/DQ (--int8 --ort-int8 qdq) ONNX graphs,
dynamic and traced at 518, INT8 calibrated on the folder's first images; the last `--holdout`
photos of the folder (never calibrated on) are compared at their upstream network size
(518 short side, aspect ratio kept).
"""

import json
import platform
import subprocess
import sys
from pathlib import Path

from dav2 import accuracy, optional, processing
from dav2.media import read_image, scan_folder
from dav2.runtime.backends import open_backend
from dav2.runtime.backends.openvino import OpenVinoBackend

HOLDOUT = 4
CALIBRATION = 16


def export(checkpoint: str, out: Path, *flags: str) -> None:
    command = ["dav2-export", "--checkpoint", checkpoint, "--output", str(out), *flags]
    subprocess.run(command, check=True)


def main(checkpoint: str, images: str, work: str, result: str) -> None:
    work_dir = Path(work)
    photos = scan_folder(Path(images)).files
    held_out = photos[-HOLDOUT:]
    export(checkpoint, work_dir / "fp32", "--onnx")
    export(checkpoint, work_dir / "fp16", "--onnx", "--fp16")
    calib = ["--calib-dir", images, "--calib-count", str(CALIBRATION), "--holdout", str(HOLDOUT), "--calib-seed", "0"]
    export(
        checkpoint, work_dir / "int8", "--onnx", "--int8", "--ort-int8", "qdq", "--int8-float", "patch_embed", *calib
    )
    stem = "depth_anything_v2_vits_dynamic"
    graphs = {
        "fp16": work_dir / "fp16" / f"{stem}_fp16.onnx",
        "int8": work_dir / "int8" / f"{stem}_int8_qdq.onnx",
    }
    tensors = [processing.preprocess(read_image(p), 518) for p in held_out]
    with open_backend(work_dir / "fp32" / f"{stem}.onnx") as fp32:
        references = [fp32.infer(t)[0] for t in tensors]
    rows = []
    for precision, graph in graphs.items():
        hint = "f32" if precision == "fp16" else None  # FP16 graph: no BF16 rounding on top of it
        runners = {
            "onnxruntime": lambda graph=graph: open_backend(graph),
            "openvino": lambda graph=graph, hint=hint: OpenVinoBackend(graph, None, inference_precision=hint),
        }
        for runtime, opener in runners.items():
            with opener() as backend:
                per = [accuracy.compare(backend.infer(t)[0], r) for t, r in zip(tensors, references)]
            summary = accuracy.summarize(per)
            rows.append({"graph": graph.name, "precision": precision, "runtime": runtime, **summary,
                         "shapes": [list(t.shape) for t in tensors]})  # fmt: skip
            print(rows[-1])
    record = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.processor() or platform.machine()}, {platform.platform()}",
        "versions": {n: optional.version(n) for n in ("onnxruntime", "openvino", "nvidia-modelopt", "onnx")},
        "held_out": [p.name for p in held_out],
        "against": "the FP32 ONNX graph in ONNX Runtime (same inputs)",
        "rows": rows,
    }
    Path(result).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:5])
