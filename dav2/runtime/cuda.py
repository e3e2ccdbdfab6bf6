"""GPU 0 through the CUDA driver API, for the TensorRT backend and builder.

Why the driver API and which binding: TensorRT needs device memory, a stream and a current
CUDA context; it does not need a CUDA toolkit. NVIDIA's `cuda-bindings` (the `cuda-python`
project) installs from wheels (CPython 3.10 on aarch64 and x86-64 included), so it is the
binding dav2 uses; `pycuda` has no wheels (building it needs CUDA headers and a compiler), so
it is used only where a user already has it and cuda-bindings is absent. Both are wrapped in
`Driver`, the handful of calls dav2 makes, with every result checked.

One primary context: `Gpu` retains GPU 0's primary context (the context the CUDA runtime,
TensorRT and other libraries share), `Gpu.current()` pushes it around every piece of work, so
any thread may call, and all timing (event elapsed times) is read while it is current.
`Gpu.close()` releases it from whichever thread closes.

Nothing here is imported before it is needed, and every failure is one line that names the
cause and the fix: no binding, a binding that cannot load, no driver, no GPU, a driver too old
for the binding's CUDA major.
"""

import contextlib
import ctypes
import importlib
import importlib.metadata
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from dav2.errors import Dav2Error

BINDINGS_INSTALL = (
    "pip install 'cuda-bindings>=12.8,<13' (CUDA 12 drivers, a Jetson: the 'jetson' or 'trt-cu12' extra; "
    "'cuda-bindings>=13,<14' for CUDA 13: the 'trt-cu13' extra)"
)


@dataclass(frozen=True)
class GpuInfo:
    """GPU 0 as the driver reports it; engines record it (they run only where they were built)."""

    gpu: str
    compute_capability: str  # "8.7"
    cuda_driver: str  # the newest CUDA the driver supports, "12.6"

    @property
    def driver_major(self) -> int:
        return int(self.cuda_driver.split(".")[0])


class CudaError(Dav2Error):
    """A CUDA call failed: the call's name and the driver's reason."""


# --- the two bindings -------------------------------------------------------------------


class Driver:
    """The driver calls dav2 makes. Handles are the binding's own objects; `address()` gives
    the integer TensorRT wants."""

    name = "cuda"

    def init(self) -> None: ...
    def device_count(self) -> int: ...
    def info(self) -> GpuInfo: ...
    def retain_primary(self) -> Any: ...
    def release_primary(self, context: Any) -> None: ...
    def push(self, context: Any) -> None: ...
    def pop(self) -> None: ...
    def stream(self) -> Any: ...
    def synchronize(self, stream: Any) -> None: ...
    def destroy_stream(self, stream: Any) -> None: ...
    def alloc(self, nbytes: int) -> Any: ...
    def free(self, pointer: Any) -> None: ...
    def host_empty(self, count: int, dtype: np.dtype) -> np.ndarray: ...
    def host_free(self, array: np.ndarray) -> None: ...
    def copy_to_device(self, device: Any, host: np.ndarray, stream: Any) -> None: ...
    def copy_to_host(self, host: np.ndarray, device: Any, stream: Any) -> None: ...
    def event(self) -> Any: ...
    def record(self, event: Any, stream: Any) -> None: ...
    def elapsed_ms(self, start: Any, end: Any) -> float: ...
    def destroy_event(self, event: Any) -> None: ...
    def address(self, handle: Any) -> int: ...


