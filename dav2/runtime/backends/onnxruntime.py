"""ONNX Runtime backend: CPU everywhere, the CUDA execution provider when installed.

ONNX Runtime's TensorRT execution provider is not used unless asked for: without options it
builds an FP32 engine from scratch at every process start (minutes for vitl) and keeps
nothing, so "preferring" it made every run slower than CUDA alone. A real TensorRT engine
comes from `dav2-export --trt` and runs in the tensorrt backend. Set DAV2_ORT_TENSORRT=1 to
use the provider anyway: the engine is then cached beside the artifact
(`<artifact>.ort-trt-cache/`, rebuilt only when the graph or TensorRT change) and built in
FP16 when the artifact's metadata says FP16.

When the graph is opened, its inputs and outputs are checked against the metadata (one
float32 input (B, 3, H, W), one float32 output (B, H, W), the sidecar's names, shape, encoder
and relative/metric: see `base.check_graph`). The encoder and the output op are read from the
ONNX file's protobuf structure directly (`onnx_graph_facts`), skipping the weights' bytes, so
the check needs no `onnx` package and reads a few hundred kilobytes even of a vitl file.
"""

import mmap
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dav2 import optional
from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata
from dav2.runtime.backends.base import (
    Backend,
    GraphFacts,
    TensorFacts,
    check_graph,
    check_io,
    error_reason,
    is_patch_kernel,
    kind_from_tail,
    with_graph_facts,
)
from dav2.vocabulary import ArtifactFormat, ModelKind, Precision

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
TENSORRT_ENV = "DAV2_ORT_TENSORRT"  # "1": put ONNX Runtime's TensorRT provider first (engine cached)
ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}


def ort_dtype(type_name: str) -> str:
    """'tensor(float)' -> 'float32', 'tensor(int64)' -> 'int64': numpy's spelling."""
    return ORT_TYPES.get(type_name, type_name.removeprefix("tensor(").removesuffix(")"))


def tensor_facts(arg) -> TensorFacts:
    shape = None if arg.shape is None else tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorFacts((arg.name,), ort_dtype(arg.type), shape)


def metadata_from_graph(path: Path, session) -> ArtifactMetadata:
    """Best-effort metadata for an ONNX file that came without a dav2 sidecar."""
    graph_input = session.get_inputs()[0]
    shape = graph_input.shape
    dynamic = len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:])
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


# --- reading the graph's structure from the protobuf ----------------------------------------
# ModelProto.graph = 7; GraphProto.node = 1, .initializer = 5; NodeProto.input = 1, .output = 2,
# .op_type = 4, .attribute = 5; AttributeProto.t = 5; TensorProto.dims = 1 (the weights' bytes,
# raw_data = 9, are skipped, never read).


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int | slice]]:
    """(field number, wire type, value) of a message: an int, or a slice for length-delimited."""
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = slice(pos, pos + length), pos + length
        elif wire in (1, 5):
            value, pos = 0, pos + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"wire type {wire}")
        yield number, wire, value


def _message(buf, span: slice, number: int) -> Iterator[slice]:
    for field, wire, value in _fields(buf, span.start, span.stop):
        if field == number and wire == 2:
            yield value


def _dims(buf, tensor: slice) -> list[int]:
    dims = []
    for field, wire, value in _fields(buf, tensor.start, tensor.stop):
        if field == 1 and wire == 0:
            dims.append(value)
        elif field == 1 and wire == 2:  # packed
            pos = value.start
            while pos < value.stop:
                dim, pos = _varint(buf, pos)
                dims.append(dim)
    return dims


def _node(buf, node: slice) -> tuple[str, list[str], list[str], list[slice]]:
    """(op type, inputs, outputs, tensors held in its attributes) of one NodeProto."""
    op, inputs, outputs, tensors = "", [], [], []
    for field, wire, value in _fields(buf, node.start, node.stop):
        if wire != 2:
            continue
        if field == 1:
            inputs.append(bytes(buf[value]).decode("utf-8", "replace"))
        elif field == 2:
            outputs.append(bytes(buf[value]).decode("utf-8", "replace"))
        elif field == 4:
            op = bytes(buf[value]).decode("utf-8", "replace")
        elif field == 5:
            tensors.extend(_message(buf, value, 5))
    return op, inputs, outputs, tensors


