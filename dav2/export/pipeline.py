"""What dav2-export does, in order.

1. Turn the request into targets (ExportTarget plug-ins) and run every target's preflight:
   libraries, options, calibration images, before any work.
2. Load the checkpoint; draw the calibration set when a target needs one.
3. Export the FP32 ONNX graph and check it against PyTorch: every other artifact is made
   from this graph.
4. Build each target in a scratch folder inside the output folder; FP32 artifacts are
   checked for parity by their target, reduced-precision ones get the accuracy report on
   held-out images and must meet the accuracy gate (dav2.export.gate: a default budget per
   precision, --max-abs-rel X for all, --max-abs-rel off to only report).
5. Only when every target succeeded, move the artifacts, their weights and their sidecars
   into place (the artifact itself last).
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dav2 import console, media
from dav2.calibration.dataset import CalibrationSet
from dav2.errors import Dav2Error, quote
from dav2.export import accuracy, formats
from dav2.export.context import Built, ExportContext, ExportRequest, GraphOptions, Provenance, graph_options
from dav2.export.graph import tool_versions
from dav2.export.preprocess import make_uint8_variant, parse_camera_size
from dav2.export.target import ExportTarget
from dav2.export.tensorrt import build_from_onnx
from dav2.files import OutputError, check_output_folder, describe_os_error, move_into_place
from dav2.metadata import sidecar_path
from dav2.models.registry import checkpoint_info
from dav2.sample import render_sample
from dav2.vocabulary import Precision

__all__ = ["ExportRequest", "PendingWork", "export_artifacts", "export_from_onnx", "requested_targets"]


class PendingWork(Dav2Error):
    """The export wrote what it could here (`written`); the rest needs another machine."""

    def __init__(self, message: str, written: list[Path]):
        super().__init__(message)
        self.written = written


def requested_targets(request: ExportRequest) -> list[ExportTarget]:
    """The targets the request names, in the order of `formats.FORMATS` (ONNX FP32 when none is named)."""
    return [row.target(precision, request) for row, precision in formats.requested(request)]


def preflight(request: ExportRequest, targets: list[ExportTarget]) -> None:
    """Fail before any work when a target cannot be built here, or its output cannot be written."""
    check_output_folder(request.output, "--output")  # a file, /dev/null, read-only, a name too long
    formats.check_options(request)  # an option for no requested format that takes it
    check_dependent_options(request)
    if any(t.needs_calibration(request) for t in targets) and not request.calib_dir:
        raise Dav2Error("INT8 needs calibration images: add --calib-dir DIR (a folder of real photos or a video)")
    for target in targets:
        target.preflight(request)


def load_check_image(path: str | None) -> np.ndarray:
    if path is None:
        return render_sample()[0]
    image = media.read_image(Path(path))
    if image is None:
        raise Dav2Error(f"cannot read --check-image {path}")
    return image


def export_artifacts(request: ExportRequest) -> list[Path]:
    """Run the whole export; return the artifacts written, in target order."""
    from dav2.export.onnx import export_fp32_onnx  # PyTorch: not needed by --from

    options = graph_options(request)
    targets = requested_targets(request)
    preflight(request, targets)
    image = load_check_image(request.check_image)
    calibration = calibration_set(request, options)
    model, provenance = load_checkpoint(request)
    holdout = calibration.holdout_images() if calibration and calibration.holdout else []
    holdout = holdout or [(provenance.check_image, image)]
    output = Path(request.output)
    with scratch_folder(output) as tmp:
        context = ExportContext(request, options, model, image, holdout, calibration, provenance, Path(tmp))
        context.tools = tool_versions()
        context.fp32_onnx, context.parity = export_fp32_onnx(model, context.folder("onnx-fp32"), options, image)
        built: dict[Path, Built] = {}  # one artifact may serve two targets (--onnx --fp16 --trt fp16)
        for target in targets:
            for item in target.build(context):
                built.setdefault(item.path, item)
        finished = [finish(item, context) for item in built.values()]
        if request.input == "uint8":
            finished = [uint8_variant(item, context) for item in finished]
        placed = [publish(item, output) for item in finished]
    pending = [target.pending for target in targets if target.pending]
    if pending:
        raise PendingWork(pending[0], placed)
    return placed


def load_checkpoint(request: ExportRequest):
    """The model and its provenance. The loaded model is the truth about encoder, kind and
    max_depth (a transformers config.json decides them when the flags do not), so the licence
    is looked up from it, not from the flags: an HF vitb model is CC-BY-NC even without --encoder."""
    from dav2.models.checkpoint import load_model

    what = "".join(f"{part} " for part in (request.encoder, request.kind) if part)
    with console.step(f"loading the {what}checkpoint"):
        model, source = load_model(request.encoder, request.kind, request.max_depth, request.checkpoint)
    info = checkpoint_info(model.encoder, model.kind, model.metric_max_depth)
    if info.non_commercial:
        console.warn(
            f"{source.name}: the official {model.encoder} weights are licensed {info.licence} "
            "(non-commercial use only); ViT-S is Apache-2.0"
        )
    check_image = request.check_image or "built-in sample scene"
    provenance = Provenance(source.name, source.sha256, info.licence, check_image, checkpoint_format=source.label)
    return model, provenance


def export_from_onnx(request: ExportRequest, source: Path) -> list[Path]:
    """`--trt P --from model_P.onnx`: an engine from a precision-explicit ONNX and its sidecar,
    on the machine with TensorRT and the GPU; needs neither the checkpoint nor PyTorch."""
    if request.onnx or request.openvino:
        raise Dav2Error("--from builds TensorRT engines only; give --trt with it")
    check_output_folder(request.output, "--output")
    image = load_check_image(request.check_image)
    output = Path(request.output)
    with scratch_folder(output) as tmp:
        built = build_from_onnx(Path(source), Path(tmp), request, image)
        built.metadata.write(built.path)
        return [publish(built, output)]


@contextlib.contextmanager
def scratch_folder(output: Path) -> Iterator[Path]:
    """A temporary folder inside `output` where the artifacts are built, removed afterwards
    whatever happens. A write the system refuses while building (a full disk, a quota) is one
    OutputError: the scratch folder goes, and the artifacts already in `output` stay as they were."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=output, prefix=".export-") as tmp:
            yield Path(tmp)
    except OSError as exc:
        raise OutputError(
            f"could not write the export in {quote(output)}: {describe_os_error(exc)}; nothing half-written was kept"
        ) from None


