"""Dense depth metrics against measured depth: AbsRel, δ1/δ2/δ3, RMSE.

Relative models predict affine-invariant disparity, so their prediction is aligned to the
ground truth in disparity space (1 / depth) on the valid pixels, with least squares (scale
and shift, the default, as in the Depth Anything evaluations) or the median ratio (scale
only), and then turned into depth; metric models are compared as they are. Pixels without
a measurement, or outside [min_depth, max_depth], are masked.
"""

import numpy as np

from dav2.errors import Dav2Error
from dav2.vocabulary import ModelKind

ALIGNMENTS = ("least-squares", "median")


def align_disparity(pred: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray, alignment: str) -> np.ndarray:
    """Predicted disparity mapped onto the ground truth's disparity scale (all pixels)."""
    target = 1.0 / gt_depth[mask].astype(np.float64)
    source = pred[mask].astype(np.float64)
    if alignment == "median":
        scale, shift = np.median(target) / max(np.median(source), 1e-12), 0.0
    elif alignment == "least-squares":
        design = np.stack([source, np.ones_like(source)], axis=1)
        (scale, shift), *_ = np.linalg.lstsq(design, target, rcond=None)
    else:
        raise Dav2Error(f"unknown alignment {alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
    return pred.astype(np.float64) * scale + shift


def depth_metrics(pred_depth: np.ndarray, gt_depth: np.ndarray) -> dict[str, float]:
    """The standard metrics over paired valid pixels (1-D arrays, metres)."""
    ratio = np.maximum(pred_depth / gt_depth, gt_depth / pred_depth)
    return {
        "abs_rel": float(np.mean(np.abs(pred_depth - gt_depth) / gt_depth)),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "rmse": float(np.sqrt(np.mean((pred_depth - gt_depth) ** 2))),
    }


def evaluate_dense(
    pred: np.ndarray,
    gt_depth: np.ndarray,
    valid: np.ndarray,
    kind: str,
    alignment: str = "least-squares",
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
) -> dict[str, float]:
    """Metrics of one prediction (disparity for relative, metres for metric) at the GT's size."""
    if pred.shape != gt_depth.shape:
        raise Dav2Error(f"prediction {pred.shape} and ground truth {gt_depth.shape} differ in size")
    mask = valid & np.isfinite(gt_depth) & (gt_depth > min_depth) & (gt_depth < max_depth)
    if mask.sum() < 10:
        raise Dav2Error("the ground truth has fewer than 10 valid pixels in range")
    if kind == ModelKind.RELATIVE:
        disparity = align_disparity(pred, gt_depth, mask, alignment)
        pred_depth = 1.0 / np.maximum(disparity, 1.0 / max_depth)
    else:
        pred_depth = np.clip(pred.astype(np.float64), min_depth, max_depth)
    metrics = depth_metrics(pred_depth[mask], gt_depth[mask].astype(np.float64))
    metrics["valid_pixels"] = int(mask.sum())
    return metrics


def mean_metrics(per_image: list[dict[str, float]]) -> dict[str, float]:
    keys = ("abs_rel", "delta1", "delta2", "delta3", "rmse")
    summary = {key: float(np.mean([m[key] for m in per_image])) for key in keys}
    summary["images"] = len(per_image)
    return summary
