"""The typed records an export passes around: the request, the graph's shape, the context.

`ExportRequest` is the command line, parsed. `GraphOptions` is the input shape of the FP32
ONNX graph every artifact is made from. `ExportContext` is what each target's `build` gets:
the loaded model, the checked FP32 graph, the check image, the calibration set and held-out
images, the provenance every sidecar records, and a scratch folder to build in.

torch-free, so the CLI and each target's preflight can use it before PyTorch is imported.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dav2 import console, processing
from dav2.calibration.dataset import DEFAULT_COUNT, DEFAULT_HOLDOUT, DEFAULT_SEED, DEFAULT_VALIDATION, CalibrationSet
from dav2.calibration.nncf import check_float_groups
from dav2.errors import Dav2Error
from dav2.export.gate import AccuracyGate
from dav2.metadata import DEFAULT_WORKSPACE_GB, ArtifactMetadata, CalibrationRecord, ParityReport
from dav2.vocabulary import (
    DEFAULT_INPUT_SIZE,
    DYNAMIC_MAX_SIDE,
    DYNAMIC_MIN_SIDE,
    ENCODER_SPECS,
    PATCH_SIZE,
    ArtifactFormat,
    ModelKind,
    Precision,
)

OPSET = 17
EXPORTERS = ("torchscript", "dynamo")
DYNAMIC_RANGE = {"multiple_of": PATCH_SIZE, "min": DYNAMIC_MIN_SIDE, "max": DYNAMIC_MAX_SIDE}


@dataclass
class GraphOptions:
    """The input shape of the exported graph and the exporter that writes it.

    Dynamic graphs (the default) take any multiple of 14, so every photo keeps its aspect
    ratio as in upstream's infer_image; height x width is then the traced size and the
    default input size. Static graphs take exactly height x width.
    """

    height: int = DEFAULT_INPUT_SIZE
    width: int = DEFAULT_INPUT_SIZE
    dynamic: bool = True
    exporter: str = "torchscript"
    external_data: bool = False  # weights in `<artifact>.data` even below ONNX's 2 GB limit

    @property
    def shape_label(self) -> str:
        return "dynamic" if self.dynamic else f"{self.height}x{self.width}"


@dataclass
class ExportRequest:
    """Everything dav2-export was asked for (the command line, parsed)."""

    encoder: str | None = None  # None: the checkpoint's own (its weights, or a transformers config.json)
    kind: str | None = None  # None: a transformers config.json's, else relative
    max_depth: float | None = None  # None: the config's, else 20 for metric models
    checkpoint: str | None = None  # a file, a transformers model folder or hub repo id; None: the official file
    height: int | None = None  # given: a static graph of this size (unless dynamic is asked)
    width: int | None = None
    dynamic: bool = False  # asked explicitly: dynamic even with --height/--width
    static: bool = False  # asked explicitly: static even without --height/--width
    exporter: str = "torchscript"
    external_data: bool = False
    output: Path = Path("models")
    check_image: str | None = None
    onnx: str | None = None  # fp32 / fp16 / int8
    ort_int8: str = "dynamic"  # ONNX INT8: dynamic / static / qdq (dav2.export.onnx_int8.MODES)
    openvino: str | None = None  # fp32 / fp16 / int8
    int8_float: list[str] = field(default_factory=list)  # INT8: groups left in float (calibration.nncf)
    accuracy_control: bool = False  # OpenVINO INT8: NNCF accuracy control to max_abs_rel
    validation: int = DEFAULT_VALIDATION  # images accuracy control measures on
    trt: str | None = None  # fp16 / int8 / fp32
    litert: str | None = None  # fp32 / fp16 / int8 (.tflite, fixed size)
    litert_int8: str = "dynamic"  # LiteRT INT8: dynamic (weights) / static (full integer, calibrated)
    executorch: str | None = None  # fp32 / int8 (.pte with the XNNPACK delegate, fixed size)
    coreml: str | None = None  # fp16 / fp32 (.mlpackage, fixed size; runs on Apple devices only)
    keep_fp32: list[str] = field(default_factory=list)
    workspace_gb: float = DEFAULT_WORKSPACE_GB
    profile: str | None = None
    min_shape: str | None = None
    opt_shape: str | None = None
    max_shape: str | None = None
    calib_dir: str | None = None
    calib_count: int = DEFAULT_COUNT
    calib_seed: int = DEFAULT_SEED
    holdout: int = DEFAULT_HOLDOUT
    max_abs_rel: float | None = None  # the accuracy gate's budget for every precision; None: gate.DEFAULT_MAX_ABS_REL
    accuracy_gate: bool = True  # False: reduced-precision artifacts are measured and reported, never refused
    input: str = "float32"  # "uint8": the artifact takes camera frames and preprocesses itself
    camera_size: str | None = None  # "1280x720": uint8 artifacts also resize frames of this size


@dataclass
class Provenance:
    """Where an artifact's weights came from: recorded in every sidecar."""

    checkpoint: str
    checkpoint_sha256: str
    licence: str
    check_image: str
    checkpoint_format: str | None = None  # models.checkpoint.CheckpointSource.label: "pth:model/module.", ...


