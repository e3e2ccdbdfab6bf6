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
and stops with one line; `dav2-export --trt fp16 --from model_fp16.onnx` on the target (a
Jetson) builds the engine there from that file and its sidecar, without PyTorch.

The parts that need no GPU (shape profiles, metadata, version checks) are plain functions and
are tested everywhere; tests/test_tensorrt_api.py checks every TensorRT attribute used here
against the bindings of TensorRT 10.3, 10.13 and 11.4.
"""

import copy
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.export.context import DYNAMIC_RANGE, Built, ExportContext, ExportRequest, GraphOptions, graph_options
from dav2.export.target import ExportTarget
from dav2.files import atomic_write_bytes
from dav2.metadata import ArtifactMetadata, TensorRTRecord, sidecar_path
from dav2.runtime.backends.tensorrt import _logger, require_gpu, require_tensorrt, tensorrt_missing
from dav2.vocabulary import DEFAULT_INPUT_SIZE, INPUT_NAME, ArtifactFormat, Precision

DEFAULT_WORKSPACE_GB = 4.0

S = DEFAULT_INPUT_SIZE
# dynamic-shape presets: (batch, height, width) for min, opt, max
PROFILE_PRESETS = {
    # any single image from a short side of 196 up to 1036 px (square), tuned for 518
    "range": ((1, 196, 196), (1, S, S), (1, 2 * S, 2 * S)),
    # landscape camera frames at input size 364-518: 4:3 (518x686) and 16:9 (518x924)
    "camera": ((1, 364, 364), (1, S, 686), (1, S, 924)),
    # batches of up to 8 square 518 images (folders, throughput)
    "batch": ((1, S, S), (4, S, S), (8, S, S)),
}
DEFAULT_PRESET = "range"


@dataclass
class Profile:
    """Input shapes (B, 3, H, W) an engine accepts: min <= any input <= max, tuned for opt."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def as_dict(self) -> dict:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def parse_shape(text: str) -> tuple[int, int, int]:
    """'1x518x518' (batch x height x width) -> (1, 518, 518)."""
    parts = text.lower().replace(",", "x").split("x")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise Dav2Error(f"shape {text!r} should be BATCHxHEIGHTxWIDTH, e.g. 1x518x518")
    return tuple(int(p) for p in parts)


def optimization_profile(
    options: GraphOptions,
    preset: str | None = None,
    min_shape: str | None = None,
    opt_shape: str | None = None,
    max_shape: str | None = None,
) -> Profile:
    """The engine's shape profile: fixed for static graphs; for dynamic ones a preset, with
    any of min/opt/max overridden from the command line."""
    if not options.dynamic:
        if preset or min_shape or opt_shape or max_shape:
            raise Dav2Error("shape profiles apply to dynamic graphs: leave out --height/--width/--static")
        fixed = (1, 3, options.height, options.width)
        return Profile(fixed, fixed, fixed)
    preset = preset or DEFAULT_PRESET
    if preset not in PROFILE_PRESETS:
        raise Dav2Error(f"unknown profile preset {preset!r}; choose one of {', '.join(PROFILE_PRESETS)}")
    low, mid, high = PROFILE_PRESETS[preset]
    shapes = [parse_shape(s) if s else d for s, d in ((min_shape, low), (opt_shape, mid), (max_shape, high))]
    for name, (batch, height, width) in zip(("min", "opt", "max"), shapes):
        if batch < 1:
            raise Dav2Error(f"the {name} batch must be at least 1")
        for side in (height, width):
            if side % 14 or not DYNAMIC_RANGE["min"] <= side <= DYNAMIC_RANGE["max"]:
                raise Dav2Error(
                    f"the {name} shape {batch}x{height}x{width}: sides must be multiples of 14 "
                    f"between {DYNAMIC_RANGE['min']} and {DYNAMIC_RANGE['max']}"
                )
    for dim, label in enumerate(("batch", "height", "width")):
        if not shapes[0][dim] <= shapes[1][dim] <= shapes[2][dim]:
            raise Dav2Error(f"profile {label}: min <= opt <= max does not hold ({[s[dim] for s in shapes]})")
    low, mid, high = ((b, 3, h, w) for b, h, w in shapes)
    return Profile(low, mid, high)


def timing_cache_path(folder: Path, gpu: dict, tensorrt_version: str) -> Path:
    """One timing cache per GPU model and TensorRT version, beside the engines."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu["gpu"].lower()).strip("-")
    return folder / f"tensorrt-{tensorrt_version}-{slug}.timing-cache"


def engine_record(profile: Profile, tensorrt_version: str, gpu: dict, workspace_gb: float) -> TensorRTRecord:
    """What the engine's sidecar records beyond the common fields: where it can run."""
    return TensorRTRecord(
        version=tensorrt_version,
        gpu=gpu["gpu"],
        compute_capability=gpu["compute_capability"],
        cuda_driver=gpu.get("cuda_driver"),
        profile=profile.as_dict(),
        workspace_gb=workspace_gb,
    )


def build_engine(
    onnx_path: Path, engine_path: Path, profile: Profile, workspace_gb: float, cache_folder: Path
) -> TensorRTRecord:
    """Build the strongly typed engine for `onnx_path` and write it; return its TensorRT record.

    Every TensorRT object is created and freed while GPU 0's primary context is current."""
    trt = require_tensorrt()
    gpu = require_gpu()
    import pycuda.driver as cuda

    cuda_context = cuda.Device(0).retain_primary_context()
    cuda_context.push()
    try:
        serialized, timing = _build(
            trt, onnx_path, profile, workspace_gb, timing_cache_path(cache_folder, gpu, trt.__version__)
        )
        atomic_write_bytes(engine_path, serialized)
        atomic_write_bytes(timing_cache_path(cache_folder, gpu, trt.__version__), timing)
    finally:
        cuda.Context.pop()
        cuda_context.detach()
    return engine_record(profile, trt.__version__, gpu, workspace_gb)


