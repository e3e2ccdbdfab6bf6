"""Metric scale from a few measured points ("anchors": pixel u, v and the distance in metres).

A relative model predicts disparity up to an unknown scale and shift: true 1/z = s * d + t. A
tape measure or a few LiDAR returns give 1/z at some pixels, and two of them already fix s and
t; more make the fit robust. The fit is done in disparity space (where the model is affine),
weighted so that every anchor counts by its relative error (a 10 cm miss at 1 m matters as much
as 1 m at 10 m), with Huber weights re-estimated from the residuals (IRLS) so that one wrong
measurement or an anchor on an edge does not drag the whole map. A metric model needs only a
scale correction (a camera unlike the training data, a wrong max_depth): 1/z = s / depth.

The fit reports its residual on the anchors (RMS in metres, median relative error) so a user
can tell a good calibration from a bad one before trusting the metres. Two guards stop a bad
calibration passing silently:

- a fit whose median relative residual is above WARN_MEDIAN_REL (10%: the measured points
  themselves are missed by more than a tenth of their distance) is kept but flagged
  (`AnchorFit.warning`, printed by dav2-run as one `warning:` line);
- anchors that the model orders backwards are refused: a fit with a scale that is not
  positive, or anchors whose pairs are more often discordant than concordant (the measured
  nearer point of a pair has the smaller model disparity, as Kendall's tau < 0), since no
  positive scale can turn such a map into the measured metres (usually u and v swapped, or
  pixels of another image size).

Anchors are in the pixel coordinates of the input image (the depth map at full resolution):
(0, 0) is the centre of the top-left pixel; they are sampled bilinearly.

Bounds: the file is read through dav2.files.read_user_text (a regular file of at most
MAX_ANCHOR_BYTES); at most MAX_ANCHORS rows (the ordering check compares every pair: n² cells);
distances from MIN_METRES to MAX_METRES (1 mm to 100 km: past them the disparity 1/z leaves the
range a least-squares fit can solve, as 1e308 m did).
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dav2.errors import Dav2Error, quote
from dav2.files import read_user_text
from dav2.vocabulary import ModelKind

HUBER_K = 1.345  # 95% efficiency on Gaussian residuals
MIN_SIGMA = 1e-3  # relative error below which residuals count as exact (keeps exact data exact)
MAX_ITERATIONS = 50
WARN_MEDIAN_REL = 0.10  # median |fitted - measured| / measured on the anchors above which a fit is flagged
MAX_ANCHOR_BYTES = 4 * 1024 * 1024
MAX_ANCHORS = 2000  # pair_order's two n x n float64 matrices: 32 MB each at 2000
MIN_METRES, MAX_METRES = 1e-3, 1e5
MAX_PIXEL = 1e6  # |u|, |v|: no image is wider (the image limits refuse far less)


@dataclass(frozen=True)
class Anchor:
    """A measured point: pixel (u, v) of the input image and its depth along the optical axis, metres."""

    u: float
    v: float
    metres: float


@dataclass(frozen=True)
class AnchorFit:
    """metres = 1 / (scale * disparity + shift) for relative models, depth / scale for metric ones."""

    kind: ModelKind
    scale: float
    shift: float
    anchors: int
    inliers: int  # anchors with full Huber weight at the end
    rms_m: float  # residual on the anchors, metres
    median_rel: float  # median |fitted - measured| / measured on the anchors

    def apply(self, prediction: np.ndarray) -> np.ndarray:
        """The model's output in metres (float32); 0 where the fitted disparity is not positive."""
        return self.metres(prediction).astype(np.float32)

    def metres(self, prediction: np.ndarray) -> np.ndarray:
        """`apply` in float64."""
        prediction = np.asarray(prediction, dtype=np.float64)
        if self.kind == ModelKind.METRIC:
            return prediction / self.scale
        disparity = self.scale * prediction + self.shift
        with np.errstate(divide="ignore"):
            return np.where(disparity > 0, 1.0 / disparity, 0.0)

    def warning(self) -> str | None:
        """One line when the fit misses its own anchors by more than WARN_MEDIAN_REL (median)."""
        if self.median_rel <= WARN_MEDIAN_REL:
            return None
        return (
            f"the anchors fit poorly: median error {100 * self.median_rel:.3g}% (RMS {self.rms_m:.3g} m) on the "
            f"anchors themselves, above {100 * WARN_MEDIAN_REL:.0f}%; do not trust these metres (check that u,v are "
            "column,row pixels of the input image and the distances are along the optical axis)"
        )

    def describe(self) -> str:
        what = (
            f"scale {self.scale:.4g}, shift {self.shift:.4g} (disparity)"
            if self.kind == ModelKind.RELATIVE
            else (f"scale correction x{1 / self.scale:.4g}")
        )
        return (
            f"anchors: {what}; {self.inliers} of {self.anchors} inliers, residual {self.rms_m:.3g} m RMS, "
            f"median {100 * self.median_rel:.2g}%"
        )