def onnx_structure(path: Path, output: str) -> tuple[frozenset[int], ModelKind | None]:
    """(patch-embedding widths, relative/metric) of an ONNX file, from its structure alone."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        graph = next(_message(buf, slice(0, len(buf)), 7))
        widths: set[int] = set()
        producers: dict[str, tuple[str, list[str]]] = {}
        for field, wire, value in _fields(buf, graph.start, graph.stop):
            if field == 5 and wire == 2:
                dims = _dims(buf, value)
                if is_patch_kernel(dims):
                    widths.add(dims[0])
            elif field == 1 and wire == 2:
                op, inputs, outputs, tensors = _node(buf, value)
                for out in outputs:
                    producers[out] = (op, inputs)
                held = [_dims(buf, tensor) for tensor in tensors]  # Constant nodes' values
                widths.update(dims[0] for dims in held if is_patch_kernel(dims))
    return frozenset(widths), kind_from_tail(producers.get, output)


def graph_facts(path: Path, session) -> GraphFacts:
    """The session's inputs and outputs, with the encoder width and output op from the file."""
    inputs = tuple(tensor_facts(arg) for arg in session.get_inputs())
    outputs = tuple(tensor_facts(arg) for arg in session.get_outputs())
    try:
        widths, kind = onnx_structure(path, outputs[0].names[0]) if outputs else (frozenset(), None)
    except (ValueError, IndexError, StopIteration, OSError):  # not plain protobuf: no verdict, not an error
        widths, kind = frozenset(), None
    return GraphFacts(inputs, outputs, widths, kind)


# --- providers --------------------------------------------------------------------------------


def tensorrt_wanted() -> bool:
    return os.environ.get(TENSORRT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def tensorrt_provider(path: Path, metadata: ArtifactMetadata | None) -> tuple[str, dict[str, str]]:
    """ONNX Runtime's TensorRT provider with its engine cached beside the artifact."""
    fp16 = metadata is not None and metadata.precision == Precision.FP16
    cache = path.with_name(path.name + ".ort-trt-cache")
    options = {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
        "trt_fp16_enable": "True" if fp16 else "False",
    }
    return TENSORRT_PROVIDER, options


def choose_providers(path: Path, metadata: ArtifactMetadata | None, available: list[str]) -> list:
    """CUDA then CPU; ONNX Runtime's TensorRT provider first only when DAV2_ORT_TENSORRT=1."""
    chosen: list = [p for p in PREFERRED_PROVIDERS if p in available]
    if tensorrt_wanted():
        if TENSORRT_PROVIDER not in available:
            raise Dav2Error(f"{TENSORRT_ENV}=1, but this ONNX Runtime has no TensorRT provider (onnxruntime-gpu)")
        chosen.insert(0, tensorrt_provider(path, metadata))
    return chosen


class OnnxRuntimeBackend(Backend):
    """`memory_arena=False` returns each run's memory to the system (a long-lived server that
    sees many input sizes, like dav2-app); the arena's default keeps it for speed."""

    name = "onnxruntime"

    def __init__(
        self,
        path: Path,
        metadata: ArtifactMetadata | None,
        providers: list[str] | None = None,
        threads: int = 0,
        memory_arena: bool = True,
    ):
        ort = optional.require("onnxruntime", "the onnxruntime backend")
        chosen = providers or choose_providers(path, metadata, ort.get_available_providers())
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.enable_cpu_mem_arena = memory_arena
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as exc:
            raise Dav2Error(f"{path} is not a loadable ONNX model ({error_reason(exc, 200)})") from exc
        facts = graph_facts(path, self.session)
        check_io(path, facts)
        metadata = metadata or with_graph_facts(metadata_from_graph(path, self.session), facts)
        check_graph(path, metadata, facts)
        super().__init__(path, metadata)
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
