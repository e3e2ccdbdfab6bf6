"""Frames -> the backend's input tensor, with as little host work as the artifact allows.

Three ways, chosen once per run from the artifact's sidecar:

- `exact`: processing.preprocess, float64 arithmetic, bit-equal with upstream's input tensor
  (dav2-run --preprocess exact; the library default for callers that compare bytes);
- `float32`: processing.FastPreprocessor, the same steps in float32 into reused buffers
  (within the conformance tolerances; several times faster: benchmarks/results/realtime_host_cpu2.md);
- `uint8`: the artifact normalises itself (`dav2-export --input uint8`), so the host passes
  the frame's own bytes as (1, H, W, 3). When the graph also resizes (`--camera-size`) frames
  of that size are passed without a copy; otherwise the host resizes the uint8 frame to the
  network size (OpenCV INTER_CUBIC on uint8, whose overshoot is clipped: see docs/runtime.md).

What decides the way is a `FeedSpec` (input size, preprocessing, the artifact's fixed shape and
input format): a small picklable record, so dav2-batch's decode tasks, which never open the
model, make the same tensors as dav2-run's capture stage (`Feeder.from_spec`).

Float tensors go through a small pool: the inference stage gives each tensor back after the
call, so a video reuses a handful of buffers instead of allocating one per frame. A tensor
that is never given back (a live frame dropped by the latest-frame mailbox) is simply
collected; the pool never holds more than POOL_SIZE.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from dav2 import console, processing
from dav2.errors import Dav2Error

POOL_SIZE = 8
PREPROCESSING = ("float32", "exact")


class BufferPool:
    """Float input buffers handed out by the capture stage and given back after inference."""

    def __init__(self, size: int = POOL_SIZE):
        self.size = size
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """A free buffer of `shape`, or None (the caller then allocates)."""
        with self._lock:
            for index, buffer in enumerate(self._free):
                if buffer.shape == shape:
                    return self._free.pop(index)
        return None

    def give(self, buffer: np.ndarray) -> None:
        with self._lock:
            if len(self._free) < self.size:
                self._free.append(buffer)


@dataclass(frozen=True)
class FeedSpec:
    """Everything that decides a frame's input tensor, taken from the backend once.

    Picklable on purpose: dav2-batch sends it to decode tasks that never open the model."""

    input_size: int  # short side for a dynamic artifact
    preprocessing: str = "exact"  # PREPROCESSING; ignored by uint8 artifacts
    fixed_hw: tuple[int, int] | None = None  # a static artifact's (H, W)
    takes_uint8: bool = False  # `dav2-export --input uint8`: the graph normalises itself
    camera_hw: tuple[int, int] | None = None  # uint8 graphs that also resize: the frames they take

    def __post_init__(self) -> None:
        if self.preprocessing not in PREPROCESSING:
            raise Dav2Error(f"unknown preprocessing {self.preprocessing!r}; choose one of {', '.join(PREPROCESSING)}")

    @classmethod
    def of(cls, backend, input_size: int, preprocessing: str = "float32") -> "FeedSpec":
        """The spec for `backend` (its sidecar says whether it takes uint8 bytes)."""
        metadata = getattr(backend, "metadata", None)  # stand-ins in tests and callers may have none
        uint8 = bool(metadata is not None and metadata.takes_uint8)
        camera = tuple(metadata.camera_hw) if uint8 and metadata.camera_hw else None
        fixed = tuple(backend.fixed_hw) if backend.fixed_hw is not None else None
        return cls(input_size, preprocessing, fixed, uint8, camera)

    @property
    def mode(self) -> str:
        """What the host does: "uint8" (the frame's bytes), "exact" or "float32"."""
        return "uint8" if self.takes_uint8 else self.preprocessing


class Feeder:
    """Makes the backend's input for one frame; `give_back` returns a float tensor to the pool."""

    def __init__(self, backend, input_size: int, preprocessing: str = "float32"):
        self._setup(FeedSpec.of(backend, input_size, preprocessing))

    @classmethod
    def from_spec(cls, spec: FeedSpec) -> "Feeder":
        """A feeder without a backend (dav2-batch's decode tasks)."""
        feeder = cls.__new__(cls)
        feeder._setup(spec)
        return feeder

    def _setup(self, spec: FeedSpec) -> None:
        self.spec = spec
        self.fixed_hw = spec.fixed_hw
        self.input_size = spec.input_size
        self.uint8 = spec.takes_uint8
        self.camera_hw = spec.camera_hw
        self.mode = spec.mode
        self.pool = BufferPool()
        self._fast = processing.FastPreprocessor()
        self._warned_size = False

    def network_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        return self.fixed_hw or processing.network_size(image_hw, self.input_size)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.uint8:
            return self.bytes_for(image)
        if self.mode == "exact":
            return processing.preprocess(image, self.input_size, self.fixed_hw)
        shape = (1, 3, *self.network_hw(image.shape[:2]))
        return self._fast(image, self.input_size, self.fixed_hw, out=self.pool.take(shape))

    def bytes_for(self, image: np.ndarray) -> np.ndarray:
        """(1, H, W, 3) uint8: the frame itself when the graph takes its size, else resized."""
        target = self.camera_hw or self.network_hw(image.shape[:2])
        if tuple(image.shape[:2]) != target:
            self.warn_resize(image.shape[:2], target)
            image = cv2.resize(image, (target[1], target[0]), interpolation=cv2.INTER_CUBIC)
        return np.ascontiguousarray(image)[None]

    def warn_resize(self, image_hw: tuple[int, int], target: tuple[int, int]) -> None:
        if self.camera_hw is None or self._warned_size:
            return
        self._warned_size = True
        console.warn(
            f"the model resizes {target[1]}x{target[0]} frames itself (--camera-size at export); "
            f"{image_hw[1]}x{image_hw[0]} frames are resized to that on the host first"
        )

    def give_back(self, tensor: np.ndarray, result: np.ndarray | None = None) -> None:
        """Return a float tensor after inference (uint8 frames belong to the source); kept
        out of the pool when the backend's `result` is a view of it."""
        if self.mode != "float32" or tensor.dtype != np.float32:
            return
        if result is not None and np.may_share_memory(tensor, result):
            return
        self.pool.give(tensor)


def predictor(backend, input_size: int | None = None, preprocessing: str = "exact") -> Callable:
    """`image -> depth at the image's size` with the backend's own input format (evaluation, bench)."""
    feed = Feeder(backend, input_size or backend.default_input_size, preprocessing)

    def predict(image: np.ndarray) -> np.ndarray:
        tensor = feed(image)
        depth = backend.infer(tensor)
        feed.give_back(tensor, depth)
        return processing.postprocess(depth, image.shape[:2])

    return predict