def read_anchors(path: str | Path) -> list[Anchor]:
    """A CSV of `u,v,metres` rows (a header row and `#` comments allowed)."""
    path = Path(path)
    lines = read_user_text(path, MAX_ANCHOR_BYTES, "anchors").splitlines()
    where = quote(path)
    anchors, rows = [], 0
    for number, row in enumerate(csv.reader(lines), start=1):
        cells = [cell.strip() for cell in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        rows += 1
        try:
            u, v, metres = (float(cell) for cell in cells)
        except ValueError:
            if rows == 1:  # a header
                continue
            raise Dav2Error(f"{where}:{number}: expected u,v,metres, got {','.join(cells)[:80]!r}") from None
        if not (np.isfinite([u, v, metres]).all() and metres > 0):
            raise Dav2Error(f"{where}:{number}: metres must be positive and all values finite")
        if not MIN_METRES <= metres <= MAX_METRES:
            raise Dav2Error(f"{where}:{number}: {metres:g} m is outside {MIN_METRES:g} to {MAX_METRES:g} m")
        if max(abs(u), abs(v)) > MAX_PIXEL:
            raise Dav2Error(f"{where}:{number}: pixel ({u:g}, {v:g}) is past any image")
        anchors.append(Anchor(u, v, metres))
        if len(anchors) > MAX_ANCHORS:
            raise Dav2Error(f"{where} has more than {MAX_ANCHORS} anchors (a few dozen fix the scale)")
    if not anchors:
        raise Dav2Error(f"{where} has no u,v,metres rows")
    return anchors


def sample_bilinear(image: np.ndarray, anchors: list[Anchor]) -> np.ndarray:
    """The map's values at the anchors' (sub-)pixel positions."""
    height, width = image.shape
    u = np.array([a.u for a in anchors], dtype=np.float64)
    v = np.array([a.v for a in anchors], dtype=np.float64)
    outside = (u < 0) | (u > width - 1) | (v < 0) | (v > height - 1)
    if outside.any():
        a = anchors[int(np.argmax(outside))]
        raise Dav2Error(f"anchor ({a.u:g}, {a.v:g}) lies outside the {width}x{height} image")
    u0 = np.minimum(np.floor(u).astype(int), width - 2) if width > 1 else np.zeros(len(u), int)
    v0 = np.minimum(np.floor(v).astype(int), height - 2) if height > 1 else np.zeros(len(v), int)
    fu, fv = u - u0, v - v0
    u1, v1 = np.minimum(u0 + 1, width - 1), np.minimum(v0 + 1, height - 1)
    top = image[v0, u0] * (1 - fu) + image[v0, u1] * fu
    bottom = image[v1, u0] * (1 - fu) + image[v1, u1] * fu
    return (top * (1 - fv) + bottom * fv).astype(np.float64)


def weighted_fit(design: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    root = np.sqrt(weights)[:, None]
    try:
        solution, *_ = np.linalg.lstsq(design * root, target * root[:, 0], rcond=None)
    except np.linalg.LinAlgError as exc:  # values no fit can use (the bounds above should prevent it)
        raise Dav2Error(f"the anchors cannot be fitted ({exc})") from None
    return solution


def huber_weights(relative_residual: np.ndarray) -> np.ndarray:
    sigma = max(1.4826 * float(np.median(np.abs(relative_residual))), MIN_SIGMA)
    scaled = np.abs(relative_residual) / (HUBER_K * sigma)
    return np.where(scaled <= 1, 1.0, 1.0 / np.maximum(scaled, 1e-12))


def fit_anchors(prediction: np.ndarray, anchors: list[Anchor], kind: str) -> AnchorFit:
    """Fit the metric scale (and for relative models the shift) of `prediction` to the anchors.

    Relative: true disparity 1/z = scale * d + shift. Metric: 1/z = scale / depth. Least squares
    on the relative disparity error, re-weighted with Huber weights until it settles."""
    kind = ModelKind(kind)
    needed = 2 if kind == ModelKind.RELATIVE else 1
    if len(anchors) < needed:
        raise Dav2Error(f"a {kind} model needs at least {needed} anchor(s) to fix its metric scale")
    sampled = sample_bilinear(prediction.astype(np.float64), anchors)
    return fit_samples(sampled, np.array([a.metres for a in anchors], dtype=np.float64), kind)


ANCHOR_HINT = "check u,v (column, row of the input image)"


def fit_samples(
    sampled: np.ndarray, measured: np.ndarray, kind: str, hint: str = ANCHOR_HINT, what: str = "anchors"
) -> AnchorFit:
    """`fit_anchors` on values already sampled from the prediction(s) and their measured metres:
    one fit over points of several frames (dav2-calibrate) is the same robust fit. `hint` ends
    the message that refuses points the model orders backwards, `what` names them."""
    kind = ModelKind(kind)
    sampled, measured = np.asarray(sampled, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    needed = 2 if kind == ModelKind.RELATIVE else 1
    if len(measured) < needed:
        raise Dav2Error(f"a {kind} model needs at least {needed} measured point(s) to fix its metric scale")
    target = 1.0 / measured
    if kind == ModelKind.METRIC:
        if (sampled <= 0).any():
            raise Dav2Error("a metric model predicted no positive depth at some anchors")
        design = (1.0 / sampled)[:, None]
    else:
        if np.ptp(sampled) <= 1e-12 * max(np.abs(sampled).max(), 1e-12):
            raise Dav2Error("the model predicts the same disparity at every anchor: place anchors at different depths")
        design = np.stack([sampled, np.ones_like(sampled)], axis=1)
    # rows divided by the target: residuals are relative disparity (= relative depth) errors
    design, ones = design / target[:, None], np.ones_like(target)
    weights = ones
    for _ in range(MAX_ITERATIONS):
        solution = weighted_fit(design, ones, weights)
        new_weights = huber_weights(design @ solution - 1)
        if np.allclose(new_weights, weights, rtol=0, atol=1e-9):
            break
        weights = new_weights
    scale, shift = float(solution[0]), float(solution[1]) if kind == ModelKind.RELATIVE else 0.0
    model_disparity = sampled if kind == ModelKind.RELATIVE else 1.0 / sampled
    concordant, discordant = pair_order(model_disparity, target)
    if scale <= 0 or discordant > concordant:
        raise Dav2Error(
            f"the {what} contradict the model's ordering (in {discordant} of {concordant + discordant} pairs the "
            f"nearer point has the smaller disparity); {hint}"
        )
    fit = AnchorFit(kind, scale, shift, len(measured), int((weights >= 1).sum()), 0.0, 0.0)
    return summarise(fit, sampled, measured)


def pair_order(model: np.ndarray, measured: np.ndarray) -> tuple[int, int]:
    """(concordant, discordant) anchor pairs: pairs the model's disparity orders as the measured
    disparity does, and the opposite way; ties in either are neither."""
    upper = np.triu_indices(len(model), k=1)
    agreement = (np.sign(np.subtract.outer(model, model)) * np.sign(np.subtract.outer(measured, measured)))[upper]
    return int((agreement > 0).sum()), int((agreement < 0).sum())


def summarise(fit: AnchorFit, sampled: np.ndarray, measured: np.ndarray) -> AnchorFit:
    """The fit with its residual on the anchors (their measured metres) filled in."""
    fitted = fit.metres(sampled)
    error = np.where(fitted > 0, fitted - measured, np.inf)
    rms = float(np.sqrt(np.mean(error**2)))
    median_rel = float(np.median(np.abs(error) / measured))
    return AnchorFit(fit.kind, fit.scale, fit.shift, fit.anchors, fit.inliers, rms, median_rel)
