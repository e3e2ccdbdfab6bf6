"""The export formats, in one table (as Ultralytics' `export_formats()`): what each target
writes, at which precisions, from which flag, and which options it takes.

`dav2-export`'s format flags, their choices and help, and its conflict checks (`--fp16` with
`--int8`, an option given for no target that takes it) are all made from `FORMATS`;
`dav2.export.pipeline.requested_targets` builds the targets from it. Adding a format is one
module with an `ExportTarget` subclass and one row here.

torch-free and light: the CLI imports it to build --help; a row names its target class as
"module:Class", imported only when an export runs.
"""

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from dav2.errors import Dav2Error
from dav2.export.context import ExportRequest
from dav2.vocabulary import BackendName, Precision

ALL = tuple(Precision)
FP16, INT8 = (Precision.FP16,), (Precision.INT8,)
FP32_INT8 = (Precision.FP32, Precision.INT8)

# ExportRequest fields a format may take, and how a user spells them
OPTION_FLAGS: dict[str, str] = {
    "keep_fp32": "--keep-fp32",
    "ort_int8": "--ort-int8",
    "int8_float": "--int8-float",
    "accuracy_control": "--accuracy-control",
    "workspace_gb": "--workspace",
    "profile": "--profile",
    "min_shape": "--min-shape",
    "opt_shape": "--opt-shape",
    "max_shape": "--max-shape",
    "input": "--input uint8",
    "litert_int8": "--litert-int8",
}
LITERT_INT8_MODES = ("dynamic", "static")  # --litert-int8's choices, the first the default
INPUTS = ("float32", "uint8")  # --input: what the artifact takes (uint8: camera frames, preprocessed in the graph)
# options that change every artifact of the export, so every requested format must take them
EVERY_FORMAT = frozenset({"input"})


@dataclass(frozen=True)
class ExportFormat:
    """One row: a kind of artifact and everything the CLI and the pipeline need to know of it."""

    name: str  # shown in progress lines and errors: "OpenVINO IR"
    key: str  # the ExportRequest field and the flag: openvino -> --openvino
    suffix: str  # the artifact's file ending
    precisions: tuple[Precision, ...]  # the first is what a bare flag means where `bare` says so
    targets: Mapping[Precision, str]  # "module:Class" of the ExportTarget per precision
    help: str
    bare: Precision | None = None  # the flag alone (no value) means this precision; None: a value is needed
    precision_flags: Mapping[str, Precision] = field(default_factory=dict)  # ONNX: --fp16, --int8
    options: Mapping[str, tuple[Precision, ...]] = field(default_factory=dict)  # OPTION_FLAGS it takes, where
    calibrated: tuple[Precision, ...] = ()  # precisions quantized from --calib-dir (a target may narrow it)
    # of those, the ones whose default recipe needs no images (ONNX/LiteRT INT8 "dynamic"; a mode option asks)
    uncalibrated_default: tuple[Precision, ...] = ()
    backend: BackendName | None = None  # the dav2 backend that runs the artifact; None: none runs it here
    fixed_size: bool = False  # its converter takes one input size: --height/--width are needed
    elsewhere: str = ""  # no backend here: where its artifacts are run and measured instead

    @property
    def flag(self) -> str:
        return f"--{self.key}"

    def spelling(self, precision: Precision) -> str:
        """How a user asks for this format at `precision`: '--openvino int8', '--fp16'."""
        named = [flag for flag, value in self.precision_flags.items() if value == precision]
        if named:
            return named[0]
        return self.flag if self.precision_flags else f"{self.flag} {precision}"

    def takes(self, option: str, precision: Precision) -> bool:
        return precision in self.options.get(option, ())

    @property
    def runs_here(self) -> bool:
        """Whether a dav2 backend runs this format (Core ML runs on Apple devices only): the
        accuracy report and the benchmarks need it."""
        return self.backend is not None

    def calibrates(self, precision: Precision) -> bool:
        """Whether `precision` with the default options quantizes from calibration images
        (what dav2-bench asks of an export it makes)."""
        return precision in self.calibrated and precision not in self.uncalibrated_default

    def target(self, precision: Precision, request: ExportRequest):
        """The ExportTarget that builds this format at `precision` (its module imported now)."""
        module, name = self.targets[precision].split(":")
        target_class = getattr(importlib.import_module(module), name)
        return target_class.from_request(self, precision, request)


