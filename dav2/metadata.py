"""The metadata sidecar every artifact carries, as one typed record.

`ArtifactMetadata` is the only way a sidecar is written or read. It holds what a backend needs
to run the artifact with no other flags (encoder, relative/metric, max_depth, input shape,
input format, precision, tensor names) and what is needed to trust it (source checkpoint hash,
tool versions, the parity check or accuracy report made at export, the calibration set).

The sidecar's name is the artifact's full file name plus `.json` (`m.onnx.json`,
`m.xml.json`, `m.engine.json`), so two artifacts in one folder can never share one.
`from_json` checks the schema version, the required fields and the type of every field
(from the dataclasses' own annotations, so a new field is checked too), and raises one
Dav2Error naming the file, the field and the problem.

Normalisation is not a sidecar field: every Depth Anything V2 checkpoint is trained with
ImageNet's mean and std (vocabulary.MEAN, STD), the host and the uint8 graphs both apply
those, and no export option changes them. Sidecars written before this was decided carry
`mean`/`std`; they are still read when they hold those values and refused when they do not,
since nothing would apply other values.
"""

import dataclasses
import enum
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dav2.errors import Dav2Error, quote
from dav2.files import atomic_write_text, read_user_text
from dav2.jsonfile import parse_json
from dav2.vocabulary import (
    DEFAULT_INPUT_SIZE,
    DYNAMIC_MAX_SIDE,
    DYNAMIC_MIN_SIDE,
    ENCODERS,
    INPUT_NAME,
    MEAN,
    OUTPUT_NAME,
    PATCH_SIZE,
    STD,
    ArtifactFormat,
    ModelKind,
    Precision,
    output_meaning,
)

MAX_SIDECAR_BYTES = 1 << 20  # a sidecar is a few KB; a larger one is not dav2's (read before measuring nothing)
SCHEMA_VERSION = 3  # 1: `<stem>.json` loose dicts (before sidecars were named per artifact; refused)
# 2: parity/accuracy/calibration/quantization as loose dicts (read: `_upgrade_v2` types them)
READABLE_SCHEMAS = (2, SCHEMA_VERSION)
# what the graph's input takes: the normalised network tensor, or the camera's own bytes
FLOAT_INPUT = "float32-nchw"  # (B, 3, H, W) ImageNet-normalised RGB (processing.preprocess)
UINT8_INPUT = "uint8-bgr-nhwc"  # (B, H, W, 3) BGR uint8 as OpenCV decodes it; the graph normalises
INPUT_FORMATS = (FLOAT_INPUT, UINT8_INPUT)


def sidecar_path(artifact: str | Path) -> Path:
    """`models/m.onnx` -> `models/m.onnx.json`: one sidecar per artifact file."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


class ParityError(Dav2Error):
    """An artifact that promises parity (FP32, the FP16 graph, a uint8-input wrapper) differs
    from what it was checked against by more than its tolerance; nothing is written."""


class AccuracyError(Dav2Error):
    """A reduced-precision artifact's AbsRel is over its budget; nothing is written."""


@dataclass
class ParityReport:
    """One parity check: max |artifact - reference| / max(1, max |reference|) at each checked
    input size, and the tolerance it was held to. Every target checks parity through this."""

    max_abs_diff_relative: dict[str, float]  # "HxW" -> difference
    tolerance: float
    against: str  # what the artifact was compared with: "PyTorch FP32 (CPU)", a float artifact's name

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff_relative.values())

    def validate(self, what: str) -> "ParityReport":
        """Itself when every difference is within the tolerance; else one ParityError (NaN fails too)."""
        if not self.worst <= self.tolerance:
            raise ParityError(
                f"{what} differs from {self.against} by {self.worst:.2e} (tolerance {self.tolerance:.0e}); "
                "nothing written"
            )
        return self


@dataclass
class GateRecord:
    """The accuracy budget an artifact was held to (dav2.export.gate), and where it came from."""

    max_abs_rel: float | None  # None: not gated
    source: str  # "default", "--max-abs-rel", "off", or the engine's rule


