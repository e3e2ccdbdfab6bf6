"""The one interface every backend implements, so that the run path never asks which runtime it drives.

A backend is opened on an artifact and needs nothing else: its typed metadata says what the
network expects. `infer` takes a preprocessed batch and returns depth at network resolution;
`last_timing` says how long the call spent where (milliseconds).

Backends hold native resources (inference sessions, compiled models, CUDA contexts and
buffers), so each is a context manager: `with open_backend(path) as backend: ...`, or call
`close()` when done. `close()` is idempotent.

A sidecar is a claim, not a proof: a file renamed, edited or copied beside the wrong graph would
otherwise mislabel every output (disparity read as metres) or fail deep inside the library. So
each backend that can see its graph describes it as `GraphFacts` when it opens (names, types
and shapes of the inputs and outputs, the patch-embedding width, the op that makes the output)
and `check_graph` compares them with the metadata, here, once for every backend. The facts
come from the graph's structure only (no inference), so the check costs milliseconds.
"""

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dav2 import processing
from dav2.errors import Dav2Error
from dav2.metadata import FLOAT_INPUT, UINT8_INPUT, ArtifactMetadata, sidecar_path
from dav2.vocabulary import PATCH_SIZE, ModelKind, encoder_from_embed_dim

# --- what a graph says about itself ---------------------------------------------------------

# ops that only move or relabel values: looked through when finding the op that makes the depth
PASS_THROUGH_OPS = frozenset(
    {"Squeeze", "Unsqueeze", "Reshape", "Identity", "Cast", "Convert", "Flatten", "QuantizeLinear",
     "DequantizeLinear", "FakeQuantize", "Result"}
)  # fmt: skip
SCALE_OPS = frozenset({"Mul", "Multiply"})


@dataclass(frozen=True)
class TensorFacts:
    """One graph input or output as the graph declares it."""

    names: tuple[str, ...]  # OpenVINO tensors may carry several names
    dtype: str  # numpy's spelling: float32, float16, int64, ...
    shape: tuple[int | None, ...] | None  # None per unknown dimension; None: unknown rank

    @property
    def label(self) -> str:
        dims = "?" if self.shape is None else "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{'/'.join(self.names) or '?'} {self.dtype} [{dims}]"


@dataclass(frozen=True)
class GraphFacts:
    """What the structure of a graph shows, read without running it."""

    inputs: tuple[TensorFacts, ...]
    outputs: tuple[TensorFacts, ...]
    embed_dims: frozenset[int] = frozenset()  # widths D of (D, 3, 14, 14) patch-embedding kernels
    kind: ModelKind | None = None  # from the op that makes the depth; None: not recognised

    @property
    def encoder(self) -> str | None:
        """vits/vitb/vitl/vitg when exactly one known patch-embedding width is in the graph."""
        found = {encoder_from_embed_dim(d) for d in self.embed_dims} - {None}
        return found.pop() if len(found) == 1 else None

    @property
    def input_format(self) -> str | None:
        """FLOAT_INPUT (float32 B,3,H,W), UINT8_INPUT (uint8 B,H,W,3: --input uint8), or None."""
        return input_format(self.inputs[0]) if self.inputs else None

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """(H, W) of a graph whose input sides are fixed numbers, else None (NCHW or NHWC)."""
        shape = self.inputs[0].shape if self.inputs else None
        if shape is None or len(shape) != 4:
            return None
        hw = shape[1:3] if self.input_format == UINT8_INPUT else shape[2:4]
        return None if None in hw else (hw[0], hw[1])


def input_format(image: TensorFacts) -> str | None:
    """Which of the two inputs dav2 can feed this tensor is, if either."""
    if image.shape is None or len(image.shape) != 4:
        return None
    if image.dtype == "float32" and image.shape[1] in (3, None):
        return FLOAT_INPUT
    if image.dtype == "uint8" and image.shape[3] in (3, None):
        return UINT8_INPUT
    return None


def is_patch_kernel(shape) -> bool:
    """(D, 3, 14, 14): the ViT's patch-embedding convolution, whose D is the embedding width."""
    return len(shape) == 4 and list(shape[1:]) == [3, PATCH_SIZE, PATCH_SIZE]