def _build(trt, onnx_path: Path, profile: Profile, workspace_gb: float, timing_cache: Path) -> tuple[bytes, bytes]:
    """(serialized engine, serialized timing cache); the builder objects die with this frame."""
    builder = trt.Builder(_logger(trt))
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, _logger(trt))
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise Dav2Error(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(INPUT_NAME, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(trt_profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise Dav2Error("TensorRT failed to build the engine (see its messages above)")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


def graph_options_of(metadata: ArtifactMetadata) -> GraphOptions:
    """The graph shape an ONNX artifact was exported with, from its sidecar."""
    if metadata.dynamic:
        return GraphOptions(*metadata.traced_hw, dynamic=True)
    return GraphOptions(*metadata.fixed_hw, dynamic=False)


def engine_metadata(source: ArtifactMetadata, engine: Path, record: TensorRTRecord) -> ArtifactMetadata:
    """The engine's sidecar: the source ONNX's facts, the TensorRT record, the engine's name."""
    return dataclasses.replace(
        copy.deepcopy(source),  # the source's records stay the source's
        artifact=engine.name,
        format=ArtifactFormat.TENSORRT,
        weights_file=None,
        parity=None,
        accuracy=None,
        tensorrt=record,
        tools={**source.tools, "tensorrt": record.version},
        source_onnx=source.artifact,
    )


def compare_with_source(engine: Path, onnx_path: Path, image: np.ndarray) -> dict:
    """The engine against the ONNX graph it was built from (ONNX Runtime, CPU) on one image."""
    from dav2 import accuracy
    from dav2.runtime.backends import open_backend

    with open_backend(onnx_path, "onnxruntime") as reference, open_backend(engine) as built:
        tensor = processing.preprocess(image, reference.default_input_size, reference.fixed_hw)
        expected = reference.infer(tensor)
        actual = built.infer(tensor)
    report = accuracy.compare(actual[0], expected[0], built.kind)
    return {**report, "images": 1, "against": f"{onnx_path.name} in ONNX Runtime (CPU)"}


def build_from_onnx(onnx_path: Path, output: Path, request: ExportRequest, image: np.ndarray) -> Built:
    """Engine from a precision-explicit ONNX artifact (`--from`), in a scratch folder of `output`."""
    source = ArtifactMetadata.read(onnx_path)
    if source is None or source.format != ArtifactFormat.ONNX:
        raise Dav2Error(
            f"--from {onnx_path} needs a dav2 ONNX artifact with its sidecar ({sidecar_path(onnx_path).name})"
        )
    if request.trt is not None and Precision(request.trt) != source.precision:
        raise Dav2Error(f"--trt {request.trt} was asked, but {onnx_path.name} is a {source.precision} graph")
    profile = optimization_profile(
        graph_options_of(source), request.profile, request.min_shape, request.opt_shape, request.max_shape
    )
    require_tensorrt()
    require_gpu()
    engine = output / onnx_path.with_suffix(".engine").name
    shapes = f"{profile.opt[2]}x{profile.opt[3]}"
    with console.step(f"building the strongly typed TensorRT engine from {onnx_path.name} (opt {shapes})"):
        record = build_engine(onnx_path, engine, profile, request.workspace_gb, Path(request.output))
    metadata = engine_metadata(source, engine, record)
    metadata.write(engine)
    with console.step(f"checking {engine.name} against {onnx_path.name}"):
        metadata.accuracy = compare_with_source(engine, onnx_path, image)
    return Built(engine, metadata)


class TensorRTTarget(ExportTarget):
    """The precision-explicit ONNX graph and, where TensorRT and a GPU are, its engine."""

    name = "TensorRT engine"
    suffix = ".engine"

    def needs_calibration(self, request: ExportRequest) -> bool:
        return self.precision == Precision.INT8

    def preflight(self, request: ExportRequest) -> None:
        self.profile = optimization_profile(
            graph_options(request), request.profile, request.min_shape, request.opt_shape, request.max_shape
        )
        if self.precision != Precision.FP32:
            from dav2.export.explicit import check_fp32_groups, require_modelopt

            require_modelopt()
            check_fp32_groups(request.keep_fp32)

    def build(self, context: ExportContext) -> list[Built]:
        source = self.source_onnx(context)
        missing = tensorrt_missing()
        if missing is not None:
            carried = Path(context.request.output) / source.path.name
            self.pending = (
                f"{missing}: wrote {carried}; build its engine where TensorRT and the GPU are with "
                f"dav2-export --trt {self.precision} --from {carried}"
            )
            return [source]
        engine = context.folder("tensorrt") / source.path.with_suffix(".engine").name
        shapes = f"{self.profile.opt[2]}x{self.profile.opt[3]}"
        with console.step(f"building the strongly typed TensorRT {self.precision.upper()} engine (opt {shapes})"):
            record = build_engine(
                source.path, engine, self.profile, context.request.workspace_gb, Path(context.request.output)
            )
        return [source, Built(engine, engine_metadata(source.metadata, engine, record))]

    def source_onnx(self, context: ExportContext) -> Built:
        """The graph the engine is built from: precision-explicit FP16/INT8, or the FP32 graph."""
        if self.precision == Precision.FP32:
            metadata = context.describe(context.fp32_onnx, ArtifactFormat.ONNX, Precision.FP32)
            metadata.parity = context.parity
            return Built(context.fp32_onnx, metadata)
        from dav2.export.explicit import explicit_onnx

        return explicit_onnx(context, self.precision)
