"""TensorRT backend: a serialized engine, device buffers, one CUDA stream.

Follows the TensorRT Python samples: deserialize the engine, allocate page-locked host
buffers and device buffers, bind them by tensor name (`set_tensor_address`), copy in, run
`execute_async_v3` and copy out on one stream. Dynamic engines get their input shape set per
call (`set_input_shape`) and buffers sized for the profile's maximum. Every bool TensorRT
returns is checked.

CUDA comes from `dav2.runtime.cuda` (NVIDIA's cuda-bindings wheels, or pycuda where a user
has it): GPU 0's primary context is pushed around every call, so any thread may call `infer`,
the event timings are read inside it, and `close()` frees the execution context, the engine,
the buffers and the stream while it is current, then releases it.

The engine is trusted only after it agrees with its sidecar: its input/output names, dtypes
and shape profile are read from the engine and checked against the metadata
(`base.check_graph`, as the other backends do), so a wrong sidecar is one clear error, not
"execution failed". An engine only runs with the TensorRT version and the GPU it was built
for; its metadata records both, and opening it elsewhere fails with that explanation. A
TensorRT that is installed but cannot start (a driver older than the wheel's CUDA, a missing
CUDA library) is one line naming the cause and the fix. The checks are plain functions,
tested on machines without TensorRT (tests/test_tensorrt_double.py runs this module against a
test double of tensorrt and the CUDA binding).
"""

import importlib
import importlib.metadata
import time
from pathlib import Path

import numpy as np

from dav2 import optional
from dav2.errors import Dav2Error
from dav2.metadata import FLOAT_INPUT, ArtifactMetadata, TensorRTRecord, sidecar_path
from dav2.runtime.backends.base import Backend, GraphFacts, TensorFacts, check_graph
from dav2.runtime.cuda import Gpu, GpuInfo, describe_gpu

# JetPack 6.1/6.2 ship 10.3; x86-64 wheels 10.x and 11.x. 11 removed weakly typed networks,
# which dav2 no longer uses; 12 is unknown.
MINIMUM_VERSION = (10, 3)
FIRST_UNSUPPORTED_MAJOR = 12
# pip distributions of TensorRT's libraries -> the CUDA major they are built for
TENSORRT_CUDA_WHEELS = {"tensorrt-cu13": 13, "tensorrt-cu12": 12, "tensorrt-cu11": 11}