@dataclass
class AccuracyReport:
    """A reduced-precision artifact measured against FP32: one shape for every target."""

    abs_rel: float
    delta1: float
    max_abs_diff: float
    images: int  # inputs compared
    against: str  # "PyTorch FP32 (CPU)", "FP32 reference outputs (...)"
    alignment: str = "none"  # "scale-and-shift" for relative models measured against PyTorch
    inputs: list[str] = field(default_factory=list)  # the held-out images, or the engine's input shapes
    graph_abs_rel: float | None = None  # engines: the AbsRel their ONNX graph had on the same inputs
    gate: GateRecord | None = None

    def validate(self, gate: GateRecord, remedy: str, where: str | None = None) -> "AccuracyReport":
        """Itself, with `gate` recorded, when AbsRel is within its budget (NaN is not); else one
        AccuracyError naming the budget (`where`, default its source) and what to try."""
        self.gate = gate
        if gate.max_abs_rel is not None and not self.abs_rel <= gate.max_abs_rel:
            raise AccuracyError(
                f"AbsRel {self.abs_rel:.4f} exceeds {where or gate.source} {gate.max_abs_rel:g}; nothing written "
                f"({remedy})"
            )
        return self


@dataclass
class AccuracyControl:
    """What NNCF's accuracy control measured while it chose the layers to keep in float."""

    max_abs_rel: float
    validation_images: int
    validation_abs_rel: float  # of the returned model, float parts in f32
    int8_ops: int  # compute operations with INT8 inputs
    float_ops: list[str] = field(default_factory=list)  # compute operations it returned to float
    seconds: float = 0.0


@dataclass
class QuantizationRecipe:
    """How a reduced-precision graph was made: one shape for every tool."""

    tool: str  # "onnxruntime.quantization", "nncf quantize", "nvidia-modelopt AutoCast", ...
    mode: str  # "dynamic"/"static" (ONNX Runtime), "int8"/"int8-mixed" (NNCF), "autocast-fp16", "qdq-int8"
    op_types: list[str] = field(default_factory=list)  # what was quantized, or kept in FP32 (AutoCast)
    float_groups: list[str] = field(default_factory=list)  # named parts left in higher precision
    float_nodes: list[str] = field(default_factory=list)  # node names or patterns left in higher precision
    high_precision: str | None = None  # the precision of what is not quantized (Model Optimizer)
    preset: str | None = None  # NNCF's model type preset
    control: AccuracyControl | None = None  # NNCF's accuracy control, when it chose the float layers


@dataclass
class CalibrationRecord:
    """The calibration set an INT8 artifact was quantized on (dav2.calibration.dataset)."""

    source: str
    kind: str  # "folder" or "video"
    count: int
    seed: int
    input_hw: list[int]
    sha256: str  # of the calibration images' names and contents
    files: list[str] = field(default_factory=list)
    holdout: list[str] = field(default_factory=list)  # kept out for the accuracy report
    validation: list[str] = field(default_factory=list)  # accuracy control's images


DEFAULT_WORKSPACE_GB = 4.0  # TensorRT's builder workspace limit, GiB (dav2-export --workspace)


@dataclass
class TensorRTRecord:
    """Where an engine can run (engines load only in the TensorRT version and GPU that built them)."""

    version: str
    gpu: str
    compute_capability: str
    profile: dict[str, list[int]]  # min/opt/max (B, 3, H, W)
    cuda_driver: str | None = None
    workspace_gb: float = DEFAULT_WORKSPACE_GB
    strongly_typed: bool = True  # precision from the source ONNX graph, not builder flags
    trtexec: str | None = None  # the trtexec command that builds the same engine


@dataclass
class OpenVinoRecord:
    """How an IR is compiled: the inference precision hint ("f32" makes FP32 mean FP32)."""

    inference_precision: str | None = None
    keep_head: bool | None = None


COREML_NOT_RUN = "not run here: Core ML runs on Apple devices only (macOS, iOS); docs/coreml.md shows how to run it"


