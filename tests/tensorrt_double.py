"""A test double of `tensorrt` and of NVIDIA's CUDA binding (`cuda.bindings.driver`).

It is NOT TensorRT: it lets the tests run dav2's own TensorRT plumbing (profiles and sizes,
the accuracy check, publishing, the sidecar, error paths, buffers and the CUDA context's
lifetime) on a machine without a GPU. Its "engine" is the ONNX graph run in ONNX Runtime,
between buffers in host memory that stand in for device memory.

It keeps the rules the real libraries enforce where dav2 could get them wrong:
- the builder records the optimization profile; an execution context refuses an input shape
  outside it (set_input_shape returns False), as TensorRT does;
- every CUDA call that needs a context fails with CUDA_ERROR_INVALID_CONTEXT when none is
  current in the calling thread (per-thread context stacks), event timings included;
- the primary context is reference-counted, so a missing release shows as a leak;
- `trt.Builder`/`trt.Runtime` raise TypeError("... factory function returned nullptr") when
  told to fail, like TensorRT's bindings; `cuInit` raises as cuda-bindings does without libcuda.
The API names used are checked against the real bindings by tests/test_tensorrt_api.py.
"""

import ctypes
import enum
import importlib.machinery
import json
import threading
import types
from dataclasses import dataclass, field

import numpy as np

VERSION = "10.3.0"


@dataclass
class State:
    """What a test can set up (failures) and observe (builds, contexts retained)."""

    builder_fails: bool = False
    runtime_fails: bool = False
    no_driver: bool = False
    driver_version: int = 12060  # CUDA 12.6
    gpu: str = "Orin (test double)"
    capability: tuple[int, int] = (8, 7)
    reject_timing_cache: bool = False
    no_timing_cache: bool = False
    output_noise: float = 0.0  # relative error put on every output value (an engine that computes wrongly)
    builds: list[dict] = field(default_factory=list)
    retained: int = 0  # primary context references held
    memory: dict[int, np.ndarray] = field(default_factory=dict)  # address -> backing array
    tf32_cleared: bool = False


STATE = State()


# --- tensorrt --------------------------------------------------------------------------------


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


NUMPY_TO_TRT = {"float32": DataType.FLOAT, "float16": DataType.HALF, "uint8": DataType.UINT8}


class Logger:
    WARNING = 2

    def __init__(self, level):
        self.level = level


class NetworkDefinitionCreationFlag:
    STRONGLY_TYPED = 1


class MemoryPoolType:
    WORKSPACE = 0


class BuilderFlag:
    TF32 = 7


def _nullptr():
    return TypeError("pybind11::init(): factory function returned nullptr")


class Network:
    def __init__(self, flags):
        self.flags = flags
        self.onnx = None


class OnnxParser:
    def __init__(self, network, logger):
        self.network = network
        self.errors = []

    def parse_from_file(self, path):
        import onnx

        try:
            onnx.checker.check_model(path)
        except Exception as exc:  # noqa: BLE001
            self.errors.append(str(exc))
            return False
        self.network.onnx = path
        return True

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, index):
        return self.errors[index]


class OptimizationProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, low, opt, high):
        self.shapes[name] = [list(low), list(opt), list(high)]


class TimingCache:
    def __init__(self, data):
        self.data = data

    def serialize(self):
        return b"timing-cache"