def parse_version(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_tensorrt_version(version: str) -> None:
    """TensorRT 10.3 up to 11.x: the strongly typed builder and name-based tensor API used here."""
    wanted = f"{'.'.join(map(str, MINIMUM_VERSION))} to {FIRST_UNSUPPORTED_MAJOR - 1}.x"
    if parse_version(version)[:2] < MINIMUM_VERSION:
        raise Dav2Error(
            f"TensorRT {version} is too old: dav2 supports {wanted} (JetPack 6.1+ on Jetson; "
            "JetPack 5 with TensorRT 8.5 is not supported)"
        )
    if parse_version(version)[0] >= FIRST_UNSUPPORTED_MAJOR:
        raise Dav2Error(f"TensorRT {version} is newer than dav2 supports ({wanted}): pip install 'tensorrt<12'")


def tensorrt_missing() -> str | None:
    """Why TensorRT engines cannot be built or run here (one line), or None when they can."""
    if not optional.available("tensorrt"):
        return "TensorRT is not installed here"
    try:
        require_gpu(require_tensorrt())
    except Dav2Error as exc:
        return str(exc)
    return None


def require_tensorrt():
    """The tensorrt module, or one clear error: not installed (how to get it), or installed but
    its libraries cannot load (which one, and the fix)."""
    try:
        trt = importlib.import_module("tensorrt")
    except ModuleNotFoundError as exc:
        if exc.name in ("tensorrt", None):
            return optional.require("tensorrt", "TensorRT export and inference")  # raises the install hint
        raise Dav2Error(
            f"TensorRT is installed but incomplete ({exc}): reinstall it ({optional.install_hint('tensorrt')})"
        ) from exc
    except ImportError as exc:  # e.g. libnvinfer.so.10 / libcudart.so.12: cannot open shared object file
        raise Dav2Error(
            f"TensorRT is installed but cannot load its libraries ({exc}): install the TensorRT build for this "
            "machine's CUDA (pip install 'tensorrt-cu12>=10.3,<12' for CUDA 12 drivers; on a Jetson, JetPack's "
            "python3-libnvinfer)"
        ) from exc
    check_tensorrt_version(trt.__version__)
    return trt


def tensorrt_cuda_major() -> int | None:
    """The CUDA major the installed TensorRT wheel is built for (None: not a pip wheel, e.g. JetPack)."""
    for name, major in TENSORRT_CUDA_WHEELS.items():
        if optional.version(name) is not None:
            return major
    return None


def check_driver_fits(info: GpuInfo, wheel_major: int | None, version: str) -> None:
    """A TensorRT wheel for CUDA 13 cannot start on a CUDA 12 driver (R535-R570): say so first."""
    if wheel_major is not None and wheel_major > info.driver_major:
        raise Dav2Error(
            f"TensorRT {version} here is built for CUDA {wheel_major} (tensorrt-cu{wheel_major}), but the NVIDIA "
            f"driver supports CUDA {info.cuda_driver}: pip uninstall -y tensorrt tensorrt-cu{wheel_major} "
            f"tensorrt-cu{wheel_major}-libs tensorrt-cu{wheel_major}-bindings && pip install "
            f"'tensorrt-cu{info.driver_major}>=10.3,<12' (or update the driver)"
        )


def require_gpu(trt=None) -> GpuInfo:
    """GPU 0 through the CUDA binding, checked against the TensorRT wheel's CUDA; or one error."""
    info = describe_gpu()
    version = trt.__version__ if trt is not None else optional.version("tensorrt") or "(pip wheel)"
    check_driver_fits(info, tensorrt_cuda_major(), version)
    return info


def create(factory, *args, what: str):
    """A TensorRT object from its factory (`trt.Builder`, `trt.Runtime`): TensorRT's Python
    bindings raise TypeError ("factory function returned nullptr") when its libraries cannot
    start; that becomes one line with the usual causes."""
    try:
        made = factory(*args)
    except TypeError as exc:
        made, reason = None, f" ({exc})"
    else:
        reason = ""
    if made is None:
        raise Dav2Error(
            f"TensorRT could not create its {what}{reason}: its CUDA libraries did not start on this GPU "
            "(usually a driver older than the TensorRT build's CUDA, or no GPU visible); see TensorRT's "
            "messages above"
        )
    return made


def check_engine_compatible(record: TensorRTRecord | None, tensorrt_version: str, gpu: GpuInfo) -> None:
    """Fail with an explanation when the engine was built for another TensorRT or GPU."""
    if record is None:
        raise Dav2Error("the engine's metadata has no TensorRT record; rebuild it with dav2-export --trt")
    if record.version != tensorrt_version:
        raise Dav2Error(
            f"this engine was built with TensorRT {record.version}, but TensorRT {tensorrt_version} is installed; "
            "engines only load in the version that built them: rebuild it here with dav2-export --trt"
        )
    if record.compute_capability != gpu.compute_capability:
        raise Dav2Error(
            f"this engine was built for {record.gpu} (compute capability {record.compute_capability}), but this "
            f"GPU is {gpu.gpu} ({gpu.compute_capability}); rebuild it here with dav2-export --trt"
        )


def in_profile(shape: tuple[int, ...], profile: dict[str, list[int]]) -> bool:
    low, high = profile["min"], profile["max"]
    return len(shape) == len(low) and all(lo <= s <= hi for s, lo, hi in zip(shape, low, high))


def check_in_profile(shape: tuple[int, ...], record: TensorRTRecord) -> None:
    """An input outside the engine's optimization profile is one clear error naming the profile."""
    if not in_profile(tuple(shape), record.profile):
        low, high = record.profile["min"], record.profile["max"]
        raise Dav2Error(
            f"input {tuple(shape)} is outside this engine's shape profile (min {tuple(low)}, max {tuple(high)}); "
            "choose another --input-size, or rebuild the engine with dav2-export --trt "
            "--profile/--min-shape/--max-shape"
        )


def engine_profile_problems(engine_profile: dict[str, list[int]], record: TensorRTRecord) -> list[str]:
    """Where the sidecar's shape profile differs from the engine's own."""
    return [
        f"it says the {key} shape is {record.profile[key]}, the engine's is {engine_profile[key]}"
        for key in ("min", "opt", "max")
        if list(record.profile[key]) != list(engine_profile[key])
    ]


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: Path, metadata: ArtifactMetadata | None):
        if metadata is None:
            raise Dav2Error(
                f"{path.name} has no dav2 metadata ({sidecar_path(path).name}); export it with dav2-export --trt"
            )
        trt = require_tensorrt()
        gpu_info = require_gpu(trt)
        check_engine_compatible(metadata.tensorrt, trt.__version__, gpu_info)
        super().__init__(path, metadata)
        self.record = metadata.tensorrt
        self.engine = self.context = self.stream = None
        self.device_input = self.device_output = self.host_input = self.host_output = None
        self.events = []
        self.gpu = Gpu()
        try:
            with self.gpu.current() as cuda:
                self._open(trt, cuda)
        except BaseException:
            self.close()
            raise

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """An engine whose profile holds one height x width takes only that size (images of
        another aspect ratio are stretched to it, as for static graphs)."""
        low, high = self.record.profile["min"], self.record.profile["max"]
        return (low[2], low[3]) if low[2:] == high[2:] else self.metadata.fixed_hw

    def _open(self, trt, cuda) -> None:
        runtime = create(trt.Runtime, _logger(trt), what="runtime")
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise Dav2Error(f"TensorRT could not deserialize {self.path.name} (built for another version or GPU?)")
        facts, profile = engine_facts(self.engine)
        check_graph(self.path, self.metadata, facts)
        if facts.input_format != FLOAT_INPUT:
            raise Dav2Error(
                f"{self.path.name} takes {facts.inputs[0].label}; dav2 runs TensorRT engines on float32 input"
            )
        problems = engine_profile_problems(profile, self.record)
        if problems:
            raise Dav2Error(
                f"{sidecar_path(self.path).name} does not describe {self.path.name}: {'; '.join(problems)}; "
                "rebuild the engine (or restore its own sidecar)"
            )
        self.input_name = self.metadata.input_name
        self.output_name = self.metadata.output_name
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise Dav2Error("TensorRT could not create an execution context (out of GPU memory?)")
        self.stream = cuda.stream()
        batch, _, height, width = profile["max"]
        # buffers sized for the largest input the engine accepts; each call uses a prefix
        self.host_input = cuda.host_empty(batch * 3 * height * width, np.float32)
        self.host_output = cuda.host_empty(batch * height * width, np.float32)
        self.device_input = cuda.alloc(self.host_input.nbytes)
        self.device_output = cuda.alloc(self.host_output.nbytes)
        for name, buffer in ((self.input_name, self.device_input), (self.output_name, self.device_output)):
            if not self.context.set_tensor_address(name, cuda.address(buffer)):
                raise Dav2Error(f"TensorRT refused the address of tensor {name!r} in {self.path.name}")
        self.events = [cuda.event() for _ in range(4)]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.context is None:
            raise Dav2Error("the TensorRT backend is closed")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        check_in_profile(batch.shape, self.record)
        start, copied_in, computed, copied_out = self.events
        started = time.perf_counter()
        with self.gpu.current() as cuda:
            if not self.context.set_input_shape(self.input_name, batch.shape):
                raise Dav2Error(f"TensorRT refused the input shape {batch.shape} for {self.path.name}")
            out_shape = tuple(self.context.get_tensor_shape(self.output_name))
            host_in = self.host_input[: batch.size]
            host_out = self.host_output[: int(np.prod(out_shape))]
            host_in[:] = batch.ravel()
            cuda.record(start, self.stream)
            cuda.copy_to_device(self.device_input, host_in, self.stream)
            cuda.record(copied_in, self.stream)
            if not self.context.execute_async_v3(cuda.address(self.stream)):
                raise Dav2Error("TensorRT execution failed (see its messages above)")
            cuda.record(computed, self.stream)
            cuda.copy_to_host(host_out, self.device_output, self.stream)
            cuda.record(copied_out, self.stream)
            cuda.synchronize(self.stream)
            depth = host_out.reshape(out_shape).copy()
            self.last_timing = {  # read while the context is current
                "h2d_ms": cuda.elapsed_ms(start, copied_in),
                "infer_ms": cuda.elapsed_ms(copied_in, computed),
                "d2h_ms": cuda.elapsed_ms(computed, copied_out),
                "call_ms": (time.perf_counter() - started) * 1000.0,
            }
        return depth

    def close(self) -> None:
        """Free execution context -> engine -> buffers/stream/events inside the CUDA context,
        then release the context. Safe to call twice, and after a failed open."""
        gpu = getattr(self, "gpu", None)
        if gpu is None:
            return
        self.gpu = None
        try:
            with gpu.current() as cuda:
                self._release(cuda)
        finally:
            gpu.close()

    def _release(self, cuda) -> None:
        self.context = None  # the execution context before the engine it came from
        self.engine = None
        for name in ("device_input", "device_output"):
            if getattr(self, name) is not None:
                cuda.free(getattr(self, name))
                setattr(self, name, None)
        for name in ("host_input", "host_output"):
            if getattr(self, name) is not None:
                cuda.host_free(getattr(self, name))
                setattr(self, name, None)
        for event in self.events:
            cuda.destroy_event(event)
        self.events = []
        if self.stream is not None:
            cuda.destroy_stream(self.stream)
            self.stream = None


