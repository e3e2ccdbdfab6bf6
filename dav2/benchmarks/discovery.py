"""What this machine can run: installed libraries, CUDA GPUs, OpenVINO devices.

`plan` turns the requested backends x precisions x sizes into the cases to measure and the
ones skipped, each with the reason, so a table never silently lacks a row.
"""

import importlib.metadata
import importlib.util
from dataclasses import dataclass

from dav2.export import formats
from dav2.optional import install_hint
from dav2.vocabulary import BackendName, Precision

BACKENDS = (  # table order
    BackendName.TORCH, BackendName.ONNXRUNTIME, BackendName.OPENVINO, BackendName.TENSORRT,
    BackendName.LITERT, BackendName.EXECUTORCH,
)  # fmt: skip
PRECISIONS = Precision.values()
FP32, FP16, INT8 = Precision.FP32, Precision.FP16, Precision.INT8
# what each backend can run at all: PyTorch eager, and each export format's precisions (dav2.export.formats)
SUPPORTED = {
    BackendName.TORCH: (FP32, FP16),
    **{row.backend: row.precisions for row in formats.FORMATS if row.backend is not None},
}
# the backend's Python package (distribution name)
PACKAGES = {**{name: name.value for name in BackendName}, BackendName.LITERT: "ai-edge-litert"}
# what dav2-bench needs besides the runtime to make a backend's artifacts (the converter)
CONVERTERS = {
    BackendName.LITERT: ("litert-torch", "pip install 'dav2[litert-export]'"),
    BackendName.EXECUTORCH: ("executorch", "pip install 'dav2[executorch]'"),
}
# the converters and runtimes each edge backend's artifacts depend on (dav2-bench's cache key)
EDGE_TOOLS = ("ai-edge-litert", "litert-torch", "ai-edge-quantizer", "executorch", "torchao")


@dataclass(frozen=True)
class Case:
    backend: str
    precision: str
    size: int
    float_groups: tuple[str, ...] = ()  # OpenVINO INT8: parts left in float (mixed precision)
    max_abs_rel: float | None = None  # OpenVINO INT8 with NNCF's accuracy control, to this budget
    full_integer: bool = False  # LiteRT INT8 with int8 activations too (calibrated), not weights only

    @property
    def recipe(self) -> str:
        """How the artifact differs from the plain backend/precision one ("" when it does not)."""
        parts = [f"float: {'+'.join(self.float_groups)}"] if self.float_groups else []
        if self.max_abs_rel is not None:
            parts.append(f"accuracy control ≤ {self.max_abs_rel:g}")
        if self.full_integer:
            parts.append("full integer")
        return ", ".join(parts)

    @property
    def calibrated(self) -> bool:
        """Whether its artifact is quantized from calibration images (what --images feeds)."""
        if self.backend == BackendName.TORCH:
            return False
        return self.full_integer or formats.for_backend(self.backend).calibrates(Precision(self.precision))

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision} {self.size}" + (f" ({self.recipe})" if self.recipe else "")


def library_versions() -> dict[str, str | None]:
    """Installed version of each backend library and its helpers (None: not installed)."""
    versions = {}
    for name in (
        "torch",
        "onnxruntime",
        "onnxruntime-gpu",
        "openvino",
        "nncf",
        "tensorrt",
        "cuda-bindings",
        "cuda-python",
        "pycuda",
        "numpy",
        "opencv-python",
        *EDGE_TOOLS,
    ):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cuda_gpus() -> list[str]:
    """Names of the CUDA GPUs: the CUDA driver's answer first (through the binding the TensorRT
    backend uses: cuda-bindings, or pycuda where a user has it), PyTorch's only when there is none.

    Why the driver first: a TensorRT machine (a Jetson, a deployment box) has a CUDA binding and
    often no torch, and importing torch costs seconds and gigabytes where it is installed. An
    empty list without either library, or without a driver or GPU."""
    names = driver_gpus()
    return names if names is not None else torch_gpus()


def driver_gpus() -> list[str] | None:
    """GPU 0's name from the CUDA driver (`runtime.cuda`); None when no binding, driver or GPU."""
    from dav2.runtime import cuda

    try:
        return [cuda.describe_gpu().gpu]
    except Exception:  # noqa: BLE001 - Dav2Error (no binding/driver/GPU) or a binding's own error: no usable GPU
        return None


