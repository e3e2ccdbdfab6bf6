"""Opening the right backend for an artifact."""

from pathlib import Path

from dav2.errors import Dav2Error
from dav2.metadata import read_metadata
from dav2.runtime.backends.base import Backend

BACKENDS = ("auto", "onnxruntime", "torch")


def open_backend(
    model: str | Path,
    backend: str = "auto",
    threads: int = 0,
    kind: str = "relative",
    max_depth: float | None = None,
    device: str = "cpu",
) -> Backend:
    """The backend for `model`: chosen from its extension unless `backend` names one."""
    path = Path(model)
    if not path.is_file():
        raise Dav2Error(f"model file not found: {path}")
    suffix = path.suffix.lower()
    if backend == "auto":
        backend = {".onnx": "onnxruntime", ".pth": "torch", ".pt": "torch"}.get(suffix, "")
        if not backend:
            raise Dav2Error(f"cannot tell which backend runs {path.name}; expected .onnx or .pth")
    if backend == "onnxruntime":
        from dav2.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, read_metadata(path), threads=threads)
    if backend == "torch":
        from dav2.runtime.backends.torch import TorchBackend

        return TorchBackend(path, kind=kind, max_depth=max_depth, device=device, threads=threads)
    raise Dav2Error(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