class BindingsDriver(Driver):
    """NVIDIA cuda-bindings: `cuda.bindings.driver` (12.6+), or `cuda.cuda` in older 12.x.
    Every call returns (CUresult, values...); `_call` checks the result."""

    name = "cuda-bindings"

    def __init__(self, module: Any):
        self.cu = module
        self.device = None
        self._host: dict[int, int] = {}  # id(array) -> pinned address

    def _call(self, name: str, *args) -> Any:
        result = getattr(self.cu, name)(*args)
        error, values = result[0], result[1:]
        if error != self.cu.CUresult.CUDA_SUCCESS:
            raise CudaError(f"CUDA {name} failed: {self._reason(error)}")
        return values[0] if len(values) == 1 else values or None

    def _reason(self, error: Any) -> str:
        try:
            result = self.cu.cuGetErrorString(error)
            text = result[1].decode() if result[0] == self.cu.CUresult.CUDA_SUCCESS else ""
        except Exception:  # noqa: BLE001 (a failed lookup must not hide the original error)
            text = ""
        return f"{getattr(error, 'name', error)}{f' ({text})' if text else ''}"

    def init(self) -> None:
        try:
            self._call("cuInit", 0)
        except CudaError:
            raise
        except Exception as exc:  # cuda-bindings raises when libcuda.so itself cannot be loaded
            raise Dav2Error(f"no NVIDIA driver here: cuda-bindings could not load libcuda ({exc})") from exc
        self.device = self._call("cuDeviceGet", 0) if self.device_count() else None

    def device_count(self) -> int:
        return int(self._call("cuDeviceGetCount"))

    def info(self) -> GpuInfo:
        attribute = self.cu.CUdevice_attribute
        name = self._call("cuDeviceGetName", 256, self.device)
        major = self._call("cuDeviceGetAttribute", attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.device)
        minor = self._call("cuDeviceGetAttribute", attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.device)
        version = int(self._call("cuDriverGetVersion"))
        text = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else str(name)
        return GpuInfo(text, f"{major}.{minor}", f"{version // 1000}.{version % 1000 // 10}")

    def retain_primary(self) -> Any:
        return self._call("cuDevicePrimaryCtxRetain", self.device)

    def release_primary(self, context: Any) -> None:
        self._call("cuDevicePrimaryCtxRelease", self.device)  # any thread may release

    def push(self, context: Any) -> None:
        self._call("cuCtxPushCurrent", context)

    def pop(self) -> None:
        self._call("cuCtxPopCurrent")

    def stream(self) -> Any:
        return self._call("cuStreamCreate", self.cu.CUstream_flags.CU_STREAM_NON_BLOCKING)

    def synchronize(self, stream: Any) -> None:
        self._call("cuStreamSynchronize", stream)

    def destroy_stream(self, stream: Any) -> None:
        self._call("cuStreamDestroy", stream)

    def alloc(self, nbytes: int) -> Any:
        return self._call("cuMemAlloc", max(int(nbytes), 1))

    def free(self, pointer: Any) -> None:
        self._call("cuMemFree", pointer)

    def host_empty(self, count: int, dtype: np.dtype) -> np.ndarray:
        """Page-locked host memory as a numpy array (fast, truly asynchronous copies)."""
        dtype = np.dtype(dtype)
        address = int(self._call("cuMemAllocHost", max(count * dtype.itemsize, 1)))
        buffer = (ctypes.c_byte * (count * dtype.itemsize)).from_address(address)
        array = np.frombuffer(buffer, dtype=dtype, count=count)
        self._host[id(array)] = address
        return array

    def host_free(self, array: np.ndarray) -> None:
        address = self._host.pop(id(array), None)
        if address is not None:
            self._call("cuMemFreeHost", address)

    def copy_to_device(self, device: Any, host: np.ndarray, stream: Any) -> None:
        self._call("cuMemcpyHtoDAsync", device, host.ctypes.data, host.nbytes, stream)

    def copy_to_host(self, host: np.ndarray, device: Any, stream: Any) -> None:
        self._call("cuMemcpyDtoHAsync", host.ctypes.data, device, host.nbytes, stream)

    def event(self) -> Any:
        return self._call("cuEventCreate", self.cu.CUevent_flags.CU_EVENT_DEFAULT)

    def record(self, event: Any, stream: Any) -> None:
        self._call("cuEventRecord", event, stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._call("cuEventElapsedTime", start, end))

    def destroy_event(self, event: Any) -> None:
        self._call("cuEventDestroy", event)

    def address(self, handle: Any) -> int:
        return int(handle)