class BuilderConfig:
    def __init__(self):
        self.profiles = []
        self.cache = None
        self.workspace = None

    def set_memory_pool_limit(self, pool, size):
        self.workspace = size

    def clear_flag(self, flag):
        STATE.tf32_cleared = flag == BuilderFlag.TF32

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, data):
        return TimingCache(bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        if STATE.reject_timing_cache and cache.data:
            return False
        self.cache = cache
        return True

    def get_timing_cache(self):
        return None if STATE.no_timing_cache else self.cache


class Builder:
    def __init__(self, logger):
        if STATE.builder_fails:
            raise _nullptr()

    def create_network(self, flags):
        return Network(flags)

    def create_builder_config(self):
        return BuilderConfig()

    def create_optimization_profile(self):
        return OptimizationProfile()

    def build_serialized_network(self, network, config):
        if _current() is None:
            raise RuntimeError("test double: the builder ran without a current CUDA context")
        ((name, shapes),) = config.profiles[0].shapes.items()
        plan = {"onnx": network.onnx, "input": name, "profile": shapes, "strongly_typed": network.flags == 2}
        STATE.builds.append(plan)
        return json.dumps(plan).encode()


class Runtime:
    def __init__(self, logger):
        if STATE.runtime_fails:
            raise _nullptr()

    def deserialize_cuda_engine(self, data):
        try:
            return Engine(json.loads(data))
        except (ValueError, KeyError):
            return None


class Engine:
    def __init__(self, plan):
        import onnxruntime

        self.plan = plan
        self.session = onnxruntime.InferenceSession(plan["onnx"], providers=["CPUExecutionProvider"])
        self.io = [(arg, TensorIOMode.INPUT) for arg in self.session.get_inputs()]
        self.io += [(arg, TensorIOMode.OUTPUT) for arg in self.session.get_outputs()]

    @property
    def num_io_tensors(self):
        return len(self.io)

    def get_tensor_name(self, index):
        return self.io[index][0].name

    def _arg(self, name):
        return next((arg, mode) for arg, mode in self.io if arg.name == name)

    def get_tensor_mode(self, name):
        return self._arg(name)[1]

    def get_tensor_dtype(self, name):
        kind = self._arg(name)[0].type  # "tensor(float)"
        return {"tensor(float)": DataType.FLOAT, "tensor(float16)": DataType.HALF, "tensor(uint8)": DataType.UINT8}[
            kind
        ]

    def get_tensor_shape(self, name):
        return [d if isinstance(d, int) else -1 for d in self._arg(name)[0].shape]

    def get_tensor_profile_shape(self, name, index):
        return self.plan["profile"]

    def create_execution_context(self):
        return ExecutionContext(self)


class ExecutionContext:
    def __init__(self, engine):
        self.engine = engine
        self.addresses = {}
        self.shape = None

    def set_input_shape(self, name, shape):
        low, _, high = self.engine.plan["profile"]
        if len(shape) != len(low) or not all(lo <= s <= hi for s, lo, hi in zip(shape, low, high)):
            return False  # TensorRT refuses shapes outside the profile
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        batch, _, height, width = self.shape
        return (batch, height, width) if name != self.engine.plan["input"] else self.shape

    def set_tensor_address(self, name, address):
        if name not in [arg.name for arg, _ in self.engine.io]:
            return False
        self.addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream):
        if _current() is None or self.shape is None:
            return False
        name = self.engine.plan["input"]
        size = int(np.prod(self.shape))
        image = _view(self.addresses[name], size).reshape(self.shape).copy()
        (output,) = self.engine.session.run(None, {name: image})
        if STATE.output_noise:  # a multiplicative error pattern: no scale-and-shift alignment removes it
            pattern = np.random.default_rng(0).uniform(-1, 1, output.shape).astype(np.float32)
            output = output * (1 + np.float32(STATE.output_noise) * pattern)
        out_name = next(arg.name for arg, mode in self.engine.io if mode == TensorIOMode.OUTPUT)
        _view(self.addresses[out_name], output.size)[:] = output.ravel()
        return True


def tensorrt_module() -> types.ModuleType:
    module = types.ModuleType("tensorrt")
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    module.__version__ = VERSION
    for item in (Logger, Builder, Runtime, OnnxParser, NetworkDefinitionCreationFlag, MemoryPoolType, BuilderFlag,
                 DataType, TensorIOMode):  # fmt: skip
        setattr(module, item.__name__, item)
    return module


# --- cuda.bindings.driver -------------------------------------------------------------------


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_INVALID_CONTEXT = 201


class CUdevice_attribute(enum.IntEnum):  # noqa: N801 (the binding's spelling)
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


class CUstream_flags(enum.IntEnum):  # noqa: N801
    CU_STREAM_NON_BLOCKING = 1


class CUevent_flags(enum.IntEnum):  # noqa: N801
    CU_EVENT_DEFAULT = 0


_threads = threading.local()
_OK = CUresult.CUDA_SUCCESS
_NO_CONTEXT = CUresult.CUDA_ERROR_INVALID_CONTEXT
PRIMARY = "primary-context-0"


def _stack() -> list:
    if not hasattr(_threads, "stack"):
        _threads.stack = []
    return _threads.stack


def _current():
    return _stack()[-1] if _stack() else None


