"""Opening the right backend for an artifact.

The artifact's format (from its sidecar, else its file ending) picks the backend; the sidecar
(`<artifact>.json`, a typed ArtifactMetadata) tells the backend everything else. Each backend
module imports its own library, so only the one that is used must be installed.
"""

from pathlib import Path

from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata
from dav2.runtime.backends.base import Backend
from dav2.vocabulary import FORMAT_BACKEND, SUFFIX_FORMAT, BackendName

BACKENDS = ("auto", *BackendName.values())


COREML_ONLY_ON_APPLE = (
    "{name} is a Core ML package: it runs on Apple devices (macOS, iOS) through Core ML, not in dav2's "
    "runtime; docs/coreml.md shows how to run it on a Mac"
)


def backend_for(path: Path, metadata: ArtifactMetadata | None) -> BackendName:
    """The backend that runs `path`: its recorded format, else its file ending."""
    fmt = metadata.format if metadata is not None else SUFFIX_FORMAT.get(path.suffix.lower())
    if fmt is None:
        endings = ", ".join(SUFFIX_FORMAT)
        raise Dav2Error(f"cannot tell which backend runs {path.name}; expected one of {endings}")
    if fmt not in FORMAT_BACKEND:  # Core ML: converted and checked here, run on Apple devices
        raise Dav2Error(COREML_ONLY_ON_APPLE.format(name=path.name))
    return FORMAT_BACKEND[fmt]


def open_backend(
    model: str | Path,
    backend: str = "auto",
    threads: int = 0,
    kind: str = "relative",
    max_depth: float | None = None,
    device: str = "cpu",
    hint: str = "LATENCY",
    memory_arena: bool = True,
) -> Backend:
    """The backend for `model`: chosen from its metadata or extension unless `backend` names one.

    `kind` and `max_depth` matter for PyTorch checkpoints only (artifacts record them).
    `memory_arena=False` makes ONNX Runtime give each run's memory back (long-lived servers
    that see many input sizes); other backends ignore it. The caller owns the backend: use it
    as a context manager or call close().
    """
    path = Path(model)
    if path.suffix.lower() == ".mlpackage" and path.is_dir():
        raise Dav2Error(COREML_ONLY_ON_APPLE.format(name=path.name))
    if not path.is_file():
        raise Dav2Error(f"model file not found: {path}")
    metadata = ArtifactMetadata.read(path)
    name = backend_for(path, metadata) if backend == "auto" else BackendName(backend)
    if name == BackendName.ONNXRUNTIME:
        from dav2.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, metadata, threads=threads, memory_arena=memory_arena)
    if name == BackendName.OPENVINO:
        from dav2.runtime.backends.openvino import OpenVinoBackend

        ov_device = "CPU" if device == "cpu" else device
        return OpenVinoBackend(path, metadata, device=ov_device, hint=hint, threads=threads)
    if name == BackendName.TENSORRT:
        from dav2.runtime.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(path, metadata)
    if name == BackendName.LITERT:
        from dav2.runtime.backends.litert import LiteRtBackend

        return LiteRtBackend(path, metadata, threads=threads)
    if name == BackendName.EXECUTORCH:
        from dav2.runtime.backends.executorch import ExecuTorchBackend

        return ExecuTorchBackend(path, metadata, threads=threads)
    from dav2.runtime.backends.torch import TorchBackend

    return TorchBackend(path, kind=kind, max_depth=max_depth, device=device, threads=threads)