def _each(target: str, precisions: tuple[Precision, ...] = ALL) -> dict[Precision, str]:
    return dict.fromkeys(precisions, target)


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat(
        "ONNX",
        "onnx",
        ".onnx",
        ALL,
        {
            **_each("dav2.export.onnx:OnnxTarget", (Precision.FP32, Precision.FP16)),
            Precision.INT8: "dav2.export.onnx_int8:OnnxInt8Target",
        },  # fmt: skip
        "Export ONNX (the default target when none is named); --fp16 or --int8 choose its precision.",
        precision_flags={
            "--fp16": Precision.FP16,  # help: see PRECISION_FLAG_HELP
            "--int8": Precision.INT8,
        },
        options={"keep_fp32": FP16, "ort_int8": INT8, "int8_float": INT8, "input": ALL},
        calibrated=INT8,
        uncalibrated_default=INT8,  # --ort-int8 dynamic
        backend=BackendName.ONNXRUNTIME,
    ),
    ExportFormat(
        "OpenVINO IR",
        "openvino",
        ".xml",
        ALL,
        _each("dav2.export.openvino:OpenVinoTarget"),
        "OpenVINO IR (.xml/.bin). INT8 is NNCF post-training quantization and needs --calib-dir.",
        options={"int8_float": INT8, "accuracy_control": INT8, "input": ALL},
        calibrated=INT8,
        backend=BackendName.OPENVINO,
    ),
    ExportFormat(
        "TensorRT engine",
        "trt",
        ".engine",
        ALL,
        _each("dav2.export.tensorrt:TensorRTTarget"),
        "TensorRT engine (needs TensorRT and an NVIDIA GPU); --trt alone means fp16. INT8 needs --calib-dir.",
        bare=Precision.FP16,
        options={
            "keep_fp32": FP16,
            "int8_float": INT8,
            **dict.fromkeys(("workspace_gb", "profile", "min_shape", "opt_shape", "max_shape"), ALL),
        },
        calibrated=INT8,
        backend=BackendName.TENSORRT,
    ),
    ExportFormat(
        "LiteRT",
        "litert",
        ".tflite",
        ALL,
        _each("dav2.export.litert:LiteRtTarget"),
        "LiteRT (.tflite, for Android and ARM boards; fixed size: give --height/--width). FP16: float16 weights; "
        "INT8: see --litert-int8.",
        options={"litert_int8": INT8},
        calibrated=INT8,
        uncalibrated_default=INT8,  # --litert-int8 dynamic
        backend=BackendName.LITERT,
        fixed_size=True,
    ),
    ExportFormat(
        "ExecuTorch",
        "executorch",
        ".pte",
        FP32_INT8,
        _each("dav2.export.executorch:ExecuTorchTarget", FP32_INT8),
        "ExecuTorch program with the XNNPACK delegate (.pte, for Android, iOS and ARM boards; fixed size: give "
        "--height/--width). INT8 is PT2E quantization and needs --calib-dir.",
        calibrated=INT8,
        backend=BackendName.EXECUTORCH,
        fixed_size=True,
    ),
    ExportFormat(
        "Core ML",
        "coreml",
        ".mlpackage",
        (Precision.FP16, Precision.FP32),
        _each("dav2.export.coreml:CoreMlTarget", (Precision.FP16, Precision.FP32)),
        "Core ML ML Program (.mlpackage folder, fixed size: give --height/--width). Runs on Apple devices only: "
        "checked structurally here, not run.",
        fixed_size=True,
        elsewhere="on a Mac with coremltools (docs/coreml.md)",
    ),
)
PRECISION_FLAG_HELP = {
    "--fp16": "ONNX in FP16 (input and output stay FP32).",
    "--int8": "ONNX in INT8 for ONNX Runtime on CPUs (see --ort-int8).",
}
DEFAULT_FORMAT = (FORMATS[0], Precision.FP32)  # what an export without a format flag writes