def kind_from_tail(op_of: Callable[[Any], tuple[str, list] | None], output: Any) -> ModelKind | None:
    """Relative or metric from the ops that make `output`: Relu for relative (disparity), a
    Sigmoid scaled by max_depth for metric. `op_of(x)` gives (op type, inputs) of the op that
    produces x, or None (x: a tensor name in ONNX, a node in OpenVINO). Shape-only and
    quantisation ops are looked through."""

    def producer(tensor: Any) -> tuple[str, list] | None:
        for _ in range(16):
            op = op_of(tensor)
            if op is None or op[0] not in PASS_THROUGH_OPS or not op[1]:
                return op
            tensor = op[1][0]
        return None

    op = producer(output)
    if op is None:
        return None
    if op[0] == "Relu":
        return ModelKind.RELATIVE
    if op[0] == "Sigmoid":
        return ModelKind.METRIC
    if op[0] in SCALE_OPS and any((producer(t) or ("",))[0] == "Sigmoid" for t in op[1]):
        return ModelKind.METRIC
    return None


# --- checking a graph against its metadata --------------------------------------------------

EXPECTED_IO = (
    "dav2 runs graphs with one float32 input (B, 3, H, W) or uint8 BGR input (B, H, W, 3) "
    "and one float32 output (B, H, W)"
)


def io_problems(facts: GraphFacts) -> list[str]:
    """Why this graph is not a depth network dav2 can feed (empty: it can)."""
    problems = []
    if len(facts.inputs) != 1:
        problems.append(f"{len(facts.inputs)} inputs ({', '.join(t.label for t in facts.inputs)})")
    if len(facts.outputs) != 1:
        problems.append(f"{len(facts.outputs)} outputs ({', '.join(t.label for t in facts.outputs)})")
    if problems:
        return problems
    image, depth = facts.inputs[0], facts.outputs[0]
    if input_format(image) is None:
        problems.append(f"input {image.label}")
    if depth.dtype != "float32" or (depth.shape is not None and len(depth.shape) != 3):
        problems.append(f"output {depth.label}")
    return problems


def sidecar_problems(facts: GraphFacts, metadata: ArtifactMetadata) -> list[str]:
    """Where the sidecar's claims contradict the graph (empty: none that can be seen)."""
    problems = []
    image, depth = facts.inputs[0], facts.outputs[0]
    if metadata.input_name not in image.names:
        problems.append(f"it names the input {metadata.input_name!r}, the graph's is {image.label}")
    if metadata.output_name not in depth.names:
        problems.append(f"it names the output {metadata.output_name!r}, the graph's is {depth.label}")
    if facts.input_format != metadata.input_format:
        problems.append(f"it says the input is {metadata.input_format}, the graph's is {image.label}")
        return problems
    graph_hw = facts.fixed_hw
    if metadata.camera_hw is not None:
        if graph_hw != tuple(metadata.camera_hw):
            camera = "x".join(map(str, metadata.camera_hw))
            problems.append(f"it says {camera} camera frames, the graph takes {image.label}")
    elif graph_hw is not None and metadata.fixed_hw is None:
        problems.append(f"it says dynamic, the graph takes only {graph_hw[0]}x{graph_hw[1]}")
    elif graph_hw is not None and metadata.fixed_hw != graph_hw:
        problems.append(f"it says {metadata.shape_label}, the graph takes {graph_hw[0]}x{graph_hw[1]}")
    encoder = facts.encoder
    if metadata.encoder is not None and encoder is not None and encoder != metadata.encoder:
        problems.append(f"it says {metadata.encoder}, the graph is a {encoder} (embedding width)")
    if facts.kind is not None and facts.kind != metadata.kind:
        problems.append(f"it says {metadata.kind}, the graph's output is {facts.kind} ({graph_tail(facts.kind)})")
    return problems


def graph_tail(kind: ModelKind) -> str:
    return "Sigmoid x max_depth: metres" if kind == ModelKind.METRIC else "Relu: disparity"


