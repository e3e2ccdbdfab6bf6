"""ExecuTorch backend: a .pte program (XNNPACK delegate) in ExecuTorch's Python runtime.

The Python runtime is for checking and measuring on a Linux or macOS machine: on a phone the
same .pte runs in the app through ExecuTorch's Android (Java/Kotlin) or iOS (Swift) runtime
(docs/executorch.md). Its pybindings take and return torch tensors, so this backend needs
PyTorch, unlike the others.

A .pte has no tensor names (a method's inputs are positional), so the graph facts carry
dav2's names; what is checked against the sidecar is the method's input and output dtypes
and shapes (fixed-size: one height x width per program). `threads` resizes ExecuTorch's
one process-wide thread pool, which XNNPACK uses: the last backend opened sets it for all.
"""

import time
from pathlib import Path

import numpy as np

from dav2 import optional
from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata
from dav2.runtime.backends.base import Backend, GraphFacts, TensorFacts, check_graph, check_io, error_reason
from dav2.vocabulary import INPUT_NAME, OUTPUT_NAME, ArtifactFormat, ModelKind

METHOD = "forward"


def tensor_facts(meta, name: str, torch) -> TensorFacts:
    """One method input/output from its TensorInfo: sizes and ScalarType."""
    dtype = torch.empty(0, dtype=scalar_dtype(meta.dtype(), torch)).numpy().dtype.name
    return TensorFacts((name,), dtype, tuple(int(d) for d in meta.sizes()))


def scalar_dtype(scalar_type, torch):
    """ExecuTorch's ScalarType (an int-like enum, as c10's) -> torch dtype."""
    table = {6: torch.float32, 5: torch.float16, 1: torch.int8, 0: torch.uint8, 4: torch.int64, 3: torch.int32}
    return table.get(int(scalar_type), torch.float64)


def graph_facts(method, torch) -> GraphFacts:
    meta = method.metadata
    inputs = tuple(tensor_facts(meta.input_tensor_meta(i), INPUT_NAME, torch) for i in range(meta.num_inputs()))
    outputs = tuple(tensor_facts(meta.output_tensor_meta(i), OUTPUT_NAME, torch) for i in range(meta.num_outputs()))
    return GraphFacts(inputs, outputs)


def metadata_from_program(path: Path, facts: GraphFacts) -> ArtifactMetadata:
    """Best-effort metadata for a .pte without a dav2 sidecar (encoder unknown: no weights shown)."""
    shape = facts.inputs[0].shape if facts.inputs else None
    return ArtifactMetadata(
        artifact=path.name,
        format=ArtifactFormat.EXECUTORCH,
        encoder=None,
        kind=ModelKind.RELATIVE,
        precision=None,
        dynamic=False,
        input_shape=list(shape) if shape and len(shape) == 4 else None,
        from_sidecar=False,
    )


def set_threads(threads: int) -> None:
    """Resize ExecuTorch's process-wide thread pool (XNNPACK's workers)."""
    if not threads:
        return
    from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool

    _unsafe_reset_threadpool(threads)


class ExecuTorchBackend(Backend):
    name = "executorch"
    fixed_size_only = True  # no dynamic export exists: the stretch warning advises a size of the frames' shape

    def __init__(self, path: Path, metadata: ArtifactMetadata | None, threads: int = 0):
        torch = optional.require("torch", "the executorch backend (its Python runtime takes torch tensors)")
        runtime = optional.require("executorch.runtime", "the executorch backend")
        set_threads(threads)
        try:
            self.program = runtime.Runtime.get().load_program(Path(path))
            self.method = self.program.load_method(METHOD)
        except Exception as exc:  # RuntimeError/ValueError from the C++ loader
            raise Dav2Error(f"{path} is not a loadable ExecuTorch program ({error_reason(exc, 200)})") from exc
        if self.method is None:
            raise Dav2Error(f"{path} has no '{METHOD}' method; dav2 runs programs exported by dav2-export")
        facts = graph_facts(self.method, torch)
        check_io(path, facts)
        metadata = metadata or metadata_from_program(path, facts)
        check_graph(path, metadata, facts)
        super().__init__(path, metadata)
        self.expected = facts.inputs[0].shape
        self.threads = threads
        self._torch = torch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        if batch.shape != self.expected:
            raise Dav2Error(f"{self.path.name} takes {self.expected} only (fixed-size program), not {batch.shape}")
        outputs = self.method.execute([self._torch.from_numpy(np.ascontiguousarray(batch))])
        depth = outputs[0].numpy().copy()
        self.last_timing = {"infer_ms": (time.perf_counter() - start) * 1000.0}
        return depth

    def close(self) -> None:
        self.method = None
        self.program = None

    def describe(self) -> str:
        threads = self.threads or "default"
        return f"{super().describe()} | XNNPACK, {threads} threads"