@dataclass
class CoreMlRecord:
    """What a Core ML package declares (read back with coremltools' spec API), and that dav2
    did not run it: no dav2 backend runs Core ML, so no parity check or accuracy report exists."""

    compute_precision: str  # "float16" (what the Neural Engine runs) or "float32"
    deployment_target: str  # coremltools' minimum deployment target: "iOS16"
    spec_version: int  # the Core ML specification version the package needs
    run: str = COREML_NOT_RUN


@dataclass
class MetricCalibration:
    """A metric scale fitted once to measured depth (dav2-calibrate), which the runtime applies
    to every frame: metres = 1 / (scale * d + shift) for a relative model's disparity d,
    depth / scale for a metric model (shift 0)."""

    method: str  # "anchors" (u,v,metres files) or "rgbd" (images with measured depth)
    scale: float
    shift: float
    points: int  # measured points the fit used
    inliers: int  # of those, points with full weight in the robust fit
    residual_rms_m: float  # on the fitted points, metres
    residual_median_rel: float  # median |fitted - measured| / measured on the fitted points
    frames: int  # images the fitted points came from
    heldout_points: int = 0  # measured points kept out of the fit, to check it
    heldout_abs_rel: float | None = None  # AbsRel on them with this calibration
    heldout_abs_rel_before: float | None = None  # and without it (metric models: their own metres)
    camera: dict[str, float] | None = None  # fx, fy, cx, cy (+ width, height) when the user gave them
    frame_hw: list[int] | None = None  # (H, W) of the frames it was fitted on
    fitted_on: str | None = None  # the artifact file it was fitted with

    def __post_init__(self) -> None:
        if self.method not in ("anchors", "rgbd"):
            raise ValueError(f"'metric_calibration.method' must be anchors or rgbd, not {self.method!r}")
        if not self.scale > 0:
            raise ValueError(f"'metric_calibration.scale' must be positive, not {self.scale!r}")


