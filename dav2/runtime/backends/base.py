"""The one interface every backend implements (DESIGN rule 4).

A backend is opened on an artifact and needs nothing else: its typed metadata says what the
network expects. `infer` takes a preprocessed batch and returns depth at network resolution;
`last_timing` says how long the call spent where (milliseconds).

Backends hold native resources (inference sessions, compiled models, CUDA contexts and
buffers), so each is a context manager: `with open_backend(path) as backend: ...`, or call
`close()` when done. `close()` is idempotent.
"""

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from dav2 import processing
from dav2.metadata import ArtifactMetadata


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
        """(B, 3, H, W) float32 normalised RGB -> (B, H, W) float32 depth."""

    def predict(self, bgr_image: np.ndarray, input_size: int | None = None) -> np.ndarray:
        """Depth at the image's own resolution (upstream's infer_image): the shared
        preprocessing, one forward, the shared postprocessing."""
        tensor = processing.preprocess(bgr_image, input_size or self.default_input_size, self.fixed_hw)
        return processing.postprocess(self.infer(tensor), bgr_image.shape[:2])

    def describe(self) -> str:
        encoder = self.metadata.encoder or "?"
        precision = self.metadata.precision or "?"
        return f"{self.name} | {self.path.name} | {encoder} {self.kind} {precision} {self.metadata.shape_label}"
