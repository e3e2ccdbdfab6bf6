"""The one interface every backend implements (DESIGN rule 4).

A backend is opened on an artifact and needs nothing else: its metadata sidecar says what
the network expects. `infer` takes a preprocessed batch and returns depth at network
resolution; `last_timing` says how long the call spent where (milliseconds).
"""

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from dav2 import processing


class Backend(ABC):
    name: str = "backend"

    def __init__(self, path: Path, metadata: dict):
        self.path = path
        self.metadata = metadata
        self.last_timing: dict[str, float] = {}

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        """(H, W) the artifact requires, or None when it takes any multiple of 14."""
        if self.metadata.get("dynamic"):
            return None
        shape = self.metadata.get("input_shape")
        return (int(shape[2]), int(shape[3])) if shape else None

    @property
    def default_input_size(self) -> int:
        """Short side used for dynamic artifacts when --input-size is not given."""
        traced = self.metadata.get("traced_hw") or [518, 518]
        return int(min(traced))

    @property
    def kind(self) -> str:
        return self.metadata.get("kind", "relative")

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, H, W) float32 normalised RGB -> (B, H, W) float32 depth."""

    def predict(self, bgr_image: np.ndarray, input_size: int | None = None) -> np.ndarray:
        """Depth at the image's own resolution (upstream's infer_image): the shared
        preprocessing, one forward, the shared postprocessing."""
        tensor = processing.preprocess(bgr_image, input_size or self.default_input_size, self.fixed_hw)
        return processing.postprocess(self.infer(tensor), bgr_image.shape[:2])

    def describe(self) -> str:
        shape = "dynamic" if self.fixed_hw is None else f"{self.fixed_hw[0]}x{self.fixed_hw[1]}"
        encoder = self.metadata.get("encoder", "?")
        precision = self.metadata.get("precision", "?")
        return f"{self.name} | {self.path.name} | {encoder} {self.kind} {precision} {shape}"
