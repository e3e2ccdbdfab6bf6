"""TensorRT backend: a serialized engine, pycuda buffers, one CUDA stream.

Follows the TensorRT Python samples: deserialize the engine, allocate page-locked host
buffers and device buffers, bind them by tensor name (`set_tensor_address`), copy in, run
`execute_async_v3` and copy out on one stream. Dynamic engines get their input shape set per
call (`set_input_shape`, whose result is checked) and buffers sized for the profile's maximum.

CUDA lifetime: the backend works in GPU 0's primary context (`retain_primary_context`, the
context the CUDA runtime and other libraries share), pushes it around every call, so any
thread may call `infer`, and `close()` frees the execution context, the engine, the buffers
and the stream while that context is current, then pops and detaches it.

An engine only runs with the TensorRT version and the GPU it was built for. Its metadata
records both, and opening it elsewhere fails with that explanation instead of the
deserializer's crash. The checks and the error messages are plain functions, tested on
machines without TensorRT.
"""

import time
from pathlib import Path

import numpy as np

from dav2 import optional
from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata, TensorRTRecord, sidecar_path
from dav2.runtime.backends.base import Backend

# JetPack 6.1/6.2 ship 10.3; x86-64 wheels 10.x and 11.x. 11 removed weakly typed networks,
# which dav2 no longer uses; 12 is unknown.
MINIMUM_VERSION = (10, 3)
FIRST_UNSUPPORTED_MAJOR = 12


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
        require_tensorrt()
        require_gpu()
    except Dav2Error as exc:
        return str(exc)
    return None


def require_tensorrt():
    """The tensorrt module, or one clear error saying how to get it."""
    trt = optional.require("tensorrt", "TensorRT export and inference")
    check_tensorrt_version(trt.__version__)
    return trt


def require_gpu() -> dict:
    """Initialise CUDA through pycuda and describe GPU 0, or fail with what is missing."""
    cuda = optional.require("pycuda.driver", "TensorRT (GPU memory and streams)")
    try:
        cuda.init()
        count = cuda.Device.count()
    except cuda.Error as exc:
        raise Dav2Error(f"no usable CUDA GPU: the NVIDIA driver did not initialise ({exc})") from exc
    if count == 0:
        raise Dav2Error("no CUDA GPU found: TensorRT engines need an NVIDIA GPU")
    device = cuda.Device(0)
    major, minor = device.compute_capability()
    driver = cuda.get_driver_version()
    return {
        "gpu": device.name(),
        "compute_capability": f"{major}.{minor}",
        "cuda_driver": f"{driver // 1000}.{driver % 1000 // 10}",
    }


def check_engine_compatible(record: TensorRTRecord | None, tensorrt_version: str, gpu: dict) -> None:
    """Fail with an explanation when the engine was built for another TensorRT or GPU."""
    if record is None:
        raise Dav2Error("the engine's metadata has no TensorRT record; rebuild it with dav2-export --trt")
    if record.version != tensorrt_version:
        raise Dav2Error(
            f"this engine was built with TensorRT {record.version}, but TensorRT {tensorrt_version} is installed; "
            "engines only load in the version that built them: rebuild it here with dav2-export --trt"
        )
    if record.compute_capability != gpu["compute_capability"]:
        raise Dav2Error(
            f"this engine was built for {record.gpu} (compute capability {record.compute_capability}), but this "
            f"GPU is {gpu['gpu']} ({gpu['compute_capability']}); rebuild it here with dav2-export --trt"
        )


