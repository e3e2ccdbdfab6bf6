"""What dav2-export does, in order.

1. Check the request (targets, sizes, shape profiles, installed libraries) before any work.
2. Load the checkpoint; draw the calibration set when an INT8 target needs one.
3. Export the FP32 ONNX graph and check it against PyTorch: every other artifact is made
   from this graph.
4. Build each target in a temporary folder; FP32 artifacts are checked for parity, reduced
   precision ones get the accuracy report on held-out images (and --max-abs-rel).
5. Only when every target succeeded, move the artifacts and their metadata into place.
"""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dav2 import console, processing
from dav2.calibration.dataset import DEFAULT_COUNT, DEFAULT_HOLDOUT, DEFAULT_SEED, CalibrationSet
from dav2.errors import Dav2Error
from dav2.export import accuracy
from dav2.export.onnx import GraphOptions, describe_artifact, export_fp16_onnx, export_fp32_onnx, tool_versions
from dav2.files import move_into_place
from dav2.metadata import write_metadata
from dav2.models.registry import checkpoint_info
from dav2.runtime.sources import read_image
from dav2.sample import render_sample

ONNX_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ExportRequest:
    """Everything dav2-export was asked for (the command line, parsed)."""

    encoder: str = "vits"
    kind: str = "relative"
    max_depth: float | None = None
    checkpoint: str | None = None
    height: int = 518
    width: int = 518
    dynamic: bool = False
    exporter: str = "torchscript"
    output: Path = Path("models")
    check_image: str | None = None
    onnx: str | None = None  # fp32 / fp16 / int8
    ort_int8: str = "dynamic"  # dynamic / static
    openvino: str | None = None  # fp32 / fp16 / int8
    keep_head: bool = False
    trt: str | None = None  # fp16 / int8 / fp32
    keep_fp32: list[str] = field(default_factory=list)
    workspace_gb: float = 4.0
    profile: str | None = None
    min_shape: str | None = None
    opt_shape: str | None = None
    max_shape: str | None = None
    calib_dir: str | None = None
    calib_count: int = DEFAULT_COUNT
    calib_seed: int = DEFAULT_SEED
    holdout: int = DEFAULT_HOLDOUT
    max_abs_rel: float | None = None

    def needs_calibration(self) -> bool:
        static_ort = self.onnx == "int8" and self.ort_int8 == "static"
        return static_ort or self.openvino == "int8" or self.trt == "int8"


def checked_size(name: str, size: int) -> int:
    """The size rounded to a multiple of 14, saying so when it changed."""
    if size < 14:
        raise Dav2Error(f"--{name} must be at least 14")
    rounded = processing.round_to_multiple(size)
    if rounded != size:
        console.warn(f"--{name} {size} is not a multiple of 14 (the patch size); using {rounded}")
    return rounded


def load_check_image(path: str | None) -> np.ndarray:
    if path is None:
        return render_sample()[0]
    image = read_image(Path(path))
    if image is None:
        raise Dav2Error(f"cannot read --check-image {path}")
    return image


def preflight(request: ExportRequest, options: GraphOptions):
    """Fail before any work when a target cannot be built here; return the TensorRT profile."""
    if request.onnx is None and request.openvino is None and request.trt is None:
        request.onnx = "fp32"
    if request.needs_calibration() and not request.calib_dir:
        raise Dav2Error("INT8 needs calibration images: add --calib-dir DIR (a folder of real photos or a video)")
    if request.openvino is not None:
        from dav2.export.openvino import require_openvino

        require_openvino()
    profile = None
    if request.trt is not None:
        from dav2.export.tensorrt import optimization_profile
        from dav2.runtime.backends.tensorrt import require_gpu, require_tensorrt

        profile = optimization_profile(
            options, request.profile, request.min_shape, request.opt_shape, request.max_shape
        )
        require_tensorrt()
        require_gpu()
    return profile


