"""Precision-explicit ONNX -> strongly typed TensorRT engine (TensorRT 10.3+ and 11.x).

The engine's precision is the ONNX graph's: FP16 engines are built from the AutoCast FP16
graph (FP32 islands included), INT8 engines from the explicit Q/DQ graph, FP32 engines from
the FP32 graph (dav2.export.explicit makes the first two on any CPU). The network is created
STRONGLY_TYPED, so no precision flags, layer precisions or calibrators are set here: those
are gone from TensorRT 11, and implicit INT8 calibration is deprecated since 10.1. What is
left is thin, as in TensorRT's samples: the ONNX parser, one optimization profile (min/opt/max
shapes) for dynamic graphs, a workspace limit, a timing cache beside the engines (one per GPU
and TensorRT version) so a rebuild skips most kernel timing, `build_serialized_network`.

Where TensorRT is missing (a CPU build machine), the export writes the precision-explicit ONNX
(with its FP32 reference outputs, dav2.export.reference) and stops with one line;
`dav2-export --trt fp16 --from model_fp16.onnx` on the target (a Jetson) builds the engine there
from that file and its sidecar, without PyTorch, and checks it against that reference.

Profiles come from the frames the engine will see: `opt` is the check image's network size
(range), the camera's (--profile camera --camera-size) or the traced square (batch); a profile
that cannot hold any checked input is refused before building. The sidecar records the
engine's own shape range and the equivalent `trtexec` command.

The parts that need no GPU (shape profiles, metadata, version checks) are plain functions and
are tested everywhere; tests/test_tensorrt_api.py checks every TensorRT attribute used here
against the bindings of TensorRT 10.3, 10.13 and 11.4.
"""

import copy
import dataclasses
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.export.accuracy import measure, print_report
from dav2.export.context import DYNAMIC_RANGE, Built, ExportContext, ExportRequest, GraphOptions, graph_options
from dav2.export.graph import onnx_built
from dav2.export.preprocess import parse_camera_size
from dav2.export.reference import Reference, ReferenceCase, reference_path
from dav2.export.target import ExportTarget
from dav2.files import atomic_write_bytes
from dav2.metadata import (
    UINT8_INPUT,
    AccuracyReport,
    ArtifactMetadata,
    GateRecord,
    TensorRTRecord,
    sidecar_path,
)
from dav2.runtime.backends import open_backend
from dav2.runtime.backends.tensorrt import _logger, create, in_profile, require_gpu, require_tensorrt, tensorrt_missing
from dav2.runtime.cuda import Gpu, GpuInfo
from dav2.vocabulary import INPUT_NAME, PATCH_SIZE, ArtifactFormat, Precision

PROFILE_PRESETS = ("range", "camera", "batch")
DEFAULT_PRESET = "range"
# The default profile's largest side: 16:9 frames at the 518 input size, in either orientation
# (518x924 and 924x518; 66x66 patches). The attention scores grow with the square of the patch
# count, so the maximum decides the engine's memory on an 8 GB Orin Nano.
DEFAULT_MAX_SIDE = 924
RANGE_MIN_SIDE = 196  # the default profile's smallest side (dav2-run --input-size 196)
DEFAULT_CAMERA_HW = (720, 1280)  # the camera preset's frames when --camera-size is not given
BATCH_SIZES = (1, 4, 8)  # the batch preset: min / opt / max batch at the traced square
# an engine may lose this much more AbsRel (vs FP32) than its ONNX graph did before it is refused
ENGINE_ABS_REL_MARGIN = 0.01
ENGINE_REMEDY = "TensorRT computed the graph differently: see docs/tensorrt.md"


