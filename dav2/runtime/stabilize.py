"""Temporal stabilisation of per-frame depth (dav2-run --stabilize).

Why: a relative model's output is disparity up to an unknown scale and shift, and the model
picks a different one in every frame, so a video's depth "breathes" even where nothing moves
(users' most frequent complaint, upstream issues #85 and #228). Aligning every frame to a
running reference removes that: in disparity space (where the model's ambiguity is affine),
on a sparse grid of pixels, a least-squares scale and shift is fitted, then refitted on the
pixels it explains best (the rest: moving objects, occlusions, sky). The reference is an
exponential average of the aligned frames, so one bad fit cannot make the picture jump and
the scene may change slowly; the colour range is smoothed as for any sequence. Metric models already have a fixed unit
(metres): they get the smoothing of the colour range only (no alignment), as without
--stabilize.
"""

from dataclasses import dataclass, field

import numpy as np

from dav2.vocabulary import ModelKind

GRID_STEP = 8  # fit on every 8th pixel in each direction (about 1/64 of the frame)
KEEP_FRACTION = 0.7  # the robust subset: pixels with the smallest residuals after the first fit
MIN_PIXELS = 64


@dataclass
class AffineFit:
    scale: float
    shift: float

    def apply(self, values: np.ndarray) -> np.ndarray:
        return values * np.float32(self.scale) + np.float32(self.shift)


def fit_scale_shift(source: np.ndarray, target: np.ndarray) -> AffineFit:
    """Least-squares scale and shift taking `source` to `target` (flattened), refitted on the
    KEEP_FRACTION of pixels it fits best."""
    source, target = source.ravel().astype(np.float64), target.ravel().astype(np.float64)
    fit = _lstsq(source, target)
    if source.size >= MIN_PIXELS:
        residual = np.abs(fit.apply(source) - target)
        kept = residual <= np.quantile(residual, KEEP_FRACTION)
        if kept.sum() >= MIN_PIXELS // 2:
            fit = _lstsq(source[kept], target[kept])
    return fit


def _lstsq(source: np.ndarray, target: np.ndarray) -> AffineFit:
    variance = source.var()
    if variance <= 1e-12:
        return AffineFit(1.0, float(target.mean() - source.mean()))
    scale = float(((source - source.mean()) * (target - target.mean())).mean() / variance)
    if scale <= 0:  # a fit that would invert near and far is no fit
        return AffineFit(1.0, 0.0)
    return AffineFit(scale, float(target.mean() - scale * source.mean()))


@dataclass
class Stabilizer:
    """Aligns each frame's depth to a running reference; one instance per video or camera.

    `reference_rate` is how fast the reference follows the aligned frames (0: never, 1: the
    last frame only): this exponential average is the temporal smoothing. `smoothing` (the
    weight of the past in the fitted scale and shift themselves) defaults to 0: a model's
    scale changes independently from frame to frame, so averaging the corrections re-admits
    most of the flicker (measured on a synthetic breathing scene: 0.245 -> 0.186 with 0.6,
    -> ~0 with 0).
    """

    kind: str = ModelKind.RELATIVE
    smoothing: float = 0.0
    reference_rate: float = 0.2
    reference: np.ndarray | None = None
    fit: AffineFit = field(default_factory=lambda: AffineFit(1.0, 0.0))
    fits: list[AffineFit] = field(default_factory=list)  # the smoothed fit of every frame (reports, tests)

    def __call__(self, depth: np.ndarray) -> np.ndarray:
        """(H, W) or (1, H, W) depth -> the same, aligned to the running reference."""
        if self.kind == ModelKind.METRIC:
            return depth
        sample = depth.reshape(depth.shape[-2:])[::GRID_STEP, ::GRID_STEP]
        if self.reference is None or self.reference.shape != sample.shape:
            self.reference = sample.astype(np.float32)
            self.fits.append(self.fit)
            return depth
        raw = fit_scale_shift(sample, self.reference)
        a = self.smoothing
        self.fit = AffineFit(a * self.fit.scale + (1 - a) * raw.scale, a * self.fit.shift + (1 - a) * raw.shift)
        self.fits.append(self.fit)
        aligned = self.fit.apply(depth)
        r = self.reference_rate
        self.reference = (1 - r) * self.reference + r * self.fit.apply(sample)
        return aligned