@dataclass
class ArtifactMetadata:
    artifact: str  # the artifact's file name
    format: ArtifactFormat
    encoder: str | None  # None: a graph exported by another tool
    kind: ModelKind
    precision: Precision | None  # None: unknown (a graph exported by another tool)
    dynamic: bool
    input_shape: list[int] | None  # (1, 3, H, W) for static artifacts, None for dynamic
    max_depth: float | None = None
    traced_hw: list[int] = field(default_factory=lambda: [DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE])
    dynamic_range: dict[str, int] | None = None  # multiple_of / min / max side for dynamic graphs
    input_format: str = FLOAT_INPUT  # INPUT_FORMATS; uint8: `dav2-export --input uint8`
    camera_hw: list[int] | None = None  # uint8 graphs that also resize: the (H, W) frames they take
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    weights_file: str | None = None  # the artifact's companion weights (.bin, ONNX external data)
    exporter: str | None = None
    opset: int | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    # how the weights were stored: "pth", "pth:model/module." (what was unwrapped), "safetensors", "transformers"
    checkpoint_format: str | None = None
    licence: str | None = None
    check_image: str | None = None
    tools: dict[str, str] = field(default_factory=dict)
    parity: ParityReport | None = None  # FP32/FP16: against PyTorch
    input_parity: ParityReport | None = None  # uint8-input artifacts: against the float artifact they wrap
    accuracy: AccuracyReport | None = None  # reduced precision: AbsRel/δ1 on held-out images
    accuracy_not_measured: str | None = None  # reduced precision that no dav2 backend runs (Core ML): why
    calibration: CalibrationRecord | None = None  # INT8: the calibration set's identity
    quantization: QuantizationRecipe | None = None  # the recipe of a reduced-precision graph
    source_onnx: str | None = None  # engines: the precision-explicit ONNX they were built from
    tensorrt: TensorRTRecord | None = None
    openvino: OpenVinoRecord | None = None
    coreml: CoreMlRecord | None = None
    metric_calibration: MetricCalibration | None = None  # dav2-calibrate: metres from this scale
    from_sidecar: bool = field(default=True, compare=False)  # False: guessed from the graph alone
    schema: int = SCHEMA_VERSION

    # --- what backends ask -----------------------------------------------------------------

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """(H, W) the artifact requires, or None when it takes any multiple of 14."""
        if self.dynamic or self.input_shape is None:
            return None
        return int(self.input_shape[2]), int(self.input_shape[3])

    @property
    def takes_uint8(self) -> bool:
        """The graph normalises (and with camera_hw resizes) itself: the host passes bytes."""
        return self.input_format == UINT8_INPUT

    @property
    def default_input_size(self) -> int:
        """The short side fed to a dynamic artifact when the user names none."""
        return int(min(self.traced_hw))

    @property
    def output_meaning(self) -> str:
        return output_meaning(self.kind)

    @property
    def shape_label(self) -> str:
        return "dynamic" if self.fixed_hw is None else f"{self.fixed_hw[0]}x{self.fixed_hw[1]}"

    # --- reading and writing ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("from_sidecar")
        data["output"] = self.output_meaning  # for people reading the file
        return data

    def write(self, artifact: str | Path) -> Path:
        """Write the sidecar beside `artifact` (atomically); return its path."""
        if Path(artifact).name != self.artifact:
            raise ValueError(f"metadata for {self.artifact} written beside {Path(artifact).name}")
        path = sidecar_path(artifact)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> "ArtifactMetadata":
        """Parse and validate a sidecar's text; one Dav2Error names what is wrong."""
        data = parse_json(text, source)  # size, depth and syntax: one JsonError
        try:
            return _from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise Dav2Error(f"{source} is not valid dav2 metadata ({detail}); re-export the artifact") from None

    @classmethod
    def read(cls, artifact: str | Path) -> "ArtifactMetadata | None":
        """The artifact's sidecar, or None when it has none (a model exported by another tool)."""
        path = sidecar_path(artifact)
        if not path.exists() and not path.is_symlink():
            return None
        text = read_user_text(path, MAX_SIDECAR_BYTES, "metadata file")  # a FIFO or 6 GB file: one line
        metadata = cls.from_json(text, f"metadata file {quote(path)}")
        if metadata.artifact != Path(artifact).name:
            raise Dav2Error(
                f"metadata file {quote(path)} describes {metadata.artifact}, not {Path(artifact).name}; "
                "an artifact and its sidecar must be renamed together"
            )
        return metadata


# --- validation ----------------------------------------------------------------------------


# fields with their own checks in _from_dict (clearer messages: ranges, enums, shapes)
SPECIFIC = frozenset(
    "artifact format encoder kind precision dynamic input_shape traced_hw max_depth input_format camera_hw".split()
)
LEGACY_NORMALISATION = {"mean": MEAN, "std": STD}  # written by earlier dav2 versions; see the module docstring