@dataclass
class Built:
    """A finished artifact in the scratch folder, its sidecar record, and its companion files."""

    path: Path
    metadata: ArtifactMetadata
    companions: list[Path] = field(default_factory=list)


@dataclass
class ExportContext:
    request: ExportRequest
    options: GraphOptions
    model: Any  # dav2.models.dpt.DepthAnythingV2 (typed loosely: this module stays torch-free)
    image: np.ndarray  # the parity-check image (BGR)
    holdout: list[tuple[str, np.ndarray]]  # images for the accuracy report, never calibrated on
    calibration: CalibrationSet | None
    provenance: Provenance
    work: Path  # scratch folder inside the output folder
    fp32_onnx: Path | None = None  # the checked FP32 graph, once exported
    parity: ParityReport | None = None  # its parity report
    tools: dict[str, str] = field(default_factory=dict)
    explicit: dict[Precision, Built] = field(default_factory=dict)  # precision-explicit graphs, built once

    def folder(self, name: str) -> Path:
        """A fresh scratch folder for one target."""
        path = self.work / name
        path.mkdir()
        return path

    @property
    def float_groups(self) -> list[str]:
        """INT8: the groups left in float (--int8-float), checked against this model's depth
        (vits has block0 ... block11)."""
        return check_float_groups(list(self.request.int8_float), ENCODER_SPECS[self.model.encoder].depth)

    @property
    def calibration_record(self) -> CalibrationRecord | None:
        """The calibration set's identity, as INT8 sidecars record it."""
        if self.calibration is None:
            return None
        return CalibrationRecord(**self.calibration.identity())

    @property
    def gate(self) -> AccuracyGate:
        """The budget each reduced-precision artifact of this export must meet (dav2.export.gate)."""
        return AccuracyGate(self.request.accuracy_gate, self.request.max_abs_rel)

    @property
    def kind(self) -> ModelKind:
        return self.model.kind

    def describe(self, artifact: Path, fmt: ArtifactFormat, precision: Precision) -> ArtifactMetadata:
        """The sidecar fields every artifact of this export shares (dav2.metadata)."""
        options = self.options
        return ArtifactMetadata(
            artifact=artifact.name,
            format=fmt,
            encoder=self.model.encoder,
            kind=self.kind,
            precision=precision,
            dynamic=options.dynamic,
            input_shape=None if options.dynamic else [1, 3, options.height, options.width],
            max_depth=self.model.metric_max_depth,
            traced_hw=[options.height, options.width],
            dynamic_range=dict(DYNAMIC_RANGE) if options.dynamic else None,
            exporter=options.exporter,
            opset=OPSET,
            checkpoint=self.provenance.checkpoint,
            checkpoint_sha256=self.provenance.checkpoint_sha256,
            checkpoint_format=self.provenance.checkpoint_format,
            licence=self.provenance.licence,
            check_image=self.provenance.check_image,
            tools=dict(self.tools),
        )


def graph_options(request: ExportRequest) -> GraphOptions:
    """The graph's shape from the request: dynamic unless a size (or --static) is asked for.

    Sizes are rounded to multiples of 14 by `checked_size` (with a warning) before this.
    """
    if request.dynamic and request.static:
        raise Dav2Error("--dynamic and --static contradict each other; choose one")
    sized = request.height is not None or request.width is not None
    return GraphOptions(
        height=request.height or DEFAULT_INPUT_SIZE,
        width=request.width or DEFAULT_INPUT_SIZE,
        dynamic=request.dynamic or not (sized or request.static),
        exporter=request.exporter,
        external_data=request.external_data,
    )


def checked_size(name: str, size: int | None) -> int | None:
    """A user's size rounded to a multiple of 14, saying so when it changed (None stays None)."""
    if size is None:
        return None
    if size < DYNAMIC_MIN_SIDE // 2 or size > DYNAMIC_MAX_SIDE:
        raise Dav2Error(f"--{name} must be between {DYNAMIC_MIN_SIDE // 2} and {DYNAMIC_MAX_SIDE}, not {size}")
    rounded = processing.round_to_multiple(size)
    if rounded != size:
        console.warn(f"--{name} {size} is not a multiple of 14 (the patch size); using {rounded}")
    return rounded
