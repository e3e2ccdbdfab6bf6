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

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dav2.accuracy import align_scale_shift, compare
from dav2.errors import Dav2Error, quote
from dav2.files import check_user_file
from dav2.media import DEFAULT_LIMITS, ImageLimits
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


def blurred_grey(frame: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32), (5, 5), 0)


def static_masks(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Pixels of each consecutive pair whose blurred grey value changed by < STATIC_THRESHOLD."""
    grey = [blurred_grey(f) for f in frames]
    return [np.abs(b - a) < STATIC_THRESHOLD for a, b in zip(grey, grey[1:], strict=False)]


def spread(depth: np.ndarray) -> float:
    """The 10-90 % range of a disparity map: its contrast, robust to a few extreme pixels."""
    low, high = np.percentile(depth, [10, 90])
    return float(high - low)


@dataclass
class TemporalMeter:
    """Flicker and TAE of a stream of disparity maps, fed one frame at a time: keeps only the
    previous map and one score per frame pair."""

    frames: int = 0
    flicker: list[float] = field(default_factory=list)
    tae: list[float] = field(default_factory=list)
    used: list[float] = field(default_factory=list)
    previous: np.ndarray | None = None

    def add(self, depth: np.ndarray, mask: np.ndarray | None) -> None:
        """The next map, and the static pixels between it and the previous frame (None for the first)."""
        if self.previous is not None and mask is not None and mask.sum() >= 16:
            norm = 0.5 * (spread(self.previous) + spread(depth)) or 1.0
            p, c = self.previous[mask], depth[mask]
            self.flicker.append(float(np.abs(c - p).mean()) / norm)
            aligned = align_scale_shift(c, p, np.ones(c.shape, bool))
            self.tae.append(float(np.abs(aligned - p).mean()) / norm)
            self.used.append(float(mask.mean()))
        self.previous = depth
        self.frames += 1

    def scores(self) -> TemporalScores:
        if not self.flicker:
            raise Dav2Error("no static pixels between consecutive frames: the clip is all motion")
        return TemporalScores(
            self.frames, float(np.mean(self.flicker)), float(np.mean(self.tae)), float(np.mean(self.used))
        )


def temporal_scores(depths: list[np.ndarray], masks: list[np.ndarray]) -> TemporalScores:
    """Flicker and TAE of a sequence of disparity maps, given each pair's static mask."""
    meter = TemporalMeter()
    for index, depth in enumerate(depths):
        meter.add(depth, masks[index - 1] if index else None)
    return meter.scores()


def video_frames(
    path: str | Path, max_frames: int | None, limits: ImageLimits = DEFAULT_LIMITS
) -> Iterator[np.ndarray]:
    """The frames of a video file, one at a time, each within `limits`."""
    check_user_file(path, 1 << 50, "video")  # a regular file (a FIFO would block OpenCV for ever)
    capture = cv2.VideoCapture(str(path))
    count = 0
    try:
        while max_frames is None or count < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            limits.check(frame.shape[1], frame.shape[0], f"{quote(path)}'s frames")
            count += 1
            yield frame
    finally:
        capture.release()


def read_video(path: str | Path, max_frames: int | None) -> list[np.ndarray]:
    """Every frame of a short clip in memory (tests and small tools; the evaluator streams)."""
    frames = list(video_frames(path, max_frames))
    if len(frames) < 2:
        raise Dav2Error(f"{quote(path)} has fewer than two readable frames")
    return frames


def abs_rel(stabilized: list[np.ndarray], raw: list[np.ndarray]) -> float:
    """Mean per-frame AbsRel of the stabilised frames against the raw ones, after least-squares
    scale-and-shift alignment (dav2.accuracy.compare, relative)."""
    return float(np.mean([compare(s, r, ModelKind.RELATIVE)["abs_rel"] for s, r in zip(stabilized, raw, strict=True)]))


def evaluate_temporal(
    model: str, video: str, stabilize: bool, input_size: int | None = None, max_frames: int | None = None
) -> dict:
    """Predict every frame of `video` with `model`, one at a time; score raw (and stabilised) depth."""
    from dav2.runtime.backends import open_backend
    from dav2.runtime.feed import predictor

    limit = MAX_FRAMES if max_frames is None else min(max_frames, MAX_FRAMES)
    raw_meter, steady_meter, costs = TemporalMeter(), TemporalMeter(), []
    with open_backend(model) as backend:
        predict = predictor(backend, input_size, "float32")
        kind = backend.kind
        stabilizer = Stabilizer(kind)
        previous_grey = None
        for frame in video_frames(video, limit):
            grey = blurred_grey(frame)
            mask = None if previous_grey is None else np.abs(grey - previous_grey) < STATIC_THRESHOLD
            previous_grey = grey
            depth = predict(frame)
            raw_meter.add(depth, mask)
            if stabilize:
                steady = stabilizer(depth)
                steady_meter.add(steady, mask)
                costs.append(compare(steady, depth, ModelKind.RELATIVE)["abs_rel"])
    if raw_meter.frames < 2:
        raise Dav2Error(f"{quote(video)} has fewer than two readable frames")
    result = {"model": Path(model).name, "video": Path(video).name, "stabilized": stabilize}
    per_frame = asdict(raw_meter.scores())
    if not stabilize:
        return {**result, **per_frame}
    scores = asdict(steady_meter.scores())
    return {
        **result,
        **scores,
        "unstabilized": per_frame,
        "flicker_reduction": per_frame["flicker"] / scores["flicker"] if scores["flicker"] > 0 else None,
        "abs_rel_vs_unstabilized": float(np.mean(costs)),
    }
