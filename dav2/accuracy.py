"""How far a depth map is from a reference one: AbsRel, δ1 and the largest difference.

Used by the accuracy report after reduced-precision exports (artifact vs the FP32 PyTorch
model) and by dav2-bench. numpy only.

Relative models predict affine-invariant disparity, so the prediction is first aligned to the
reference with the least-squares scale and shift (in disparity space, as the Depth Anything
evaluations do); metric models are compared as they are. Pixels whose reference is below
0.1% of its maximum (the sky, where disparity is ~0) are left out of AbsRel and δ1, as a
ground truth would mask them; the maximum difference covers every pixel, unaligned.
"""

import numpy as np

VALID_FRACTION = 1e-3


def align_scale_shift(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`pred * s + t` with the s, t minimising the squared error to `ref` on `mask`."""
    p = pred[mask].astype(np.float64)
    r = ref[mask].astype(np.float64)
    design = np.stack([p, np.ones_like(p)], axis=1)
    (scale, shift), *_ = np.linalg.lstsq(design, r, rcond=None)
    return pred.astype(np.float64) * scale + shift


def compare(pred: np.ndarray, ref: np.ndarray, kind: str = "relative") -> dict[str, float]:
    """AbsRel, δ1 (share of pixels within a factor 1.25) and max |pred - ref| for one map."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    ref64 = ref.astype(np.float64)
    mask = ref64 > VALID_FRACTION * max(float(ref64.max()), 0.0)
    if not mask.any():
        raise ValueError("the reference has no positive values to compare against")
    aligned = align_scale_shift(pred, ref64, mask) if kind == "relative" else pred.astype(np.float64)
    a = np.maximum(aligned[mask], 1e-12)
    r = ref64[mask]
    ratio = np.maximum(a / r, r / a)
    return {
        "abs_rel": float(np.mean(np.abs(a - r) / r)),
        "delta1": float(np.mean(ratio < 1.25)),
        "max_abs_diff": float(np.abs(pred.astype(np.float64) - ref64).max()),
    }


def summarize(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Mean AbsRel and δ1 over images, and the largest difference of any image."""
    if not per_image:
        raise ValueError("no images were compared")
    return {
        "abs_rel": float(np.mean([m["abs_rel"] for m in per_image])),
        "delta1": float(np.mean([m["delta1"] for m in per_image])),
        "max_abs_diff": float(max(m["max_abs_diff"] for m in per_image)),
        "images": len(per_image),
    }