def export_artifacts(request: ExportRequest) -> list[Path]:
    """Run the whole export; return the artifacts written, in target order."""
    from dav2.models.checkpoint import load_model, sha256_file

    options = GraphOptions(
        height=checked_size("height", request.height),
        width=checked_size("width", request.width),
        dynamic=request.dynamic,
        exporter=request.exporter,
    )
    profile = preflight(request, options)
    info = checkpoint_info(request.encoder, request.kind, request.max_depth)
    if info.non_commercial:
        console.warn(
            f"{info.filename}: the official {request.encoder} weights are licensed {info.licence} "
            "(non-commercial use only); ViT-S is Apache-2.0"
        )
    image = load_check_image(request.check_image)
    calibration = None
    if request.calib_dir:
        calibration = CalibrationSet(
            request.calib_dir, (options.height, options.width), request.calib_count, request.holdout, request.calib_seed
        )
        console.info(
            f"calibration set: {len(calibration)} image(s) from {request.calib_dir} (seed {request.calib_seed}), "
            f"{len(calibration.holdout)} held out for the accuracy report"
        )
    held_out = calibration.holdout_images() if calibration and calibration.holdout else []
    held_out = held_out or [(request.check_image or "built-in sample scene", image)]
    with console.step(f"loading the {request.encoder} {request.kind} checkpoint"):
        model, path = load_model(request.encoder, request.kind, request.max_depth, request.checkpoint)
        digest = sha256_file(path)
    provenance = {
        "checkpoint": path.name,
        "checkpoint_sha256": digest,
        "licence": info.licence,
        "check_image": request.check_image or "built-in sample scene",
    }
    output = Path(request.output)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output, prefix=".export-") as tmp:
        builder = Builder(Path(tmp), model, options, image, provenance, calibration, held_out, request)
        fp32_onnx, parity = export_fp32_onnx(model, builder.folder("onnx-fp32"), options, image)
        builder.fp32_onnx = fp32_onnx
        if request.onnx == "fp32":
            builder.finish(fp32_onnx, "onnx", "fp32", {"parity": parity})
        elif request.onnx is not None:
            builder.onnx_reduced(request.onnx)
        if request.openvino is not None:
            builder.openvino(request.openvino)
        if request.trt is not None:
            builder.tensorrt(request.trt, profile)
        return builder.publish(output)


class Builder:
    """Builds each target into its own temporary folder and publishes them together."""

    def __init__(self, tmp: Path, model, options, image, provenance, calibration, held_out, request):
        self.tmp = tmp
        self.model = model
        self.options = options
        self.image = image
        self.provenance = provenance
        self.calibration = calibration
        self.held_out = held_out
        self.request = request
        self.fp32_onnx: Path | None = None
        self.built: list[Path] = []

    def folder(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir()
        return path

    def finish(self, artifact: Path, fmt: str, precision: str, extra: dict, calibrated: bool = False) -> None:
        """Write the sidecar; run the accuracy report for reduced precision; keep for publishing."""
        metadata = describe_artifact(self.model, self.options, artifact, fmt, precision)
        metadata.update(self.provenance)
        metadata["tools"] = {**tool_versions(), **extra.pop("tools", {})}
        metadata.update(extra)
        if calibrated:
            metadata["calibration"] = self.calibration.identity()
        write_metadata(artifact, metadata)
        if precision != "fp32":
            with console.step(f"measuring {artifact.name} against PyTorch FP32"):
                report = accuracy.accuracy_report(artifact, self.model, self.held_out)
            accuracy.print_report(report, precision)
            metadata["accuracy"] = report
            write_metadata(artifact, metadata)
            accuracy.enforce(report, self.request.max_abs_rel)
        self.built.append(artifact)

    def onnx_reduced(self, precision: str) -> None:
        folder = self.folder("onnx")
        if precision == "fp16":
            path, parity = export_fp16_onnx(self.fp32_onnx, folder, self.model, self.options, self.image)
            self.finish(path, "onnx", "fp16", {"parity": parity})
            return
        from dav2.calibration.onnxruntime import quantize_onnx
        from dav2.export.onnx import artifact_stem

        mode = self.request.ort_int8
        path = folder / f"{artifact_stem(self.model, self.options, 'int8')}.onnx"
        calibration = self.calibration if mode == "static" else None
        what = f"on {len(calibration)} calibration images" if calibration else "weights only, activations per call"
        with console.step(f"quantizing for ONNX Runtime ({mode} INT8, MatMul, {what})"):
            quantize_onnx(self.fp32_onnx, path, mode, calibration)
        extra = {"quantization": {"tool": "onnxruntime.quantization", "mode": mode, "ops": ["MatMul"]}}
        self.finish(path, "onnx", "int8", extra, calibrated=calibration is not None)

    def openvino(self, precision: str) -> None:
        from dav2.export.openvino import export_openvino

        path, extra = export_openvino(
            self.fp32_onnx,
            self.folder("openvino"),
            self.model,
            self.options,
            precision,
            self.image,
            self.calibration if precision == "int8" else None,
            self.request.keep_head,
        )
        self.finish(path, "openvino", precision, extra, calibrated=precision == "int8")

    def tensorrt(self, precision: str, profile) -> None:
        from dav2.export.tensorrt import export_tensorrt

        path, extra = export_tensorrt(
            self.fp32_onnx,
            self.folder("tensorrt"),
            Path(self.request.output),
            self.model,
            self.options,
            precision,
            profile,
            self.request.keep_fp32,
            self.request.workspace_gb,
            self.calibration if precision == "int8" else None,
        )
        self.finish(path, "tensorrt", precision, extra, calibrated=precision == "int8")

    def publish(self, output: Path) -> list[Path]:
        """Move every built artifact with its companions; the artifact itself goes last."""
        placed = []
        for artifact in self.built:
            companions = sorted(p for p in artifact.parent.iterdir() if p != artifact)
            placed.append(move_into_place([*companions, artifact], output)[-1])
        return placed
