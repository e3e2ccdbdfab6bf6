"""ONNX -> TensorRT engine (FP16 by default, INT8 with calibration), written for TensorRT 10.

Builds from the checked FP32 ONNX graph with the ONNX parser, as TensorRT's own samples do:
builder flags for the precision, a workspace limit, one optimization profile (min/opt/max
shapes) for dynamic graphs, and a timing cache kept beside the engines so a rebuild on the
same GPU skips most kernel timing. TensorRT 8.6 (JetPack 5/6) is also supported: the only
difference is the explicit-batch network flag.

FP16 can overflow in LayerNorm, Softmax and the last head convolutions on some weights;
`keep_fp32` pins those layers to FP32 (OBEY_PRECISION_CONSTRAINTS).

The parts that need no GPU (shape profiles, the layers kept in FP32, the metadata, version
checks) are plain functions and are tested everywhere.
"""

import re
from dataclasses import dataclass
from pathlib import Path

from dav2 import console
from dav2.calibration.dataset import CalibrationSet
from dav2.errors import Dav2Error
from dav2.export.context import DYNAMIC_RANGE, Built, ExportContext, ExportRequest, GraphOptions, graph_options
from dav2.export.onnx import artifact_stem
from dav2.export.target import ExportTarget
from dav2.files import atomic_write_bytes
from dav2.metadata import TensorRTRecord
from dav2.runtime.backends.tensorrt import _logger, parse_version, require_gpu, require_tensorrt
from dav2.vocabulary import DEFAULT_INPUT_SIZE, INPUT_NAME, ArtifactFormat, Precision

DEFAULT_WORKSPACE_GB = 4.0

# --keep-fp32 groups: which network layers each name pins to FP32
KEEP_FP32_GROUPS = {
    "layernorm": lambda name, kind: kind == "NORMALIZATION" or "/norm" in name,
    "softmax": lambda name, kind: kind == "SOFTMAX",
    "head": lambda name, kind: "depth_head/output_conv" in name,
}

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
            raise Dav2Error("shape profiles apply to dynamic graphs: add --dynamic")
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


def layers_to_keep_fp32(layers: list[tuple[str, str]], groups: list[str]) -> list[int]:
    """Indices of the (name, layer type) pairs that the --keep-fp32 groups pin to FP32."""
    unknown = [g for g in groups if g not in KEEP_FP32_GROUPS]
    if unknown:
        raise Dav2Error(f"unknown --keep-fp32 group(s) {', '.join(unknown)}; choose from {', '.join(KEEP_FP32_GROUPS)}")
    chosen = []
    for index, (name, kind) in enumerate(layers):
        if any(KEEP_FP32_GROUPS[group](name, kind) for group in groups):
            chosen.append(index)
    return chosen


def timing_cache_path(folder: Path, gpu: dict, tensorrt_version: str) -> Path:
    """One timing cache per GPU model and TensorRT version, beside the engines."""
    slug = re.sub(r"[^a-z0-9]+", "-", gpu["gpu"].lower()).strip("-")
    return folder / f"tensorrt-{tensorrt_version}-{slug}.timing-cache"


def engine_record(
    profile: Profile, precision: str, keep_fp32: list[str], tensorrt_version: str, gpu: dict, workspace_gb: float
) -> TensorRTRecord:
    """What the engine's sidecar records beyond the common fields: where it can run."""
    return TensorRTRecord(
        version=tensorrt_version,
        gpu=gpu["gpu"],
        compute_capability=gpu["compute_capability"],
        cuda_driver=gpu.get("cuda_driver"),
        profile=profile.as_dict(),
        precision=str(precision),
        keep_fp32=list(keep_fp32),
        workspace_gb=workspace_gb,
    )


def _parse_onnx(trt, builder, logger, onnx_path: Path):
    major = parse_version(trt.__version__)[0]
    # TensorRT 10 networks are always explicit-batch; 8.6 still needs the flag
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise Dav2Error(f"TensorRT could not parse the ONNX graph: {errors}")
    return network, parser