def check_io(path: Path, facts: GraphFacts) -> None:
    """Raise one Dav2Error when the graph is not a depth network dav2 can feed."""
    problems = io_problems(facts)
    if problems:
        raise Dav2Error(f"{path.name} is not a Depth Anything V2 graph: it has {'; '.join(problems)}; {EXPECTED_IO}")


def check_graph(path: Path, metadata: ArtifactMetadata, facts: GraphFacts) -> None:
    """Raise one Dav2Error when the graph is not a depth network dav2 can feed, or when its
    sidecar claims what the graph contradicts (encoder, relative/metric, input shape, names)."""
    check_io(path, facts)
    if not metadata.from_sidecar:
        return
    problems = sidecar_problems(facts, metadata)
    if problems:
        raise Dav2Error(
            f"{sidecar_path(path).name} does not describe {path.name}: {'; '.join(problems)}; "
            "re-export the artifact (or restore its own sidecar)"
        )


def with_graph_facts(metadata: ArtifactMetadata, facts: GraphFacts) -> ArtifactMetadata:
    """Metadata guessed for a graph without a sidecar, completed with what its graph shows."""
    if metadata.from_sidecar:
        return metadata
    metadata.encoder = metadata.encoder or facts.encoder
    if facts.input_format == UINT8_INPUT:  # a uint8 graph made elsewhere: it takes frames of its own size
        metadata.input_format = UINT8_INPUT
        metadata.dynamic, metadata.input_shape = True, None
        metadata.camera_hw = list(facts.fixed_hw) if facts.fixed_hw else None
    if facts.kind is not None:
        metadata.kind = facts.kind
    return metadata


# --- library errors -------------------------------------------------------------------------

# "Exception from src/inference/src/cpp/core.cpp:84:", "Check 'x' failed at src/.../file.cpp:887:"
_SOURCE_LOCATION = re.compile(r"^(Exception from |Check .* failed at )?\S*\.(c|cc|cpp|cxx|h|hpp)(:\d+)*:?$")


def error_reason(exc: BaseException, limit: int = 240) -> str:
    """The informative part of a native library's exception, on one line.

    OpenVINO puts one "Exception from <file>:<line>:" header per C++ frame before the cause
    ("bin file cannot be found!"); the headers say nothing to a user, the cause is what matters.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    informative = [line for line in lines if not _SOURCE_LOCATION.match(line)]
    text = " ".join(informative or lines[-1:]) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


class Backend(ABC):
    name: str = "backend"

    def __init__(self, path: Path, metadata: ArtifactMetadata):
        self.path = path
        self.metadata = metadata
        self.last_timing: dict[str, float] = {}

    # --- lifecycle ------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release the backend's native resources; safe to call twice."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- what the artifact expects --------------------------------------------------------

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """(H, W) the artifact requires, or None when it takes any multiple of 14."""
        return self.metadata.fixed_hw

    @property
    def default_input_size(self) -> int:
        """Short side used for dynamic artifacts when --input-size is not given."""
        return self.metadata.default_input_size

    @property
    def kind(self) -> str:
        return self.metadata.kind

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 normalised RGB -> (B, H, W) float32 depth; artifacts exported
        with --input uint8 take (B, H, W, 3) uint8 BGR frames instead (metadata.input_format)."""

    def predict(self, bgr_image: np.ndarray, input_size: int | None = None) -> np.ndarray:
        """Depth at the image's own resolution (upstream's infer_image): the shared
        preprocessing, one forward, the shared postprocessing."""
        if self.metadata.takes_uint8:  # the graph normalises: pass the frame's bytes
            from dav2.runtime.feed import predictor

            return predictor(self, input_size)(bgr_image)
        tensor = processing.preprocess(bgr_image, input_size or self.default_input_size, self.fixed_hw)
        return processing.postprocess(self.infer(tensor), bgr_image.shape[:2])

    def describe(self) -> str:
        encoder = self.metadata.encoder or "?"
        precision = self.metadata.precision or "?"
        return f"{self.name} | {self.path.name} | {encoder} {self.kind} {precision} {self.metadata.shape_label}"
