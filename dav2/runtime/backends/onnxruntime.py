"""ONNX Runtime backend: CPU everywhere, CUDA and TensorRT execution providers when installed."""

import time
from pathlib import Path

import numpy as np

from dav2.errors import Dav2Error
from dav2.runtime.backends.base import Backend

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def metadata_from_graph(session) -> dict:
    """Best-effort metadata for an ONNX file that came without a dav2 sidecar."""
    shape = session.get_inputs()[0].shape
    dynamic = not all(isinstance(d, int) for d in shape[2:])
    return {
        "format": "onnx",
        "kind": "relative",
        "input_name": session.get_inputs()[0].name,
        "input_shape": None if dynamic else [1, 3, shape[2], shape[3]],
        "dynamic": dynamic,
        "precision": "unknown",
    }


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Path, metadata: dict | None, providers: list[str] | None = None, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise Dav2Error("the onnxruntime backend needs onnxruntime: pip install onnxruntime") from exc
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
        if metadata is None:
            metadata = metadata_from_graph(self.session)
        super().__init__(path, metadata)
        self.input_name = self.session.get_inputs()[0].name
        self.providers = self.session.get_providers()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        depth = self.session.run(None, {self.input_name: batch})[0]
        self.last_timing = {"infer_ms": (time.perf_counter() - start) * 1000.0}
        return depth

    def describe(self) -> str:
        return f"{super().describe()} | {self.providers[0]}"