# trt.DataType member names -> numpy's spelling (as GraphFacts records dtypes)
TENSORRT_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "INT32": "int32",
                   "INT64": "int64", "UINT8": "uint8", "BOOL": "bool"}  # fmt: skip


def engine_facts(engine) -> tuple[GraphFacts, dict[str, list[int]]]:
    """The engine's inputs and outputs (names, dtypes, shapes with None for dynamic sides) and
    the first input's optimization profile 0, read from the engine itself."""
    inputs, outputs, profile = [], [], None
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        dtype = TENSORRT_DTYPES.get(engine.get_tensor_dtype(name).name, "unknown")
        shape = tuple(None if d < 0 else int(d) for d in engine.get_tensor_shape(name))
        facts = TensorFacts((name,), dtype, shape)
        if engine.get_tensor_mode(name).name == "INPUT":  # trt.TensorIOMode.INPUT
            inputs.append(facts)
            if profile is None:
                shapes = engine.get_tensor_profile_shape(name, 0)
                profile = {key: [int(d) for d in dims] for key, dims in zip(("min", "opt", "max"), shapes)}
        else:
            outputs.append(facts)
    return GraphFacts(tuple(inputs), tuple(outputs)), profile or {}


_LOGGER = None


def _logger(trt):
    """One TensorRT logger for the process, as TensorRT asks."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER
