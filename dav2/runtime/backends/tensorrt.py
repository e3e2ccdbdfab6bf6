"""TensorRT backend: a serialized engine, pycuda buffers, one CUDA stream.

Follows the TensorRT 10 Python samples: deserialize the engine, allocate page-locked host
buffers and device buffers, bind them by tensor name (`set_tensor_address`), copy in, run
`execute_async_v3` and copy out on one stream. Dynamic engines get their input shape set per
call (`set_input_shape`) and buffers sized for the profile's maximum. TensorRT 8.6 (JetPack
5/6) has the same calls.

An engine only runs with the TensorRT version and the GPU it was built for. Its metadata
records both, and opening it elsewhere fails with that explanation instead of the
deserializer's crash. The checks and the error messages are plain functions, tested on
machines without TensorRT.
"""

import time
from pathlib import Path

import numpy as np

from dav2.errors import Dav2Error
from dav2.runtime.backends.base import Backend

MINIMUM_VERSION = (8, 6)
INSTALL_HINT = (
    "pip install 'dav2[tensorrt]' on an x86-64 Linux machine with an NVIDIA GPU; "
    "on a Jetson it comes with JetPack (sudo apt install python3-libnvinfer)"
)


def parse_version(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def check_tensorrt_version(version: str) -> None:
    """TensorRT 8.6 or newer: older releases lack the name-based tensor API used here."""
    if parse_version(version)[:2] < MINIMUM_VERSION:
        wanted = ".".join(map(str, MINIMUM_VERSION))
        raise Dav2Error(f"TensorRT {version} is too old: dav2 needs {wanted} or newer ({INSTALL_HINT})")


def require_tensorrt():
    """The tensorrt module, or one clear error saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise Dav2Error(f"TensorRT is not installed: {INSTALL_HINT}") from exc
    check_tensorrt_version(trt.__version__)
    return trt


def require_gpu() -> dict:
    """Initialise CUDA through pycuda and describe GPU 0, or fail with what is missing."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise Dav2Error(f"TensorRT needs pycuda for GPU memory and streams: {INSTALL_HINT}") from exc
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


def check_engine_compatible(metadata: dict, tensorrt_version: str, gpu: dict) -> None:
    """Fail with an explanation when the engine was built for another TensorRT or GPU."""
    built = metadata.get("tensorrt") or {}
    built_version = built.get("version")
    if built_version and built_version != tensorrt_version:
        raise Dav2Error(
            f"this engine was built with TensorRT {built_version}, but TensorRT {tensorrt_version} is installed; "
            "engines only load in the version that built them: rebuild it here with dav2-export --trt"
        )
    built_cc = built.get("compute_capability")
    if built_cc and built_cc != gpu["compute_capability"]:
        raise Dav2Error(
            f"this engine was built for {built.get('gpu')} (compute capability {built_cc}), but this GPU is "
            f"{gpu['gpu']} ({gpu['compute_capability']}); rebuild it here with dav2-export --trt"
        )


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, path: Path, metadata: dict | None):
        if metadata is None:
            raise Dav2Error(
                f"{path.name} has no dav2 metadata ({path.with_suffix('.json').name}); export it with dav2-export --trt"
            )
        trt = require_tensorrt()
        gpu = require_gpu()
        check_engine_compatible(metadata, trt.__version__, gpu)
        import pycuda.driver as cuda

        super().__init__(path, metadata)
        self._cuda = cuda
        self.cuda_context = cuda.Device(0).make_context()
        try:
            self._open(trt, cuda)
        finally:
            self.cuda_context.pop()

    def _open(self, trt, cuda) -> None:
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise Dav2Error(f"TensorRT could not deserialize {self.path.name} (built for another version or GPU?)")
        self.context = self.engine.create_execution_context()
        self.input_name = self.metadata.get("input_name", "image")
        self.output_name = self.metadata.get("output_name", "depth")
        self.stream = cuda.Stream()
        max_input = tuple(self.metadata["tensorrt"]["profile"]["max"]) if self.metadata.get("dynamic") else None
        input_shape = max_input or tuple(self.metadata["input_shape"])
        batch, _, height, width = input_shape
        # buffers sized for the largest input the engine accepts; each call uses a prefix
        self.host_input = cuda.pagelocked_empty(int(np.prod(input_shape)), np.float32)
        self.host_output = cuda.pagelocked_empty(batch * height * width, np.float32)
        self.device_input = cuda.mem_alloc(self.host_input.nbytes)
        self.device_output = cuda.mem_alloc(self.host_output.nbytes)
        self.context.set_tensor_address(self.input_name, int(self.device_input))
        self.context.set_tensor_address(self.output_name, int(self.device_output))
        self.start, self.copied_in, self.computed, self.copied_out = (cuda.Event() for _ in range(4))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        cuda = self._cuda
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.size > self.host_input.size:
            raise Dav2Error(f"input {batch.shape} is larger than the engine's profile allows")
        b, _, h, w = batch.shape
        self.cuda_context.push()
        try:
            started = time.perf_counter()
            self.context.set_input_shape(self.input_name, batch.shape)
            self.host_input[: batch.size] = batch.ravel()
            out_size = b * h * w
            self.start.record(self.stream)
            cuda.memcpy_htod_async(self.device_input, self.host_input[: batch.size], self.stream)
            self.copied_in.record(self.stream)
            if not self.context.execute_async_v3(self.stream.handle):
                raise Dav2Error("TensorRT execution failed")
            self.computed.record(self.stream)
            cuda.memcpy_dtoh_async(self.host_output[:out_size], self.device_output, self.stream)
            self.copied_out.record(self.stream)
            self.stream.synchronize()
            depth = self.host_output[:out_size].reshape(b, h, w).copy()
        finally:
            self.cuda_context.pop()
        self.last_timing = {
            "h2d_ms": self.copied_in.time_since(self.start),
            "infer_ms": self.computed.time_since(self.copied_in),
            "d2h_ms": self.copied_out.time_since(self.computed),
            "call_ms": (time.perf_counter() - started) * 1000.0,
        }
        return depth

    def close(self) -> None:
        if getattr(self, "cuda_context", None) is not None:
            self.cuda_context.detach()
            self.cuda_context = None