@dataclass
class Profile:
    """Input shapes (B, 3, H, W) an engine accepts: min <= any input <= max, tuned for opt."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def as_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def holds(self, shape: tuple[int, ...]) -> bool:
        return in_profile(tuple(shape), self.as_dict())

    @property
    def label(self) -> str:
        return f"min {dims(self.min)}, opt {dims(self.opt)}, max {dims(self.max)}"


def dims(shape) -> str:
    return "x".join(str(d) for d in shape)


def parse_shape(text: str) -> tuple[int, int, int]:
    """'1x518x518' (batch x height x width) -> (1, 518, 518)."""
    parts = text.lower().replace(",", "x").split("x")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise Dav2Error(f"shape {text!r} should be BATCHxHEIGHTxWIDTH, e.g. 1x518x518")
    return tuple(int(p) for p in parts)


def preset_shapes(preset: str, traced: int, check_hw: tuple[int, int], camera_hw: tuple[int, int] | None):
    """(batch, height, width) for min, opt and max of a preset.

    range: any single image up to DEFAULT_MAX_SIDE, tuned for the check image's own size;
    camera: exactly the camera's frames at the traced size (min = opt = max: the fastest engine);
    batch: 1-8 images at the traced square."""
    if preset == "range":
        low, high = RANGE_MIN_SIDE, DEFAULT_MAX_SIDE
        return (1, low, low), (1, *check_hw), (1, high, high)
    if preset == "camera":
        hw = processing.network_size(camera_hw or DEFAULT_CAMERA_HW, traced)
        return (1, *hw), (1, *hw), (1, *hw)
    low, mid, high = BATCH_SIZES
    return (low, traced, traced), (mid, traced, traced), (high, traced, traced)


def optimization_profile(
    options: GraphOptions,
    preset: str | None = None,
    min_shape: str | None = None,
    opt_shape: str | None = None,
    max_shape: str | None = None,
    check_hw: tuple[int, int] | None = None,
    camera_hw: tuple[int, int] | None = None,
) -> Profile:
    """The engine's shape profile: fixed for static graphs; for dynamic ones a preset (opt from
    the check image's network size `check_hw` or the camera's), any of min/opt/max overridden."""
    if not options.dynamic:
        if preset or min_shape or opt_shape or max_shape or camera_hw:
            raise Dav2Error(
                "shape profiles apply to dynamic graphs: leave out --height/--width/--static (or the profile flags)"
            )
        fixed = (1, 3, options.height, options.width)
        return Profile(fixed, fixed, fixed)
    preset = preset or DEFAULT_PRESET
    if preset not in PROFILE_PRESETS:
        raise Dav2Error(f"unknown profile preset {preset!r}; choose one of {', '.join(PROFILE_PRESETS)}")
    if camera_hw is not None and preset != "camera":
        raise Dav2Error("--camera-size sets the camera profile: add --profile camera")
    traced = min(options.height, options.width)
    check_hw = check_hw or (traced, traced)
    defaults = preset_shapes(preset, traced, check_hw, camera_hw)
    flags = ("--min-shape", "--opt-shape", "--max-shape")
    shapes = [parse_shape(s) if s else d for s, d in zip((min_shape, opt_shape, max_shape), defaults)]
    for flag, (batch, height, width) in zip(flags, shapes):
        if batch < 1:
            raise Dav2Error(f"{flag}: the batch must be at least 1")
        for side in (height, width):
            if side % PATCH_SIZE or not DYNAMIC_RANGE["min"] <= side <= DYNAMIC_RANGE["max"]:
                raise Dav2Error(
                    f"{flag} {batch}x{height}x{width}: sides must be multiples of 14 "
                    f"between {DYNAMIC_RANGE['min']} and {DYNAMIC_RANGE['max']}"
                )
    for dim, label in enumerate(("batch", "height", "width")):
        if not shapes[0][dim] <= shapes[1][dim] <= shapes[2][dim]:
            values = [s[dim] for s in shapes]
            origin = "" if opt_shape else " (opt is the check image's size: give --opt-shape, or another --check-image)"
            raise Dav2Error(f"profile {label}: min <= opt <= max does not hold ({values}){origin}")
    low, mid, high = ((b, 3, h, w) for b, h, w in shapes)
    return Profile(low, mid, high)


def check_shapes_fit(profile: Profile, shapes: list[tuple[str, tuple[int, ...]]]) -> None:
    """Refuse, before building, a profile that cannot hold the accuracy check's inputs."""
    outside = [f"{name} at {dims(shape)}" for name, shape in shapes if not profile.holds(shape)]
    if shapes and len(outside) == len(shapes):
        raise Dav2Error(
            f"the engine's profile ({profile.label}) cannot hold the accuracy check ({'; '.join(outside)}), so the "
            "engine could not be checked: widen it with --min-shape/--max-shape, choose another --profile, or "
            "give a --check-image inside it; nothing built"
        )