def _pin_fp32(trt, network, groups: list[str]) -> int:
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    described = [(layer.name, str(layer.type).split(".")[-1]) for layer in layers]
    chosen = layers_to_keep_fp32(described, groups)
    for index in chosen:
        layer = layers[index]
        layer.precision = trt.float32
        for output in range(layer.num_outputs):
            layer.set_output_type(output, trt.float32)
    return len(chosen)


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    profile: Profile,
    precision: str,
    keep_fp32: list[str],
    workspace_gb: float,
    cache_folder: Path,
    calibration: CalibrationSet | None = None,
) -> TensorRTRecord:
    """Build and write the engine; return its TensorRT metadata record."""
    trt = require_tensorrt()
    gpu = require_gpu()
    import pycuda.driver as cuda

    context = cuda.Device(0).retain_primary_context()
    context.push()
    try:
        logger = _logger(trt)
        builder = trt.Builder(logger)
        network, _parser = _parse_onnx(trt, builder, logger, onnx_path)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        if precision in (Precision.FP16, Precision.INT8):
            config.set_flag(trt.BuilderFlag.FP16)
        trt_profile = builder.create_optimization_profile()
        trt_profile.set_shape(INPUT_NAME, profile.min, profile.opt, profile.max)
        config.add_optimization_profile(trt_profile)
        if precision == Precision.INT8:
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_calibration_profile(trt_profile)
            from dav2.calibration.tensorrt import cache_path, make_calibrator

            # calibration runs at the profile's opt shape, as set_calibration_profile says
            batch, _, height, width = profile.opt
            cache = cache_path(cache_folder, engine_path.stem, calibration)
            config.int8_calibrator = make_calibrator(trt, calibration, cache, batch, (height, width))
        if keep_fp32:
            pinned = _pin_fp32(trt, network, keep_fp32)
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            console.info(f"  {pinned} layer(s) kept in FP32 ({', '.join(keep_fp32)})")
        timing_cache = timing_cache_path(cache_folder, gpu, trt.__version__)
        timing = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(timing, ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise Dav2Error("TensorRT failed to build the engine (see its messages above)")
        atomic_write_bytes(engine_path, bytes(serialized))
        atomic_write_bytes(timing_cache, bytes(config.get_timing_cache().serialize()))
        # builder objects die while the context is current
        del serialized, config, network, _parser, builder
    finally:
        cuda.Context.pop()
        context.detach()
    return engine_record(profile, precision, keep_fp32, trt.__version__, gpu, workspace_gb)


class TensorRTTarget(ExportTarget):
    """An engine for the GPU of this machine, built from the checked FP32 ONNX graph."""

    name = "TensorRT engine"
    suffix = ".engine"

    def needs_calibration(self, request: ExportRequest) -> bool:
        return self.precision == Precision.INT8

    def preflight(self, request: ExportRequest) -> None:
        self.profile = optimization_profile(
            graph_options(request), request.profile, request.min_shape, request.opt_shape, request.max_shape
        )
        require_tensorrt()
        require_gpu()

    def build(self, context: ExportContext) -> Built:
        request = context.request
        path = context.folder("tensorrt") / f"{artifact_stem(context.model, context.options, self.precision)}.engine"
        shapes = f"{self.profile.opt[2]}x{self.profile.opt[3]}"
        calibration = context.calibration if self.precision == Precision.INT8 else None
        with console.step(
            f"building the TensorRT {self.precision.upper()} engine (opt {shapes}; minutes on first build)"
        ):
            record = build_engine(
                context.fp32_onnx,
                path,
                self.profile,
                self.precision,
                request.keep_fp32,
                request.workspace_gb,
                Path(request.output),
                calibration,
            )
        metadata = context.describe(path, ArtifactFormat.TENSORRT, self.precision)
        metadata.tensorrt = record
        metadata.tools["tensorrt"] = record.version
        metadata.calibration = calibration.identity() if calibration else None
        return Built(path, metadata)