class PyCudaDriver(Driver):
    """pycuda's driver module, for users who already have it (it has no wheels)."""

    name = "pycuda"

    def __init__(self, module: Any):
        self.cuda = module
        self.device = None

    @contextlib.contextmanager
    def _checked(self, what: str) -> Iterator[None]:
        try:
            yield
        except self.cuda.Error as exc:
            raise CudaError(f"CUDA {what} failed: {exc}") from exc

    def init(self) -> None:
        with self._checked("cuInit"):
            self.cuda.init()
        self.device = self.cuda.Device(0) if self.device_count() else None

    def device_count(self) -> int:
        return int(self.cuda.Device.count())

    def info(self) -> GpuInfo:
        major, minor = self.device.compute_capability()
        version = self.cuda.get_driver_version()
        return GpuInfo(self.device.name(), f"{major}.{minor}", f"{version // 1000}.{version % 1000 // 10}")

    def retain_primary(self) -> Any:
        with self._checked("cuDevicePrimaryCtxRetain"):
            return self.device.retain_primary_context()

    def release_primary(self, context: Any) -> None:
        # pycuda's detach releases a primary context only while it is current in this thread
        with self._checked("cuDevicePrimaryCtxRelease"):
            context.push()
            context.detach()

    def push(self, context: Any) -> None:
        with self._checked("cuCtxPushCurrent"):
            context.push()

    def pop(self) -> None:
        with self._checked("cuCtxPopCurrent"):
            self.cuda.Context.pop()

    def stream(self) -> Any:
        return self.cuda.Stream()

    def synchronize(self, stream: Any) -> None:
        with self._checked("cuStreamSynchronize"):
            stream.synchronize()

    def destroy_stream(self, stream: Any) -> None:
        pass  # freed with the Python object, while the context is current

    def alloc(self, nbytes: int) -> Any:
        with self._checked("cuMemAlloc"):
            return self.cuda.mem_alloc(max(int(nbytes), 1))

    def free(self, pointer: Any) -> None:
        pointer.free()

    def host_empty(self, count: int, dtype: np.dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(count, dtype)

    def host_free(self, array: np.ndarray) -> None:
        if getattr(array, "base", None) is not None and hasattr(array.base, "free"):
            array.base.free()

    def copy_to_device(self, device: Any, host: np.ndarray, stream: Any) -> None:
        with self._checked("cuMemcpyHtoDAsync"):
            self.cuda.memcpy_htod_async(device, host, stream)

    def copy_to_host(self, host: np.ndarray, device: Any, stream: Any) -> None:
        with self._checked("cuMemcpyDtoHAsync"):
            self.cuda.memcpy_dtoh_async(host, device, stream)

    def event(self) -> Any:
        return self.cuda.Event()

    def record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        with self._checked("cuEventElapsedTime"):
            return float(end.time_since(start))

    def destroy_event(self, event: Any) -> None:
        pass

    def address(self, handle: Any) -> int:
        return int(handle.handle) if hasattr(handle, "handle") else int(handle)


# --- finding a binding --------------------------------------------------------------------

# (module, driver class) in order of preference
BINDINGS = (("cuda.bindings.driver", BindingsDriver), ("cuda.cuda", BindingsDriver), ("pycuda.driver", PyCudaDriver))


def import_binding(module: str) -> Any | None:
    """The binding's module; None when it is not installed; one error when it is installed but
    cannot load (a missing shared library or companion package is not "not installed")."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module == exc.name or module.startswith(exc.name + ".")):
            return None  # the module itself (or its package) is not installed
        raise Dav2Error(
            f"{module} is installed but cannot be imported ({exc}): reinstall it: {BINDINGS_INSTALL}"
        ) from exc
    except ImportError as exc:
        raise Dav2Error(
            f"{module} is installed but cannot load a library ({exc}): the NVIDIA driver or CUDA libraries are "
            f"missing or do not match it; {BINDINGS_INSTALL}"
        ) from exc


def load_driver() -> Driver:
    """The first binding installed here, initialised, with GPU 0 present; or one clear error."""
    for module, kind in BINDINGS:
        binding = import_binding(module)
        if binding is not None:
            driver = kind(binding)
            break
    else:
        raise Dav2Error(f"TensorRT needs a CUDA binding for GPU memory and streams: {BINDINGS_INSTALL}")
    driver.init()
    if driver.device is None:
        raise Dav2Error("no CUDA GPU found: TensorRT engines need an NVIDIA GPU")
    check_binding_fits_driver(driver)
    return driver


def binding_cuda_major(driver: Driver) -> int | None:
    """The CUDA major a cuda-bindings wheel is built for (its version's major), if known."""
    if driver.name != "cuda-bindings":
        return None
    version = distribution_version("cuda-bindings") or distribution_version("cuda-python")
    return int(version.split(".")[0]) if version and version.split(".")[0].isdigit() else None


def check_binding_fits_driver(driver: Driver) -> None:
    """cuda-bindings 13 needs a CUDA 13 driver (R580+); say so instead of failing later."""
    major = binding_cuda_major(driver)
    info = driver.info()
    if major is not None and major > info.driver_major:
        raise Dav2Error(
            f"cuda-bindings {major}.x needs a CUDA {major} driver, but this NVIDIA driver supports CUDA "
            f"{info.cuda_driver}: pip install 'cuda-bindings>={info.driver_major},<{info.driver_major + 1}' "
            "(or update the driver)"
        )


def distribution_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# --- GPU 0's primary context --------------------------------------------------------------


class Gpu:
    """GPU 0's primary context, retained once, made current around every piece of work."""

    def __init__(self, driver: Driver | None = None):
        self.driver = driver or load_driver()
        self.info = self.driver.info()
        self._context = self.driver.retain_primary()
        self._lock = threading.Lock()  # one stream per backend: calls from two threads take turns

    @contextlib.contextmanager
    def current(self) -> Iterator[Driver]:
        """Push the primary context for the duration of the block (any thread), then pop it."""
        if self._context is None:
            raise Dav2Error("the GPU context is closed")
        with self._lock:
            self.driver.push(self._context)
            try:
                yield self.driver
            finally:
                self.driver.pop()

    def close(self) -> None:
        """Release the primary context (once; from any thread)."""
        context, self._context = self._context, None
        if context is not None:
            self.driver.release_primary(context)


def describe_gpu() -> GpuInfo:
    """GPU 0, or one error saying what is missing (binding, driver, GPU)."""
    return load_driver().info()
