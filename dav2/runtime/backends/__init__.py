"""Opening the right backend for an artifact."""

from pathlib import Path

from dav2.errors import Dav2Error
from dav2.metadata import read_metadata
from dav2.runtime.backends.base import Backend

BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt", "torch")
EXTENSIONS = {
    ".onnx": "onnxruntime",
    ".xml": "openvino",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".pth": "torch",
    ".pt": "torch",
}


def open_backend(
    model: str | Path,
    backend: str = "auto",
    threads: int = 0,
    kind: str = "relative",
    max_depth: float | None = None,
    device: str = "cpu",
    hint: str = "LATENCY",
) -> Backend:
    """The backend for `model`: chosen from its extension unless `backend` names one."""
    path = Path(model)
    if not path.is_file():
        raise Dav2Error(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if backend == "auto":
        backend = EXTENSIONS.get(suffix, "")
        if not backend:
            raise Dav2Error(f"cannot tell which backend runs {path.name}; expected .onnx, .xml, .engine or .pth")
    if backend == "onnxruntime":
        from dav2.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, read_metadata(path), threads=threads)
    if backend == "openvino":
        from dav2.runtime.backends.openvino import OpenVinoBackend

        ov_device = "CPU" if device == "cpu" else device
        return OpenVinoBackend(path, read_metadata(path), device=ov_device, hint=hint, threads=threads)
    if backend == "tensorrt":
        from dav2.runtime.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(path, read_metadata(path))
    if backend == "torch":
        from dav2.runtime.backends.torch import TorchBackend

        return TorchBackend(path, kind=kind, max_depth=max_depth, device=device, threads=threads)
    raise Dav2Error(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
