"""ONNX Runtime backend: CPU everywhere, CUDA and TensorRT execution providers when installed."""

import time
from pathlib import Path

import numpy as np

from dav2 import optional
from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata
from dav2.runtime.backends.base import Backend
from dav2.vocabulary import ArtifactFormat, ModelKind

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def metadata_from_graph(path: Path, session) -> ArtifactMetadata:
    """Best-effort metadata for an ONNX file that came without a dav2 sidecar."""
    graph_input = session.get_inputs()[0]
    shape = graph_input.shape
    dynamic = not all(isinstance(d, int) for d in shape[2:])
    return ArtifactMetadata(
        artifact=path.name,
        format=ArtifactFormat.ONNX,
        encoder=None,
        kind=ModelKind.RELATIVE,
        precision=None,
        dynamic=dynamic,
        input_shape=None if dynamic else [1, 3, shape[2], shape[3]],
        input_name=graph_input.name,
        output_name=session.get_outputs()[0].name,
        from_sidecar=False,
    )


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        path: Path,
        metadata: ArtifactMetadata | None,
        providers: list[str] | None = None,
        threads: int = 0,
    ):
        ort = optional.require("onnxruntime", "the onnxruntime backend")
        available = ort.get_available_providers()
        chosen = providers or [p for p in PREFERRED_PROVIDERS if p in available]
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:
            reason = str(exc).splitlines()[0][:200]
            raise Dav2Error(f"{path} is not a loadable ONNX model ({reason})") from exc
        super().__init__(path, metadata or metadata_from_graph(path, self.session))
        self.input_name = self.metadata.input_name
        self.providers = self.session.get_providers()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        depth = self.session.run(None, {self.input_name: batch})[0]
        self.last_timing = {"infer_ms": (time.perf_counter() - start) * 1000.0}
        return depth

    def close(self) -> None:
        # ONNX Runtime frees the session (and its memory arena) when the last reference goes
        self.session = None

    def describe(self) -> str:
        return f"{super().describe()} | {self.providers[0]}"
