"""What dav2-export does, in order: resolve and load the checkpoint, then write each artifact."""

from pathlib import Path

from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.export.onnx import OnnxExportOptions, export_onnx
from dav2.models.registry import checkpoint_info
from dav2.runtime.sources import read_image
from dav2.sample import render_sample


def checked_size(name: str, size: int) -> int:
    """The size rounded to a multiple of 14, saying so when it changed."""
    if size < 14:
        raise Dav2Error(f"--{name} must be at least 14")
    rounded = processing.round_to_multiple(size)
    if rounded != size:
        console.warn(f"--{name} {size} is not a multiple of 14 (the patch size); using {rounded}")
    return rounded


def load_check_image(path: str | None):
    if path is None:
        return render_sample()[0]
    image = read_image(Path(path))
    if image is None:
        raise Dav2Error(f"cannot read --check-image {path}")
    return image


def export_artifacts(
    encoder: str,
    kind: str,
    max_depth: float | None,
    checkpoint: str | None,
    height: int,
    width: int,
    dynamic: bool,
    fp16: bool,
    exporter: str,
    check_image: str | None,
    output: Path,
) -> list[Path]:
    from dav2.models.checkpoint import load_model, sha256_file

    options = OnnxExportOptions(
        height=checked_size("height", height),
        width=checked_size("width", width),
        dynamic=dynamic,
        fp16=fp16,
        exporter=exporter,
    )
    info = checkpoint_info(encoder, kind, max_depth)
    if info.non_commercial:
        console.warn(
            f"{info.filename}: the official {encoder} weights are licensed {info.licence} "
            "(non-commercial use only); ViT-S is Apache-2.0"
        )
    image = load_check_image(check_image)
    with console.step(f"loading the {encoder} {kind} checkpoint"):
        model, path = load_model(encoder, kind, max_depth, checkpoint)
        digest = sha256_file(path)
    provenance = {
        "checkpoint": path.name,
        "checkpoint_sha256": digest,
        "licence": info.licence,
        "check_image": check_image or "built-in sample scene",
    }
    return [export_onnx(model, output, options, image, provenance)]
