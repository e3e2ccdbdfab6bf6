"""Metric scale from 10 anchors on real RGB-D frames (../shared/depth-gt): AbsRel against the full ground truth.

    python benchmarks/anchors_depth_gt.py [--anchors 10] [--seed 0] [--out FILE.md]

For every frame: the seeded vits relative and metric models (scripts/seeded_checkpoint.py; no
pretrained weights can be had here, so absolute numbers mean little), 10 ground-truth pixels drawn
at random as anchors, and AbsRel over all valid ground-truth pixels of
- metric: the metric model as it is;
- metric + anchors: its scale corrected from the anchors (dav2.geometry.fit_anchors);
- relative + anchors: scale and shift of the relative model's disparity from the anchors;
- anchors only: a constant depth, the anchors' median (what the anchors give without a model);
- relative, full-GT fit: scale and shift fitted on every GT pixel (the bound dav2-eval reports).
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dav2.errors import Dav2Error  # noqa: E402
from dav2.evaluation.dense import align_disparity  # noqa: E402
from dav2.evaluation.groundtruth import read_depth  # noqa: E402
from dav2.geometry.anchors import Anchor, fit_anchors  # noqa: E402

SHARED = Path(os.environ.get("DAV2_SHARED") or ROOT.parent / "shared") / "depth-gt"  # the measured RGB-D frames
MIN_DEPTH = 1e-3


def frames() -> list[dict]:
    """(name, rgb, depth file, format, metric max_depth) of every frame with measured depth."""
    found = []
    for folder, fmt, max_depth in (("nyu_demo", "png-mm", 20.0), ("kitti_demo", "png-kitti", 80.0)):
        annotations = json.loads((SHARED / "metric3d" / folder / "test_annotations.json").read_text())
        for entry in annotations["files"]:
            rgb = SHARED / "metric3d" / entry["rgb"].removeprefix("data/")
            depth = SHARED / "metric3d" / entry["depth"].removeprefix("data/")
            found.append(dict(name=f"{folder}/{rgb.stem}", rgb=rgb, depth=depth, fmt=fmt, max_depth=max_depth))
    other = SHARED / "open3d" / "other_formats"
    for name, rgb, depth, fmt in (
        ("unidepth", SHARED / "unidepth" / "rgb.png", SHARED / "unidepth" / "depth.png", "png-mm"),
        ("open3d/NYU", other / "NYU_color.ppm", other / "NYU_depth.pgm", "nyu-raw"),
        ("open3d/SUN", other / "SUN_color.jpg", other / "SUN_depth.png", "sun"),
        ("open3d/TUM", other / "TUM_color.png", other / "TUM_depth.png", "png-tum"),
        ("promptda", SHARED / "promptda" / "image.jpg", SHARED / "promptda" / "arkit_depth.png", "png-mm"),
    ):
        if rgb.is_file() and depth.is_file():
            found.append(dict(name=name, rgb=rgb, depth=depth, fmt=fmt, max_depth=20.0))
    return found


def abs_rel(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    pred = pred[mask].astype(np.float64)
    gt = gt[mask].astype(np.float64)
    pred = np.where(pred > 0, pred, MIN_DEPTH)  # a non-positive prediction counts as a miss, not a hole
    return float(np.mean(np.abs(pred - gt) / gt))


def draw_anchors(gt: np.ndarray, mask: np.ndarray, count: int, rng: np.random.Generator) -> list[Anchor]:
    v, u = np.nonzero(mask)
    pick = rng.choice(len(u), size=count, replace=False)
    return [Anchor(float(u[i]), float(v[i]), float(gt[v[i], u[i]])) for i in pick]


def fit_or_none(prediction: np.ndarray, anchors: list[Anchor], kind: str):
    """The fit, or None where dav2 refuses it (the anchors contradict the model's depth order)."""
    try:
        return fit_anchors(prediction, anchors, kind)
    except Dav2Error as exc:
        print(f"  {kind}: refused: {exc}", file=sys.stderr)
        return None


def cell(value: float | None, bold: bool = False) -> str:
    if value is None:
        return "refused"
    return f"**{value:.3f}**" if bold else f"{value:.3f}"


def mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def to_gt_size(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    if pred.shape == gt.shape:
        return pred
    return cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "scripts"))
    import seeded_checkpoint  # noqa: E402

    from dav2.models.checkpoint import load_model

    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        relative_path = Path(tmp) / "relative.pth"
        metric_path = Path(tmp) / "metric.pth"
        seeded_checkpoint.write_checkpoint("vits", "relative", relative_path)
        seeded_checkpoint.write_checkpoint("vits", "metric", metric_path)
        relative, _ = load_model("vits", "relative", None, str(relative_path))
        metric_models = {m: load_model("vits", "metric", m, str(metric_path))[0] for m in (20.0, 80.0)}
        for frame in frames():
            start = time.perf_counter()
            image = cv2.imread(str(frame["rgb"]))
            gt, valid = read_depth(frame["depth"], frame["fmt"])
            mask = valid & np.isfinite(gt) & (gt > MIN_DEPTH) & (gt < frame["max_depth"])
            disparity = to_gt_size(relative.infer_image(image), gt)
            metres = to_gt_size(metric_models[frame["max_depth"]].infer_image(image), gt)
            anchors = draw_anchors(gt, mask, args.anchors, rng)
            relative_fit = fit_or_none(disparity, anchors, "relative")
            metric_fit = fit_or_none(metres, anchors, "metric")
            full = align_disparity(disparity, gt, mask, "least-squares")
            constant = np.full_like(gt, np.median([a.metres for a in anchors]))
            rows.append(
                dict(
                    frame=frame["name"],
                    pixels=int(mask.sum()),
                    metric=abs_rel(metres, gt, mask),
                    metric_anchored=abs_rel(metric_fit.apply(metres), gt, mask) if metric_fit else None,
                    relative_anchored=abs_rel(relative_fit.apply(disparity), gt, mask) if relative_fit else None,
                    anchors_only=abs_rel(constant, gt, mask),
                    relative_full_fit=abs_rel(np.where(full > 0, 1 / np.maximum(full, 1e-9), 0), gt, mask),
                    anchor_residual=relative_fit.median_rel if relative_fit else None,
                )
            )
            print(f"{frame['name']}: {rows[-1]} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    report = table(rows, args)
    print(report)
    if args.out:
        args.out.write_text(report)


def table(rows: list[dict], args) -> str:
    columns = ("metric", "metric_anchored", "relative_anchored", "anchors_only", "relative_full_fit")
    lines = [
        "| frame | valid px | metric | metric + anchors | relative + anchors | anchors only (median) "
        "| relative, full-GT fit | anchor residual (median rel.) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = " | ".join(cell(row[c]) for c in columns)
        residual = "" if row["anchor_residual"] is None else f"{100 * row['anchor_residual']:.1f}%"
        lines.append(f"| {row['frame']} | {row['pixels']} | {cells} | {residual} |")
    means = " | ".join(cell(mean([r[c] for r in rows]), bold=True) for c in columns)
    lines.append(f"| mean of {len(rows)} (refused fits left out) | | {means} | |")
    header = (
        f"AbsRel against all valid ground-truth pixels, {args.anchors} anchors per frame (random valid GT pixels, "
        f"seed {args.seed}), seeded vits weights (scripts/seeded_checkpoint.py), PyTorch FP32 on the CPU.\n\n"
        f"Command: `python benchmarks/anchors_depth_gt.py --anchors {args.anchors} --seed {args.seed} "
        "--out benchmarks/results/anchors_depth_gt.md`\n\n"
    )
    return header + "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