def _allocate(nbytes: int) -> int:
    array = np.zeros(int(nbytes), dtype=np.uint8)
    STATE.memory[array.ctypes.data] = array
    return array.ctypes.data


def _view(address: int, count: int) -> np.ndarray:
    return np.ctypeslib.as_array((ctypes.c_float * count).from_address(address))


def cuInit(flags):  # noqa: N802 (the binding's names)
    if STATE.no_driver:
        raise RuntimeError('"cuda" is an NVIDIA driver library and can only be found via system search.')
    return (_OK,)


def cuDeviceGetCount():  # noqa: N802
    return _OK, 1


def cuDeviceGet(ordinal):  # noqa: N802
    return _OK, ordinal


def cuDeviceGetName(length, device):  # noqa: N802
    return _OK, STATE.gpu.encode() + b"\0" * 8


def cuDeviceGetAttribute(attribute, device):  # noqa: N802
    major, minor = STATE.capability
    return _OK, major if attribute == CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR else minor


def cuDriverGetVersion():  # noqa: N802
    return _OK, STATE.driver_version


def cuGetErrorString(error):  # noqa: N802
    return _OK, f"test double error {int(error)}".encode()


def cuDevicePrimaryCtxRetain(device):  # noqa: N802
    STATE.retained += 1
    return _OK, PRIMARY


def cuDevicePrimaryCtxRelease(device):  # noqa: N802
    if STATE.retained <= 0:
        return (CUresult.CUDA_ERROR_INVALID_VALUE,)
    STATE.retained -= 1
    return (_OK,)


def cuCtxPushCurrent(context):  # noqa: N802
    _stack().append(context)
    return (_OK,)


def cuCtxPopCurrent():  # noqa: N802
    return (_OK, _stack().pop()) if _stack() else (_NO_CONTEXT, None)


def _in_context(value=None):
    if _current() is None:
        return (_NO_CONTEXT, None) if value is not None else (_NO_CONTEXT,)
    return (_OK, value) if value is not None else (_OK,)


def cuStreamCreate(flags):  # noqa: N802
    return _in_context(1)


def cuStreamSynchronize(stream):  # noqa: N802
    return _in_context()


def cuStreamDestroy(stream):  # noqa: N802
    return _in_context()


def cuMemAlloc(nbytes):  # noqa: N802
    return _in_context(_allocate(nbytes)) if _current() else (_NO_CONTEXT, None)


def cuMemAllocHost(nbytes):  # noqa: N802
    return _in_context(_allocate(nbytes)) if _current() else (_NO_CONTEXT, None)


def _free(address):
    if _current() is None:
        return (_NO_CONTEXT,)
    return (_OK,) if STATE.memory.pop(int(address), None) is not None else (CUresult.CUDA_ERROR_INVALID_VALUE,)


def cuMemFree(address):  # noqa: N802
    return _free(address)


def cuMemFreeHost(address):  # noqa: N802
    return _free(address)


def _copy(destination, source, nbytes):
    if _current() is None:
        return (_NO_CONTEXT,)
    ctypes.memmove(int(destination), int(source), int(nbytes))
    return (_OK,)


def cuMemcpyHtoDAsync(destination, source, nbytes, stream):  # noqa: N802
    return _copy(destination, source, nbytes)


def cuMemcpyDtoHAsync(destination, source, nbytes, stream):  # noqa: N802
    return _copy(destination, source, nbytes)


def cuEventCreate(flags):  # noqa: N802
    return _in_context(object())


def cuEventRecord(event, stream):  # noqa: N802
    return _in_context()


def cuEventElapsedTime(start, end):  # noqa: N802
    return _in_context(0.25)


def cuEventDestroy(event):  # noqa: N802
    return _in_context()


def cuda_modules() -> dict[str, types.ModuleType]:
    """`cuda`, `cuda.bindings` and `cuda.bindings.driver`, for sys.modules."""
    modules = {}
    for name in ("cuda", "cuda.bindings", "cuda.bindings.driver"):
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=name != "cuda.bindings.driver")
        modules[name] = module
    driver = modules["cuda.bindings.driver"]
    for name, value in list(globals().items()):
        if name.startswith(("cu", "CU")):
            setattr(driver, name, value)
    modules["cuda"].bindings = modules["cuda.bindings"]
    modules["cuda.bindings"].driver = driver
    return modules
