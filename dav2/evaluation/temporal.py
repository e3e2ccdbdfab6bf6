"""Temporal consistency of depth on a video (dav2-eval temporal): flicker and a TAE-like error.

Why these two: `flicker` is what a viewer sees, the mean absolute change of disparity between
consecutive frames on static pixels (where the input itself barely changes). `tae` is what
alignment cannot fix: each frame is aligned to the previous one by least-squares scale and
shift on the same static pixels and the remaining change is averaged (as Video Depth
Anything's temporal alignment error, with the previous frame instead of a pose-warped one,
since a plain clip has no camera poses). Stabilisation should cut flicker and leave tae
alone: it changes each frame by a scale and shift only.

Both are in units of the two frames' disparity spread (their 10-90 % range, averaged), so
they do not reward a stabiliser for flattening the depth's contrast: a map squeezed towards
its mean changes less between frames in absolute terms, but not relative to its own spread.

With --stabilize the same per-frame predictions are also run through the stabiliser, and
`abs_rel_vs_unstabilized` is the per-frame AbsRel of the stabilised frames against the model's
own frames after least-squares scale-and-shift alignment (as every relative comparison in
dav2): what stabilising costs each frame as a depth map. An affine stabiliser costs nothing.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from dav2.accuracy import align_scale_shift, compare
from dav2.errors import Dav2Error
from dav2.runtime.stabilize import Stabilizer
from dav2.vocabulary import ModelKind

STATIC_THRESHOLD = 3.0  # grey-level change (0..255, after a 5x5 blur) below which a pixel is static
MAX_FRAMES = 10_000


@dataclass
class TemporalScores:
    frames: int
    flicker: float
    tae: float
    static_fraction: float  # share of pixels used as static, averaged over frame pairs


def static_masks(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Pixels of each consecutive pair whose blurred grey value changed by < STATIC_THRESHOLD."""
    grey = [cv2.GaussianBlur(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32), (5, 5), 0) for f in frames]
    return [np.abs(b - a) < STATIC_THRESHOLD for a, b in zip(grey, grey[1:], strict=False)]


def spread(depth: np.ndarray) -> float:
    """The 10-90 % range of a disparity map: its contrast, robust to a few extreme pixels."""
    low, high = np.percentile(depth, [10, 90])
    return float(high - low)


def temporal_scores(depths: list[np.ndarray], masks: list[np.ndarray]) -> TemporalScores:
    """Flicker and TAE of a sequence of disparity maps, given each pair's static mask."""
    flicker, tae, used = [], [], []
    for (previous, current), mask in zip(zip(depths, depths[1:], strict=False), masks, strict=False):
        if mask.sum() < 16:
            continue
        norm = 0.5 * (spread(previous) + spread(current)) or 1.0
        p, c = previous[mask], current[mask]
        flicker.append(float(np.abs(c - p).mean()) / norm)
        aligned = align_scale_shift(c, p, np.ones(c.shape, bool))
        tae.append(float(np.abs(aligned - p).mean()) / norm)
        used.append(float(mask.mean()))
    if not flicker:
        raise Dav2Error("no static pixels between consecutive frames: the clip is all motion")
    return TemporalScores(len(depths), float(np.mean(flicker)), float(np.mean(tae)), float(np.mean(used)))


def read_video(path: str | Path, max_frames: int | None) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while max_frames is None or len(frames) < max_frames:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if len(frames) < 2:
        raise Dav2Error(f"{path} has fewer than two readable frames")
    return frames


def abs_rel(stabilized: list[np.ndarray], raw: list[np.ndarray]) -> float:
    """Mean per-frame AbsRel of the stabilised frames against the raw ones, after least-squares
    scale-and-shift alignment (dav2.accuracy.compare, relative)."""
    return float(np.mean([compare(s, r, ModelKind.RELATIVE)["abs_rel"] for s, r in zip(stabilized, raw, strict=True)]))


def evaluate_temporal(
    model: str, video: str, stabilize: bool, input_size: int | None = None, max_frames: int | None = None
) -> dict:
    """Predict every frame of `video` with `model`; score raw (and stabilised) depth."""
    from dav2.runtime.backends import open_backend
    from dav2.runtime.feed import predictor

    frames = read_video(video, max_frames)
    with open_backend(model) as backend:
        predict = predictor(backend, input_size, "float32")
        raw = [predict(frame) for frame in frames]
        kind = backend.kind
    masks = static_masks(frames)
    result = {"model": Path(model).name, "video": Path(video).name, "stabilized": stabilize}
    per_frame = asdict(temporal_scores(raw, masks))
    if not stabilize:
        return {**result, **per_frame}
    stabilizer = Stabilizer(kind)
    steady = [stabilizer(depth) for depth in raw]
    scores = asdict(temporal_scores(steady, masks))
    return {
        **result,
        **scores,
        "unstabilized": per_frame,
        "flicker_reduction": per_frame["flicker"] / scores["flicker"] if scores["flicker"] > 0 else None,
        "abs_rel_vs_unstabilized": abs_rel(steady, raw),
    }