def _from_dict(data: Any) -> ArtifactMetadata:
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, found {type(data).__name__}")
    schema = data.get("schema")
    if schema not in READABLE_SCHEMAS or isinstance(schema, bool):
        raise ValueError(f"schema version {schema!r}, this dav2 reads {' and '.join(map(str, READABLE_SCHEMAS))}")
    if schema == 2:
        data = {**_upgrade_v2(data), "schema": SCHEMA_VERSION}  # the record is this schema's from now on
    known = {f.name for f in dataclasses.fields(ArtifactMetadata)} - {"from_sidecar"}
    values = {name: data[name] for name in known if name in data}
    for name in ("artifact", "format", "encoder", "kind", "precision", "dynamic", "input_shape"):
        if name not in data:
            raise KeyError(name)
    _check_types(data, ArtifactMetadata, skip=SPECIFIC)
    _check_legacy_normalisation(data)
    values["format"] = ArtifactFormat(_text(data, "format"))
    values["kind"] = ModelKind(_text(data, "kind"))
    values["precision"] = None if data["precision"] is None else Precision(_text(data, "precision"))
    _text(data, "artifact")
    if data["encoder"] is not None and data["encoder"] not in ENCODERS:
        raise ValueError(f"unknown encoder {data['encoder']!r}")
    if not isinstance(data["dynamic"], bool):
        raise TypeError("'dynamic' must be true or false")
    values["input_shape"] = _input_shape(data["input_shape"], data["dynamic"])
    values["traced_hw"] = _sides(data.get("traced_hw", [DEFAULT_INPUT_SIZE] * 2), "traced_hw", 2)
    if data.get("max_depth") is not None:
        values["max_depth"] = _positive(data["max_depth"], "max_depth")
    if values["kind"] == ModelKind.METRIC and values.get("max_depth") is None:
        raise ValueError("a metric model needs max_depth")
    values["input_format"] = data.get("input_format", FLOAT_INPUT)
    if values["input_format"] not in INPUT_FORMATS:
        raise ValueError(f"'input_format' {values['input_format']!r} is not one of {', '.join(INPUT_FORMATS)}")
    if data.get("camera_hw") is not None:
        values["camera_hw"] = _sides(data["camera_hw"], "camera_hw", 2)
        if values["input_format"] != UINT8_INPUT:
            raise ValueError(f"'camera_hw' needs 'input_format' {UINT8_INPUT!r} (the graph resizes camera frames)")
    for name, kind in RECORDS.items():
        if data.get(name) is not None:
            values[name] = _record(kind, data[name], name)
    if values.get("tensorrt") is not None:
        _sides(values["tensorrt"].profile.get("max"), "tensorrt.profile.max", 4)
    if data.get("weights_file") is not None:
        _plain_name(data["weights_file"], "weights_file")
    return ArtifactMetadata(**values)


def _plain_name(value: str, name: str) -> None:
    """A companion file lives beside its artifact: a bare file name, never an absolute path or
    one that leaves the artifact's folder (a sidecar must not point dav2 at another file)."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value:
        raise ValueError(f"{name!r} must be a file name beside the artifact, not {value!r}")


def _record(kind: type, data: dict, name: str):
    """A nested record (tensorrt, parity, ...): required fields present, every field's type
    checked, its own records (accuracy.gate, quantization.control) made the same way."""
    for item in dataclasses.fields(kind):
        required = item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
        if required and item.name not in data:
            raise KeyError(f"{name}.{item.name}")
    _check_types(data, kind, prefix=f"{name}.")
    values = {item.name: data[item.name] for item in dataclasses.fields(kind) if item.name in data}
    for item_name, hint in typing.get_type_hints(kind).items():
        nested = _record_type(hint)
        if nested is not None and values.get(item_name) is not None:
            values[item_name] = _record(nested, values[item_name], f"{name}.{item_name}")
    return kind(**values)


def _record_type(hint: Any) -> type | None:
    """The dataclass an annotation names (`X` or `X | None`), or None."""
    candidates = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


# the sidecar's nested records, each made and checked by `_record`
RECORDS: dict[str, type] = {
    name: _record_type(hint)
    for name, hint in typing.get_type_hints(ArtifactMetadata).items()
    if _record_type(hint) is not None
}

# v2 keys that the typed records name differently: {record: {old key: new key}}
V2_RENAMED = {
    "calibration": {"held_out": "holdout"},
    "accuracy": {"held_out": "inputs", "sizes": "inputs"},
    "quantization": {"ops": "op_types", "kept_fp32": "float_groups", "excluded_nodes": "float_nodes"},
}
V2_CONTROL = ("max_abs_rel", "validation_images", "validation_abs_rel", "int8_ops", "float_ops", "seconds")


def _upgrade_v2(data: dict) -> dict:
    """A schema-2 sidecar's loose records in the typed shapes (the rest of it is unchanged):
    keys renamed, NNCF's accuracy-control fields nested, the uint8 check moved to `input_parity`.
    A value of the wrong type is left as it is, for the type check to name."""
    data = dict(data)
    for name, renamed in V2_RENAMED.items():
        if isinstance(data.get(name), dict):
            data[name] = {renamed.get(key, key): value for key, value in data[name].items()}
    recipe = data.get("quantization")
    if isinstance(recipe, dict):
        recipe.setdefault("mode", "int8")  # NNCF's plain recipe named no mode
        if recipe.get("mode") == "int8-mixed":
            recipe["control"] = {key: recipe.pop(key) for key in V2_CONTROL if key in recipe}
    parity = data.get("parity")
    if isinstance(parity, dict) and isinstance(parity.get("uint8_input"), dict):
        parity = dict(parity)
        check = dict(parity.pop("uint8_input"))
        if isinstance(check.get("max_abs_diff_relative"), int | float):
            check["max_abs_diff_relative"] = {"frame": check["max_abs_diff_relative"]}
        data["input_parity"], data["parity"] = check, parity or None
    return data


def _check_types(data: dict, kind: type, prefix: str = "", skip: frozenset[str] = frozenset()) -> None:
    """TypeError naming the first field of `data` whose JSON value does not fit `kind`'s annotation."""
    hints = typing.get_type_hints(kind)
    for item in dataclasses.fields(kind):
        if item.name in skip or item.name == "from_sidecar" or item.name not in data:
            continue
        hint, value = hints[item.name], data[item.name]
        if not _fits(value, hint):
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise TypeError(f"'{prefix}{item.name}' must be {_described(hint)}, not {shown}")


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a type annotation (the subset the sidecar's records use)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str or (isinstance(hint, type) and issubclass(hint, enum.Enum)):
        return isinstance(value, str)  # an enum's value is checked when it is made
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and _fits(v, args[1]) for k, v in value.items())
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict)  # its own fields are checked by _record
    raise TypeError(f"the sidecar check does not know the type {hint}")  # a new kind of field: teach _fits