def calibration_set(request: ExportRequest, options: GraphOptions) -> CalibrationSet | None:
    if not request.calib_dir:
        return None
    validation = request.validation if request.accuracy_control else 0
    calibration = CalibrationSet(
        request.calib_dir,
        (options.height, options.width),
        request.calib_count,
        request.holdout,
        request.calib_seed,
        validation=validation,
    )
    checking = f", {len(calibration.validation)} for accuracy control" if validation else ""
    console.info(
        f"calibration set: {len(calibration)} image(s) from {request.calib_dir} (seed {request.calib_seed}), "
        f"{len(calibration.holdout)} held out for the accuracy report{checking}"
    )
    return calibration


def check_dependent_options(request: ExportRequest) -> None:
    """What one option needs of another (which format takes which option is formats.check_options's):
    --accuracy-control a budget, --camera-size uint8 input or the TensorRT camera profile."""
    if request.accuracy_control and request.max_abs_rel is None:
        raise Dav2Error("--accuracy-control needs a budget: add --max-abs-rel (e.g. 0.01)")
    if request.input not in formats.INPUTS:
        raise Dav2Error(f"--input must be one of {', '.join(formats.INPUTS)}, not {request.input!r}")
    parse_camera_size(request.camera_size)
    if request.camera_size and request.input != "uint8" and not (request.trt and request.profile == "camera"):
        raise Dav2Error(
            "--camera-size makes the graph resize uint8 camera frames (add --input uint8) or sets the TensorRT "
            "camera profile (add --trt --profile camera)"
        )


def uint8_variant(built: Built, context: ExportContext) -> Built:
    """The artifact that takes uint8 frames, made from `built` (measured, sidecar written) and
    checked against it; the float artifact is left in the scratch folder."""
    camera_hw = parse_camera_size(context.request.camera_size)
    with console.step(f"adding uint8 preprocessing to {built.path.name}"):
        return make_uint8_variant(built, context.image, camera_hw)


def finish(built: Built, context: ExportContext) -> Built:
    """Write the sidecar; measure reduced-precision artifacts and hold them to the accuracy
    gate (the report is printed first, so a refused artifact still shows why). An artifact no
    dav2 backend runs (Core ML) cannot be measured: its sidecar and one printed line say so
    and where to measure it, rather than a silent pass."""
    built.metadata.write(built.path)
    precision = built.metadata.precision
    row = formats.for_artifact(built.path)
    if precision == Precision.FP32:
        return built
    if row is not None and not row.runs_here:
        return not_measured(built, row)
    with console.step(f"measuring {built.path.name} against PyTorch FP32"):
        report = accuracy.accuracy_report(built.path, context.model, context.holdout)
    accuracy.print_report(report, precision.upper())
    built.metadata.accuracy = context.gate.enforce(report, precision)
    built.metadata.write(built.path)
    return built


def not_measured(built: Built, row: formats.ExportFormat) -> Built:
    """Record and say that a reduced-precision artifact was checked structurally only."""
    precision = built.metadata.precision.upper()
    reason = f"no dav2 backend runs {row.name}; measure it {row.elsewhere}"
    console.info(
        f"{built.path.name}: the {precision} {row.name} artifact was checked structurally only, not run or "
        f"measured here (no accuracy gate); measure it {row.elsewhere}"
    )
    built.metadata.accuracy_not_measured = reason
    built.metadata.write(built.path)
    return built


def publish(built: Built, output: Path) -> Path:
    """Move an artifact's companions and sidecar into `output`, the artifact itself last:
    whoever sees the artifact also finds everything it needs. A folder artifact (a Core ML
    package) gets folder permissions for its folders, file permissions for its files."""
    files = [*built.companions, sidecar_path(built.path), built.path]
    umask = os.umask(0)
    os.umask(umask)
    for file in files:  # some writers (onnx's external data) create 0600 files
        readable_by_all(file, umask)
    return move_into_place(files, output)[-1]


def readable_by_all(path: Path, umask: int) -> None:
    """The permissions a file or folder created under the user's umask would have."""
    if not path.is_dir():
        path.chmod(0o666 & ~umask)
        return
    path.chmod(0o777 & ~umask)
    for root, folders, names in os.walk(path):
        for name in folders:
            Path(root, name).chmod(0o777 & ~umask)
        for name in names:
            Path(root, name).chmod(0o666 & ~umask)