def for_backend(backend: str) -> ExportFormat:
    """The row whose artifacts `backend` runs (dav2-bench builds its candidates from it)."""
    rows = [row for row in FORMATS if row.backend == backend]
    if not rows:
        raise Dav2Error(f"no export format is run by the {backend} backend")
    return rows[0]


def for_artifact(path) -> ExportFormat | None:
    """The row whose suffix `path` has (a Core ML package is a folder ending .mlpackage)."""
    name = str(path).lower()
    return next((row for row in FORMATS if name.endswith(row.suffix)), None)


def requested(request: ExportRequest) -> list[tuple[ExportFormat, Precision]]:
    """(format, precision) for each format the request names, in table order; ONNX FP32 when none."""
    pairs = [(row, Precision(getattr(request, row.key))) for row in FORMATS if getattr(request, row.key)]
    return pairs or [DEFAULT_FORMAT]


def given_options(request: ExportRequest) -> list[str]:
    """The format options of OPTION_FLAGS the request sets away from their defaults."""
    defaults = {f.name: f.default_factory() if callable(f.default_factory) else f.default
                for f in dataclasses.fields(ExportRequest)}  # fmt: skip
    return [name for name in OPTION_FLAGS if getattr(request, name) != defaults[name]]


def takers(option: str) -> str:
    """'--fp16 or --trt fp16', '--trt': the formats (at the precisions) that take `option`."""
    spelled = []
    for row in FORMATS:
        taking = [p for p in row.precisions if row.takes(option, p)]
        spelled += [row.flag] if taking == list(row.precisions) else [row.spelling(p) for p in taking]
    return " or ".join(spelled)


def check_options(request: ExportRequest) -> None:
    """An option given for no requested format that takes it (or, for EVERY_FORMAT options,
    for a requested format that does not) is one Dav2Error naming the formats that do."""
    pairs = requested(request)
    for option in given_options(request):
        taken = [row.takes(option, precision) for row, precision in pairs]
        if option in EVERY_FORMAT and not all(taken):
            refusing = ", ".join(row.spelling(p) for (row, p), ok in zip(pairs, taken) if not ok)
            raise Dav2Error(f"{OPTION_FLAGS[option]} is built for {takers(option)} artifacts, not {refusing}")
        if not any(taken):
            asked = ", ".join(row.spelling(p) for row, p in pairs)
            raise Dav2Error(f"{OPTION_FLAGS[option]} does not apply to {asked}: add {takers(option)}")


def parse_format_flags(values: dict) -> dict[str, str | None]:
    """The format flags' values -> {ExportRequest field: precision or None}; two precisions of
    one format (--fp16 --int8) are one Dav2Error."""
    chosen: dict[str, str | None] = {}
    for row in FORMATS:
        value = values.pop(row.key)
        flagged = [flag for flag in row.precision_flags if values.pop(flag_name(flag))]
        if len(flagged) > 1:
            raise Dav2Error(f"{' and '.join(flagged)} are two {row.name} precisions; choose one")
        if flagged:
            value = row.precision_flags[flagged[0]]
        elif value is True:  # a plain flag (--onnx)
            value = row.precisions[0]
        chosen[row.key] = Precision(value).value if value else None
    return chosen


def flag_name(flag: str) -> str:
    """'--fp16' -> 'fp16': the parameter name click gives a flag."""
    return flag.lstrip("-").replace("-", "_")


def format_parameter_names() -> tuple[str, ...]:
    """Every parameter the format flags give a command (each format's own, its precision flags)."""
    return tuple(name for row in FORMATS for name in (row.key, *map(flag_name, row.precision_flags)))