def torch_gpus() -> list[str]:
    if not module_available("torch"):
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def module_available(name: str) -> bool:
    """Installed and not blocked (a module set to None in sys.modules cannot be imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def openvino_devices() -> list[str]:
    if importlib.util.find_spec("openvino") is None:
        return []
    import openvino as ov

    return list(ov.Core().available_devices)


@dataclass
class Machine:
    """What discovery found, as plain data (tests build their own)."""

    libraries: dict[str, str | None]
    gpus: list[str]
    openvino_devices: list[str]

    @classmethod
    def here(cls) -> "Machine":
        return cls(library_versions(), cuda_gpus(), openvino_devices())

    def has(self, backend: str) -> bool:
        if backend == "onnxruntime":
            return bool(self.libraries.get("onnxruntime") or self.libraries.get("onnxruntime-gpu"))
        return bool(self.libraries.get(PACKAGES[backend]))

    @property
    def has_cuda_binding(self) -> bool:
        """cuda-bindings (or cuda-python), or pycuda where a user has it: TensorRT's buffers."""
        return any(self.libraries.get(name) for name in ("cuda-bindings", "cuda-python", "pycuda"))


def skip_reason(machine: Machine, backend: str, precision: str, have_images: bool) -> str | None:
    """Why this backend/precision cannot be measured here, or None when it can."""
    if precision not in SUPPORTED[backend]:
        return f"{backend} has no {precision} path in dav2"
    if not machine.has(backend):
        return f"{PACKAGES[backend]} is not installed ({install_hint(PACKAGES[backend])})"
    converter, hint = CONVERTERS.get(backend, (None, ""))
    if converter and not machine.libraries.get(converter):
        return f"{converter} is not installed: dav2-bench cannot export {backend} artifacts ({hint})"
    if backend == "tensorrt" and not machine.gpus:
        return "TensorRT needs a CUDA GPU; none found"
    if backend == "tensorrt" and not machine.has_cuda_binding:
        return f"no CUDA binding for TensorRT's buffers ({install_hint('cuda')})"
    if backend == BackendName.TORCH and precision == FP16 and not machine.gpus:
        return "PyTorch FP16 is measured on CUDA only; no GPU here"
    if backend == "openvino" and not machine.openvino_devices:
        return "OpenVINO finds no device"
    if backend != BackendName.TORCH and formats.for_backend(backend).calibrates(precision) and not have_images:
        return f"{backend} {precision} is calibrated on real images: pass --images DIR"
    return None


def plan(
    machine: Machine,
    backends: list[str],
    precisions: list[str],
    sizes: list[int],
    have_images: bool,
    int8_recipes: tuple[tuple[str, ...], ...] = (),
    controlled_int8: float | None = None,
) -> tuple[list[Case], list[tuple[Case, str]]]:
    """(cases to run, (case, reason) skipped), sizes outermost, torch FP32 first at each size.

    After OpenVINO INT8 at each size come its mixed-precision variants: one per entry of
    `int8_recipes` (groups left in float), and with `controlled_int8` one made by NNCF's
    accuracy control to that AbsRel budget (dav2-bench pick asks for them). After LiteRT INT8
    (weights only, --litert-int8 dynamic) comes its full-integer recipe, calibrated on the
    images: what NPUs and the Edge TPU run."""
    runnable, skipped = [], []
    order = sorted(backends, key=lambda b: BACKENDS.index(b))
    for size in sizes:
        for backend in order:
            for precision in precisions:
                variants = [Case(backend, precision, size)]
                if backend == BackendName.OPENVINO and precision == INT8:
                    variants += [Case(backend, precision, size, groups) for groups in int8_recipes]
                    if controlled_int8 is not None:
                        variants.append(Case(backend, precision, size, max_abs_rel=controlled_int8))
                if backend == BackendName.LITERT and precision == INT8:
                    variants.append(Case(backend, precision, size, full_integer=True))
                reason = skip_reason(machine, backend, precision, have_images)
                if reason is None:
                    runnable.extend(case for case in variants if have_images or not case.calibrated)
                    skipped.extend((case, f"{case.label} is calibrated on real images: pass --images DIR")
                                   for case in variants if case.calibrated and not have_images)  # fmt: skip
                elif precision in SUPPORTED[backend]:
                    skipped.extend((case, reason) for case in variants)
    return runnable, skipped
