"""LiteRT backend: a .tflite model in the ai-edge-litert interpreter (XNNPACK on x86 and ARM).

This is what runs on a Raspberry Pi or any Linux/ARM board with Python (`pip install
'dav2[litert]'`, the interpreter alone, no PyTorch); on Android the same .tflite runs in the
LiteRT runtime of the app (docs/litert.md).

A full-integer INT8 model takes and returns int8 tensors with a scale and zero point; the
backend quantizes the normalised float input and dequantizes the output itself, so every
LiteRT artifact takes the same (1, 3, H, W) float32 tensor as every other backend. LiteRT
models are fixed-size: the sidecar's input shape is compared with the model's before the
first frame (`base.check_graph`), with the encoder read from the patch-embedding kernel among
the model's tensors (LiteRT stores it (D, 14, 14, 3)).
"""

import time
from pathlib import Path

import numpy as np

from dav2 import optional
from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata
from dav2.runtime.backends.base import Backend, GraphFacts, TensorFacts, check_graph, check_io, error_reason
from dav2.vocabulary import INPUT_NAME, OUTPUT_NAME, PATCH_SIZE, ArtifactFormat, ModelKind

QUANTIZED = (np.int8, np.uint8, np.int16)


def is_patch_kernel_ohwi(shape) -> bool:
    """(D, 14, 14, 3): the patch-embedding convolution as LiteRT lays it out."""
    return len(shape) == 4 and list(shape[1:]) == [PATCH_SIZE, PATCH_SIZE, 3]


def tensor_facts(detail: dict, signature_name: str | None) -> TensorFacts:
    """One input/output as dav2 sees it: float32 even where the model is int8 (the backend
    converts), named by the model's signature (`image`, `depth`) and by its tensor name."""
    dtype = "float32" if detail["dtype"] in QUANTIZED else np.dtype(detail["dtype"]).name
    names = (signature_name, detail["name"]) if signature_name else (detail["name"],)
    return TensorFacts(names, dtype, tuple(int(d) for d in detail["shape"]))


def signature_names(interpreter) -> tuple[list[str], list[str]]:
    """(input names, output names) of the model's one signature; empty without one."""
    signatures = list(interpreter.get_signature_list().values())
    if len(signatures) != 1:
        return [], []
    return list(signatures[0]["inputs"]), list(signatures[0]["outputs"])


def graph_facts(interpreter) -> GraphFacts:
    """Inputs, outputs and patch-embedding widths of a loaded interpreter, without running it."""
    input_names, output_names = signature_names(interpreter)
    input_details, output_details = interpreter.get_input_details(), interpreter.get_output_details()
    if len(input_names) != len(input_details) or len(output_names) != len(output_details):
        input_names, output_names = [None] * len(input_details), [None] * len(output_details)
    inputs = tuple(tensor_facts(d, n) for d, n in zip(input_details, input_names))
    outputs = tuple(tensor_facts(d, n) for d, n in zip(output_details, output_names))
    widths = frozenset(int(d["shape"][0]) for d in interpreter.get_tensor_details() if is_patch_kernel_ohwi(d["shape"]))
    return GraphFacts(inputs, outputs, widths)


def metadata_from_model(path: Path, facts: GraphFacts) -> ArtifactMetadata:
    """Best-effort metadata for a .tflite that came without a dav2 sidecar (fixed size)."""
    shape = facts.inputs[0].shape if facts.inputs else None
    return ArtifactMetadata(
        artifact=path.name,
        format=ArtifactFormat.LITERT,
        encoder=facts.encoder,
        kind=ModelKind.RELATIVE,
        precision=None,
        dynamic=False,
        input_shape=list(shape) if shape and len(shape) == 4 else None,
        input_name=facts.inputs[0].names[0] if facts.inputs else INPUT_NAME,
        output_name=facts.outputs[0].names[0] if facts.outputs else OUTPUT_NAME,
        from_sidecar=False,
    )


def quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """float -> the model's integer input, with its scale and zero point."""
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(values / scale) + zero, info.min, info.max).astype(detail["dtype"])


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)


class LiteRtBackend(Backend):
    """`threads` is the interpreter's thread count (0: LiteRT's default)."""

    name = "litert"
    fixed_size_only = True  # no dynamic export exists: the stretch warning advises a size of the frames' shape

    def __init__(self, path: Path, metadata: ArtifactMetadata | None, threads: int = 0):
        litert = optional.require("ai_edge_litert.interpreter", "the litert backend")
        try:
            self.interpreter = litert.Interpreter(model_path=str(path), num_threads=threads or None)
            self.interpreter.allocate_tensors()
        except Exception as exc:  # the interpreter raises ValueError/RuntimeError with C++ text
            raise Dav2Error(f"{path} is not a loadable LiteRT model ({error_reason(exc, 200)})") from exc
        facts = graph_facts(self.interpreter)
        check_io(path, facts)
        metadata = metadata or metadata_from_model(path, facts)
        check_graph(path, metadata, facts)
        super().__init__(path, metadata)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.threads = threads

    def infer(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        expected = tuple(self.input["shape"])
        if batch.shape != expected:
            raise Dav2Error(f"{self.path.name} takes {expected} only (LiteRT models are fixed-size), not {batch.shape}")
        feed = quantize(batch, self.input) if self.input["dtype"] in QUANTIZED else batch
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(feed))
        self.interpreter.invoke()
        depth = self.interpreter.get_tensor(self.output["index"])
        depth = dequantize(depth, self.output) if self.output["dtype"] in QUANTIZED else depth.copy()
        self.last_timing = {"infer_ms": (time.perf_counter() - start) * 1000.0}
        return depth

    def close(self) -> None:
        self.interpreter = None

    def describe(self) -> str:
        threads = self.threads or "default"
        return f"{super().describe()} | XNNPACK, {threads} threads"