def check_in_profile(shape: tuple[int, ...], record: TensorRTRecord) -> None:
    """An input outside the engine's optimization profile is one clear error naming the profile."""
    low, high = record.profile["min"], record.profile["max"]
    if len(shape) != 4 or any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
        raise Dav2Error(
            f"input {tuple(shape)} is outside this engine's shape profile "
            f"(min {tuple(low)}, max {tuple(high)}); choose another --input-size or rebuild with --profile"
        )


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: Path, metadata: ArtifactMetadata | None):
        if metadata is None:
            raise Dav2Error(
                f"{path.name} has no dav2 metadata ({sidecar_path(path).name}); export it with dav2-export --trt"
            )
        trt = require_tensorrt()
        gpu = require_gpu()
        check_engine_compatible(metadata.tensorrt, trt.__version__, gpu)
        import pycuda.driver as cuda

        super().__init__(path, metadata)
        self._cuda = cuda
        self.record = metadata.tensorrt
        self.engine = self.context = self.stream = None
        self.cuda_context = cuda.Device(0).retain_primary_context()
        self.cuda_context.push()
        try:
            self._open(trt, cuda)
        except BaseException:
            self._release()
            raise
        finally:
            cuda.Context.pop()

    def _open(self, trt, cuda) -> None:
        runtime = trt.Runtime(_logger(trt))
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise Dav2Error(f"TensorRT could not deserialize {self.path.name} (built for another version or GPU?)")
        self.context = self.engine.create_execution_context()
        self.input_name = self.metadata.input_name
        self.output_name = self.metadata.output_name
        self.stream = cuda.Stream()
        input_shape = tuple(self.record.profile["max"])
        batch, _, height, width = input_shape
        # buffers sized for the largest input the engine accepts; each call uses a prefix
        self.host_input = cuda.pagelocked_empty(int(np.prod(input_shape)), np.float32)
        self.host_output = cuda.pagelocked_empty(batch * height * width, np.float32)
        self.device_input = cuda.mem_alloc(self.host_input.nbytes)
        self.device_output = cuda.mem_alloc(self.host_output.nbytes)
        self.context.set_tensor_address(self.input_name, int(self.device_input))
        self.context.set_tensor_address(self.output_name, int(self.device_output))
        self.events = [cuda.Event() for _ in range(4)]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.context is None:
            raise Dav2Error("the TensorRT backend is closed")
        cuda = self._cuda
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        check_in_profile(batch.shape, self.record)
        b, _, h, w = batch.shape
        start, copied_in, computed, copied_out = self.events
        self.cuda_context.push()
        try:
            started = time.perf_counter()
            if not self.context.set_input_shape(self.input_name, batch.shape):
                raise Dav2Error(f"TensorRT refused the input shape {batch.shape} for {self.path.name}")
            self.host_input[: batch.size] = batch.ravel()
            out_size = b * h * w
            start.record(self.stream)
            cuda.memcpy_htod_async(self.device_input, self.host_input[: batch.size], self.stream)
            copied_in.record(self.stream)
            if not self.context.execute_async_v3(self.stream.handle):
                raise Dav2Error("TensorRT execution failed")
            computed.record(self.stream)
            cuda.memcpy_dtoh_async(self.host_output[:out_size], self.device_output, self.stream)
            copied_out.record(self.stream)
            self.stream.synchronize()
            depth = self.host_output[:out_size].reshape(b, h, w).copy()
        finally:
            cuda.Context.pop()
        self.last_timing = {
            "h2d_ms": copied_in.time_since(start),
            "infer_ms": computed.time_since(copied_in),
            "d2h_ms": copied_out.time_since(computed),
            "call_ms": (time.perf_counter() - started) * 1000.0,
        }
        return depth

    def close(self) -> None:
        """Free execution context -> engine -> buffers/stream/events inside the CUDA context."""
        if getattr(self, "cuda_context", None) is None:
            return
        self.cuda_context.push()
        try:
            self._release()
        finally:
            self._cuda.Context.pop()
            self.cuda_context.detach()
            self.cuda_context = None

    def _release(self) -> None:
        self.context = None  # the execution context before the engine it came from
        self.engine = None
        for name in ("device_input", "device_output"):
            buffer = getattr(self, name, None)
            if buffer is not None:
                buffer.free()
                setattr(self, name, None)
        self.host_input = self.host_output = None
        self.events = []
        self.stream = None


_LOGGER = None


def _logger(trt):
    """One TensorRT logger for the process, as TensorRT asks."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER
