"""dav2-calibrate: fit an artifact's metric scale once, check it on held-out data, store it.

Why: a relative model's disparity has no unit, and a metric model's metres are off for a camera
unlike its training data. Fitting per frame (`--anchors` in dav2-run) needs measurements in
every scene; a robot's camera needs them once. Measured depth comes as

- anchors: pairs of an image and a CSV of `u,v,metres` on it (dav2.geometry.anchors);
- RGB-D: a folder with `rgb/` and `depth/` (paired in sorted order, as dav2-eval dense pairs
  them; the depth encodings of dav2.evaluation.groundtruth).

The fit is the anchors' robust fit (`fit_samples`: Huber-weighted least squares on relative
disparity errors; relative models get scale and shift in disparity, metric ones a scale) over
points of all calibration images, at most FIT_POINTS of them, spread evenly over the images.

Held out: with two or more images (anchor files), every HOLDOUT_EVERY-th is kept out of the fit
(at least one; at least one stays in); with one image, every HOLDOUT_EVERY-th of its measured
points is. AbsRel over all held-out points (predictions clipped to the depth range, as dav2-eval
dense) is recorded with the calibration and, for a metric model, without it ("before").

The result is a derived artifact in --output: the model file (and its weights companion)
copied, with a sidecar whose `metric_calibration` (dav2.metadata.MetricCalibration) holds the
fit; every dav2 command that runs it gives metres without flags (dav2.runtime.session). The
copy is written to a scratch folder inside --output and moved into place artifact last.
"""

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dav2.errors import Dav2Error, quote
from dav2.evaluation.groundtruth import read_depth
from dav2.evaluation.predict import ModelPredictor
from dav2.files import check_output_folder, move_into_place, write_failed
from dav2.geometry.anchors import MAX_ANCHORS, Anchor, AnchorFit, fit_samples, read_anchors, sample_bilinear
from dav2.geometry.intrinsics import Intrinsics
from dav2.media import IMAGE_EXTENSIONS, scan_folder
from dav2.metadata import ArtifactMetadata, MetricCalibration, sidecar_path
from dav2.vocabulary import ModelKind

FIT_POINTS = MAX_ANCHORS  # the fit's ordering check compares every pair of points
HOLDOUT_EVERY = 3  # every third image (or point) checks the fit instead of making it
DEPTH_EXTENSIONS = {".png", ".pgm", ".tif", ".tiff"}
SEED = 0  # which pixels are sampled: fixed, so a calibration can be repeated
ORDER_HINT = (
    "the model does not order these scenes' depth as measured (check that each depth file is paired with its "
    "image, and the model's weights)"
)


@dataclass(frozen=True)
class Measured:
    """One image's measured points: the model's prediction there and the measured metres."""

    name: str
    predicted: np.ndarray  # float64, the model's raw output (disparity or metres) at each point
    metres: np.ndarray  # float64, measured
    hw: tuple[int, int]


@dataclass(frozen=True)
class Request:
    """What dav2-calibrate was asked: one of `anchors` (image, CSV pairs) or `rgbd` (a folder)."""

    model: Path
    output: Path
    anchors: tuple[tuple[Path, Path], ...] = ()
    rgbd: Path | None = None
    depth_format: str = "png-mm"
    intrinsics: Intrinsics | None = None
    input_size: int | None = None
    min_depth: float = 1e-3
    max_depth: float = 80.0

    def __post_init__(self) -> None:
        if bool(self.anchors) == (self.rgbd is not None):
            raise Dav2Error("give either --anchors IMAGE CSV (one or more) or --rgbd FOLDER")
        if not 0 < self.min_depth < self.max_depth:
            raise Dav2Error("--min-depth must be positive and below --max-depth")

    @property
    def method(self) -> str:
        return "rgbd" if self.rgbd is not None else "anchors"


@dataclass(frozen=True)
class Result:
    """The derived artifact and its calibration."""

    artifact: Path
    calibration: MetricCalibration
    fit: AnchorFit
    heldout_names: tuple[str, ...]


def calibrate(request: Request) -> Result:
    """Measure, fit, check and write the calibrated artifact (see the module docstring)."""
    check_output(request)
    folder = request.rgbd / "rgb" if request.rgbd is not None else Path.cwd()  # anchors' images: their own paths
    with ModelPredictor(request.model, folder, request.input_size) as predictor:
        kind = ModelKind(predictor.kind)
        metadata = predictor.backend.metadata
        measured = measure_rgbd(predictor, request) if request.rgbd is not None else measure_anchors(predictor, request)
    fitting, heldout = split(measured)
    fit = fit_samples(*subsample(fitting), kind, ORDER_HINT, "measured points")
    record = calibration_record(request, kind, fit, fitting, heldout)
    artifact = write_calibrated(request.model, metadata, record, request.output)
    return Result(artifact, record, fit, tuple(m.name for m in heldout if m.name))


def check_output(request: Request) -> None:
    """--output: a folder that can be written, not the model's own (the copy keeps its name)."""
    check_output_folder(request.output)
    if not request.model.is_file():
        raise Dav2Error(f"--model {quote(request.model)} is not a file")
    model_folder = request.model.resolve().parent
    if request.output.resolve() == model_folder:
        raise Dav2Error(
            f"--output {quote(request.output)} is the model's own folder: the calibrated artifact keeps the file "
            "name, so write it to another folder"
        )


def measure_anchors(predictor: ModelPredictor, request: Request) -> list[Measured]:
    """The prediction at every anchor of every (image, CSV) pair."""
    measured = []
    for image, csv in request.anchors:
        anchors: list[Anchor] = read_anchors(csv)
        depth = predictor(str(Path(image).resolve()))  # absolute: the predictor's folder is not prefixed
        values = sample_bilinear(depth.astype(np.float64), anchors)
        metres = np.array([a.metres for a in anchors], dtype=np.float64)
        measured.append(Measured(Path(image).name, values, metres, depth.shape[:2]))
    return measured


def rgbd_pairs(folder: Path) -> list[tuple[str, str]]:
    """(image, depth) names below folder/rgb and folder/depth, paired in sorted order."""
    for part in ("rgb", "depth"):
        if not (folder / part).is_dir():
            raise Dav2Error(f"--rgbd {quote(folder)} needs the folders rgb/ and depth/ (paired in sorted order)")
    images = scan_folder(folder / "rgb", IMAGE_EXTENSIONS).names()
    depths = scan_folder(folder / "depth", DEPTH_EXTENSIONS).names()
    if not images:
        raise Dav2Error(f"no images in {quote(folder / 'rgb')}")
    if len(images) != len(depths):
        raise Dav2Error(
            f"{len(images)} images but {len(depths)} depth files in {quote(folder)}: they are paired in sorted "
            "order, so rgb/ and depth/ must hold one file each per frame"
        )
    return list(zip(images, depths))


def measure_rgbd(predictor: ModelPredictor, request: Request) -> list[Measured]:
    """The prediction (resized to the depth map) at every valid, in-range measured pixel."""
    measured = []
    for image, depth_name in rgbd_pairs(request.rgbd):
        gt, valid = read_depth(request.rgbd / "depth" / depth_name, request.depth_format)
        prediction = predictor(image, gt.shape)
        mask = valid & np.isfinite(gt) & (gt > request.min_depth) & (gt < request.max_depth)
        if predictor.kind == ModelKind.METRIC:
            mask &= prediction > 0
        if mask.sum() < 10:
            raise Dav2Error(f"{quote(depth_name)} has fewer than 10 valid measured pixels in range")
        values = prediction[mask].astype(np.float64)
        measured.append(Measured(image, values, gt[mask].astype(np.float64), gt.shape))
    return measured


def split(measured: list[Measured]) -> tuple[list[Measured], list[Measured]]:
    """(fitting, held out): whole images when there are several, else every few points of one."""
    if len(measured) >= 2:
        heldout = [m for i, m in enumerate(measured) if i % HOLDOUT_EVERY == HOLDOUT_EVERY - 1] or [measured[-1]]
        return [m for m in measured if m not in heldout], heldout
    (only,) = measured
    order = np.random.default_rng(SEED).permutation(len(only.metres))
    held = np.zeros(len(order), bool)
    held[order[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY]] = True
    if (~held).sum() < 3:  # too few to spare any: no held-out check
        return [only], []

    def part(mask: np.ndarray, name: str) -> Measured:
        return Measured(name, only.predicted[mask], only.metres[mask], only.hw)

    return [part(~held, only.name)], [part(held, "")]


