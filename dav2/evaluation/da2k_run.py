"""dav2-eval da2k: open the model (and the reference), score the annotations, close them."""

from pathlib import Path

from dav2.evaluation.da2k import da2k_accuracy, da2k_agreement, load_annotations
from dav2.evaluation.predict import ModelPredictor


def evaluate_da2k(
    annotations: str | Path,
    images: str | Path,
    model: str | Path,
    reference: str | Path | None = None,
    input_size: int | None = None,
) -> dict:
    """DA-2K accuracy of `model`, or with `reference` the share of pairs both order alike.

    The backends are opened and closed here, so a caller (the CLI) holds no native resources.
    """
    pairs = load_annotations(annotations)
    with ModelPredictor(model, images, input_size) as predictor:
        if reference is None:
            return da2k_accuracy(pairs, predictor, predictor.kind)
        with ModelPredictor(reference, images, input_size) as other:
            return da2k_agreement(pairs, predictor, predictor.kind, other, other.kind)