def _described(hint: Any) -> str:
    """A type annotation in a user's words: "a whole number or null"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_described(arg) for arg in args)
    if origin is list:
        return f"a list of {_described(args[0]).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict or dataclasses.is_dataclass(hint):
        return "an object"
    names = {type(None): "null", bool: "true or false", int: "a whole number", float: "a number", str: "text"}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "text"
    return names.get(hint, "a value")


def _check_legacy_normalisation(data: dict) -> None:
    """`mean`/`std` of older sidecars: accepted when they are ImageNet's, the values dav2 applies."""
    for name, expected in LEGACY_NORMALISATION.items():
        if name not in data:
            continue
        value = data[name]
        if not (isinstance(value, list) and len(value) == 3 and all(_fits(v, float) for v in value)):
            raise TypeError(f"'{name}' must be a list of three numbers, not {value!r}")
        if not all(math.isclose(v, e, rel_tol=0, abs_tol=1e-9) for v, e in zip(value, expected)):
            raise ValueError(
                f"'{name}' {value} is not ImageNet's {list(expected)}: dav2 normalises every input with "
                "ImageNet's mean and std (what Depth Anything V2 was trained with), so it cannot run this "
                "artifact as its sidecar says"
            )


def _text(data: dict, name: str) -> str:
    if not isinstance(data[name], str):
        raise TypeError(f"'{name}' must be text")
    return data[name]


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"'{name}' must be a positive number, not {value!r}")
    return float(value)


def _sides(value: Any, name: str, length: int) -> list[int]:
    if not isinstance(value, list) or len(value) != length:
        raise ValueError(f"'{name}' must be a list of {length} whole numbers")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= DYNAMIC_MAX_SIDE for v in value):
        raise ValueError(f"'{name}' {value} holds sizes outside 1..{DYNAMIC_MAX_SIDE}")
    return value


def _input_shape(value: Any, dynamic: bool) -> list[int] | None:
    if dynamic:
        return None
    shape = _sides(value, "input_shape", 4)
    batch, channels, height, width = shape
    if channels != 3:
        raise ValueError(f"'input_shape' {shape} must have 3 colour channels")
    for side in (height, width):
        if side % PATCH_SIZE or side < DYNAMIC_MIN_SIDE:
            raise ValueError(f"'input_shape' {shape}: sides must be multiples of {PATCH_SIZE}, at least 28")
    return shape
