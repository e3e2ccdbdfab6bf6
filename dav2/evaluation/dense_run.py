"""dav2-eval dense: pair images with measured depth (or a second model), predict, score."""

from pathlib import Path

from dav2 import accuracy
from dav2.errors import Dav2Error
from dav2.evaluation.dense import evaluate_dense, mean_metrics
from dav2.evaluation.groundtruth import read_depth
from dav2.evaluation.predict import ModelPredictor
from dav2.media import IMAGE_EXTENSIONS, scan_folder
from dav2.vocabulary import ModelKind

DEPTH_EXTENSIONS = {".png", ".pgm", ".tif", ".tiff"}


def list_files(folder: str | Path, extensions: set[str]) -> list[str]:
    """Names below `folder`, in dav2.media's one order: images and depth files pair up by it."""
    return scan_folder(folder, extensions).names()


def evaluate_against_depth(
    images: str,
    depth: str,
    depth_format: str,
    model: str,
    alignment: str,
    min_depth: float,
    max_depth: float,
    input_size: int | None,
) -> dict:
    """Mean metrics over the images, paired with the depth files in sorted order."""
    image_names = list_files(images, IMAGE_EXTENSIONS)
    depth_names = list_files(depth, DEPTH_EXTENSIONS)
    if not image_names:
        raise Dav2Error(f"no images in {images}")
    if len(image_names) != len(depth_names):
        raise Dav2Error(
            f"{len(image_names)} images but {len(depth_names)} depth files: they are paired in sorted order, "
            "so the folders must hold one depth file per image"
        )
    per_image = {}
    with ModelPredictor(model, images, input_size) as predictor:
        for image_name, depth_name in zip(image_names, depth_names):
            gt, valid = read_depth(Path(depth) / depth_name, depth_format)
            pred = predictor(image_name, gt.shape)
            per_image[image_name] = evaluate_dense(pred, gt, valid, predictor.kind, alignment, min_depth, max_depth)
    relative = predictor.kind == ModelKind.RELATIVE
    how = f"{alignment} alignment in disparity space" if relative else "metric, no alignment"
    return {**mean_metrics(list(per_image.values())), "alignment": how, "per_image": per_image}


def evaluate_against_reference(images: str, model: str, reference: str, input_size: int | None) -> dict:
    """AbsRel, δ1 and max difference of `model` against `reference` on every image."""
    image_names = list_files(images, IMAGE_EXTENSIONS)
    if not image_names:
        raise Dav2Error(f"no images in {images}")
    with ModelPredictor(model, images, input_size) as predictor, ModelPredictor(reference, images, input_size) as other:
        if predictor.kind != other.kind:
            raise Dav2Error(f"cannot compare a {predictor.kind} model with a {other.kind} one")
        per_image = {name: accuracy.compare(predictor(name), other(name), predictor.kind) for name in image_names}
    return {**accuracy.summarize(list(per_image.values())), "per_image": per_image}