def timing_cache_path(folder: Path, gpu: GpuInfo, tensorrt_version: str) -> Path:
    """One timing cache per GPU model and TensorRT version, beside the engines."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu.gpu.lower()).strip("-")
    return folder / f"tensorrt-{tensorrt_version}-{slug}.timing-cache"


def trtexec_command(
    onnx_name: str, engine_name: str, profile: Profile, workspace_gb: float, cache: str, precision
) -> str:
    """The trtexec command line that builds the same engine (strongly typed, same profile,
    workspace and timing cache): NVIDIA's own tool, whose engine dav2-run then runs."""
    args = ["trtexec", f"--onnx={onnx_name}", "--stronglyTyped"]
    if profile.min != profile.max:
        for flag, shape in (("min", profile.min), ("opt", profile.opt), ("max", profile.max)):
            args.append(f"--{flag}Shapes={INPUT_NAME}:{dims(shape)}")
    args.append(f"--memPoolSize=workspace:{int(workspace_gb * 1024)}M")
    if precision == Precision.FP32:
        args.append("--noTF32")
    args += [f"--timingCacheFile={cache}", f"--saveEngine={engine_name}"]
    return shlex.join(args)


def engine_record(
    profile: Profile, tensorrt_version: str, gpu: GpuInfo, workspace_gb: float, trtexec: str | None = None
) -> TensorRTRecord:
    """What the engine's sidecar records beyond the common fields: where it can run."""
    return TensorRTRecord(
        version=tensorrt_version,
        gpu=gpu.gpu,
        compute_capability=gpu.compute_capability,
        cuda_driver=gpu.cuda_driver,
        profile=profile.as_dict(),
        workspace_gb=workspace_gb,
        trtexec=trtexec,
    )


def build_engine(
    onnx_path: Path, engine_path: Path, profile: Profile, workspace_gb: float, cache_folder: Path, precision
) -> TensorRTRecord:
    """Build the strongly typed engine for `onnx_path` and write it; return its TensorRT record.

    Every TensorRT object is created and freed while GPU 0's primary context is current."""
    trt = require_tensorrt()
    info = require_gpu(trt)
    cache = timing_cache_path(cache_folder, info, trt.__version__)
    gpu = Gpu()
    try:
        with gpu.current():
            serialized, timing = _build(trt, onnx_path, profile, workspace_gb, cache, precision)
    finally:
        gpu.close()
    atomic_write_bytes(engine_path, serialized)
    if timing is None:
        console.warn("TensorRT returned no timing cache; the next build times every kernel again")
    else:
        atomic_write_bytes(cache, timing)
    command = trtexec_command(onnx_path.name, engine_path.name, profile, workspace_gb, cache.name, precision)
    return engine_record(profile, trt.__version__, info, workspace_gb, command)


def _build(trt, onnx_path: Path, profile: Profile, workspace_gb: float, timing_cache: Path, precision):
    """(serialized engine, serialized timing cache or None); the builder objects die with this frame."""
    builder = create(trt.Builder, _logger(trt), what="builder")
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, _logger(trt))
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise Dav2Error(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if precision == Precision.FP32:
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32 (TF32 rounds MatMul/Conv inputs)
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(INPUT_NAME, profile.min, profile.opt, profile.max)
    if config.add_optimization_profile(trt_profile) < 0:
        raise Dav2Error(f"TensorRT refused the shape profile {profile.label}")
    use_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise Dav2Error("TensorRT failed to build the engine (see its messages above)")
    cache = config.get_timing_cache()
    timing = cache.serialize() if cache is not None else None
    return bytes(serialized), bytes(timing) if timing is not None else None


def use_timing_cache(config, path: Path) -> None:
    """Start from the saved timing cache; one TensorRT rejects (another version's, corrupt)
    is replaced by an empty one, so the build and its engine still succeed."""
    saved = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(saved)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return
    if saved:
        console.warn(f"TensorRT rejected the timing cache {path.name}; building without it (it is rewritten)")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise Dav2Error("TensorRT could not create a timing cache (out of memory?)")


def graph_options_of(metadata: ArtifactMetadata) -> GraphOptions:
    """The graph shape an ONNX artifact was exported with, from its sidecar."""
    if metadata.dynamic:
        return GraphOptions(*metadata.traced_hw, dynamic=True)
    return GraphOptions(*metadata.fixed_hw, dynamic=False)


def engine_metadata(source: ArtifactMetadata, engine: Path, record: TensorRTRecord) -> ArtifactMetadata:
    """The engine's sidecar: the source ONNX's facts, the TensorRT record, the engine's name,
    and the shape range the engine really takes (its profile's sides, not the ONNX's)."""
    low, high = record.profile["min"], record.profile["max"]
    dynamic_range = None
    if source.dynamic:
        dynamic_range = {"multiple_of": PATCH_SIZE, "min": min(low[2:]), "max": max(high[2:])}
    return dataclasses.replace(
        copy.deepcopy(source),  # the source's records stay the source's
        artifact=engine.name,
        format=ArtifactFormat.TENSORRT,
        weights_file=None,
        parity=None,
        accuracy=None,
        dynamic_range=dynamic_range,
        tensorrt=record,
        tools={**source.tools, "tensorrt": record.version},
        source_onnx=source.artifact,
    )


def check_engine(
    engine: Path, cases: list[ReferenceCase], kind: str, source: str, max_abs_rel: float | None
) -> AccuracyReport:
    """The engine (in dav2's own backend, as dav2-run runs it) against the FP32 reference outputs,
    next to the AbsRel its ONNX graph had there; too large a loss is refused (nothing written)."""
    with open_backend(engine) as built:
        pairs = [(built.infer(case.tensor())[0], case.expected[0]) for case in cases]
    report = measure(pairs, kind, f"FP32 reference outputs ({source})", [dims(c.shape) for c in cases])
    graph = [c.graph_abs_rel for c in cases if c.graph_abs_rel is not None]
    report.graph_abs_rel = sum(graph) / len(graph) if graph else None
    print_report(report, "engine")
    return report.validate(engine_gate(max_abs_rel, report.graph_abs_rel), ENGINE_REMEDY)


def engine_gate(max_abs_rel: float | None, graph_abs_rel: float | None) -> GateRecord:
    """--max-abs-rel when given; else the ONNX graph's own AbsRel plus ENGINE_ABS_REL_MARGIN."""
    if max_abs_rel is not None:
        return GateRecord(max_abs_rel, "--max-abs-rel")
    margin = ENGINE_ABS_REL_MARGIN
    return GateRecord((graph_abs_rel or 0.0) + margin, f"its ONNX graph's AbsRel + {margin}")


def read_reference(onnx_path: Path) -> Reference:
    path = reference_path(onnx_path)
    if not path.is_file():
        raise Dav2Error(
            f"{onnx_path.name} has no FP32 reference beside it ({path.name}): copy it with the graph, or re-export "
            "the graph with this dav2 (the engine is checked against it)"
        )
    return Reference.read(path)


def build_from_onnx(onnx_path: Path, output: Path, request: ExportRequest, image=None) -> Built:
    """Engine from a precision-explicit ONNX artifact (`--from`), in a scratch folder of `output`,
    checked against the FP32 reference that travels with the graph."""
    source = ArtifactMetadata.read(onnx_path)
    if source is None or source.format != ArtifactFormat.ONNX:
        raise Dav2Error(
            f"--from {onnx_path} needs a dav2 ONNX artifact with its sidecar ({sidecar_path(onnx_path).name})"
        )
    if source.input_format == UINT8_INPUT:
        raise Dav2Error(
            f"{onnx_path.name} takes uint8 camera frames (--input uint8); TensorRT engines are built from the "
            "float32 graph: give --from the graph exported without --input uint8"
        )
    if request.trt is not None and Precision(request.trt) != source.precision:
        raise Dav2Error(f"--trt {request.trt} was asked, but {onnx_path.name} is a {source.precision} graph")
    reference = read_reference(onnx_path)
    camera_hw = parse_camera_size(request.camera_size)
    profile = optimization_profile(
        graph_options_of(source), request.profile, request.min_shape, request.opt_shape, request.max_shape,
        check_hw=reference.cases[0].hw, camera_hw=camera_hw,
    )  # fmt: skip
    check_shapes_fit(profile, [(c.name, c.shape) for c in reference.cases])
    cases = reference.inside(profile.holds)
    require_gpu(require_tensorrt())
    engine = output / onnx_path.with_suffix(".engine").name
    with console.step(f"building the strongly typed TensorRT engine from {onnx_path.name} ({profile.label})"):
        record = build_engine(onnx_path, engine, profile, request.workspace_gb, Path(request.output), source.precision)
    metadata = engine_metadata(source, engine, record)
    metadata.write(engine)
    with console.step(f"checking {engine.name} against the FP32 reference carried with {onnx_path.name}"):
        origin = f"{reference_path(onnx_path).name}, ONNX Runtime {reference.onnxruntime}"
        metadata.accuracy = check_engine(engine, cases, source.kind, origin, request.max_abs_rel)
    return Built(engine, metadata)


class TensorRTTarget(ExportTarget):
    """The precision-explicit ONNX graph and, where TensorRT and a GPU are, its engine."""

    def preflight(self, request: ExportRequest) -> None:
        self.camera_hw = parse_camera_size(request.camera_size)
        # the profile's flags are checked here, before any work; opt is set from the check image in build
        optimization_profile(
            graph_options(request), request.profile, request.min_shape, request.opt_shape, request.max_shape,
            camera_hw=self.camera_hw,
        )  # fmt: skip
        if self.precision != Precision.FP32:  # explicit.py needs onnx, which --from on a Jetson does not
            from dav2.export.explicit import check_fp32_groups, require_modelopt

            require_modelopt()
            check_fp32_groups(request.keep_fp32)

    def profile_for(self, context: ExportContext) -> Profile:
        """The profile with opt from the check image, refused when it cannot hold the check."""
        request, options = context.request, context.options
        check_hw = processing.network_size(context.image.shape[:2], min(options.height, options.width))
        profile = optimization_profile(
            options, request.profile, request.min_shape, request.opt_shape, request.max_shape,
            check_hw=check_hw, camera_hw=self.camera_hw,
        )  # fmt: skip
        return profile

    def build(self, context: ExportContext) -> list[Built]:
        profile = self.profile_for(context)
        source = self.source_onnx(context)
        reference = Reference.read(reference_path(source.path))
        check_shapes_fit(profile, [(c.name, c.shape) for c in reference.cases])
        missing = tensorrt_missing()
        if missing is not None:
            carried = Path(context.request.output) / source.path.name
            self.pending = (
                f"{missing}: wrote {carried}; build its engine where TensorRT and the GPU are with "
                f"dav2-export --trt {self.precision} --from {carried}"
            )
            return [source]
        engine = context.folder("tensorrt") / source.path.with_suffix(".engine").name
        request = context.request
        with console.step(f"building the strongly typed TensorRT {self.precision.upper()} engine ({profile.label})"):
            record = build_engine(
                source.path, engine, profile, request.workspace_gb, Path(request.output), self.precision
            )
        metadata = engine_metadata(source.metadata, engine, record)
        metadata.write(engine)
        with console.step(f"checking {engine.name} against the FP32 reference"):
            origin = f"ONNX Runtime {reference.onnxruntime}"
            cases = reference.inside(profile.holds)
            # FP16/INT8 engines are measured against PyTorch again when they are finished
            metadata.accuracy = check_engine(engine, cases, source.metadata.kind, origin, request.max_abs_rel)
        return [source, Built(engine, metadata)]

    def source_onnx(self, context: ExportContext) -> Built:
        """The graph the engine is built from: precision-explicit FP16/INT8, or the FP32 graph
        (with its FP32 reference beside it too)."""
        if self.precision == Precision.FP32:
            from dav2.export.explicit import write_reference

            metadata = context.describe(context.fp32_onnx, ArtifactFormat.ONNX, Precision.FP32)
            metadata.parity = context.parity
            built = onnx_built(context.fp32_onnx, metadata)
            if not reference_path(context.fp32_onnx).is_file():
                write_reference(context, context.fp32_onnx, explicit=False)
            built.companions.append(reference_path(context.fp32_onnx))
            return built
        from dav2.export.explicit import explicit_onnx

        return explicit_onnx(context, self.precision)