def subsample(measured: list[Measured]) -> tuple[np.ndarray, np.ndarray]:
    """At most FIT_POINTS (prediction, metres) points, the same share from each image."""
    per_image = max(1, FIT_POINTS // len(measured))
    rng = np.random.default_rng(SEED)
    values, metres = [], []
    for m in measured:
        chosen = rng.choice(len(m.metres), per_image, replace=False) if len(m.metres) > per_image else slice(None)
        values.append(m.predicted[chosen])
        metres.append(m.metres[chosen])
    return np.concatenate(values), np.concatenate(metres)


def abs_rel(predicted_metres: np.ndarray, metres: np.ndarray, request: Request) -> float:
    """AbsRel with the prediction clipped to the depth range (as dav2-eval dense)."""
    clipped = np.clip(predicted_metres, request.min_depth, request.max_depth)
    return float(np.mean(np.abs(clipped - metres) / metres))


def calibration_record(
    request: Request, kind: ModelKind, fit: AnchorFit, fitting: list[Measured], heldout: list[Measured]
) -> MetricCalibration:
    """The sidecar's record: the fit, its residual, the held-out check, the camera."""
    if not all(np.isfinite([fit.scale, fit.shift, fit.rms_m, fit.median_rel])):
        raise Dav2Error("the fit gave no finite scale or residual: the measured points do not fit this model")
    after = before = None
    points = 0
    if heldout:
        values = np.concatenate([m.predicted for m in heldout])
        metres = np.concatenate([m.metres for m in heldout])
        points = len(metres)
        after = abs_rel(fit.metres(values), metres, request)
        before = abs_rel(values, metres, request) if kind == ModelKind.METRIC else None
    sizes = {m.hw for m in fitting + heldout}
    return MetricCalibration(
        method=request.method,
        scale=fit.scale,
        shift=fit.shift,
        points=fit.anchors,
        inliers=fit.inliers,
        residual_rms_m=fit.rms_m,
        residual_median_rel=fit.median_rel,
        frames=len({m.name for m in fitting}),
        heldout_points=points,
        heldout_abs_rel=after,
        heldout_abs_rel_before=before,
        camera=camera_record(request.intrinsics),
        frame_hw=list(sizes.pop()) if len(sizes) == 1 else None,
        fitted_on=request.model.name,
    )


def camera_record(intrinsics: Intrinsics | None) -> dict[str, float] | None:
    if intrinsics is None:
        return None
    camera = {"fx": intrinsics.fx, "fy": intrinsics.fy, "cx": intrinsics.cx, "cy": intrinsics.cy}
    if intrinsics.width is not None:
        camera.update(width=float(intrinsics.width), height=float(intrinsics.height))
    return camera


def companions(model: Path, metadata: ArtifactMetadata) -> list[Path]:
    """The files an artifact needs beside it: its weights (OpenVINO .bin, ONNX external data)."""
    if metadata.weights_file:
        return [model.parent / metadata.weights_file]
    if model.suffix.lower() == ".xml" and model.with_suffix(".bin").is_file():
        return [model.with_suffix(".bin")]
    return []


def write_calibrated(model: Path, metadata: ArtifactMetadata, record: MetricCalibration, output: Path) -> Path:
    """Copy the artifact (and companions) to `output` with a sidecar carrying `record`."""
    output.mkdir(parents=True, exist_ok=True)
    calibrated = dataclasses.replace(metadata, metric_calibration=record, artifact=model.name)
    scratch = Path(tempfile.mkdtemp(prefix=".dav2-calibrate.", dir=output))
    try:
        copies = []
        for source in [*companions(model, metadata), model]:
            target = scratch / source.name
            try:
                shutil.copy2(source, target)
            except OSError as exc:
                raise write_failed(output / source.name, exc) from None
            copies.append(target)
        sidecar = calibrated.write(scratch / model.name)
        try:
            placed = move_into_place([*copies[:-1], sidecar, copies[-1]], output)
        except OSError as exc:
            raise write_failed(output / model.name, exc) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert sidecar_path(placed[-1]).is_file()
    return placed[-1]
