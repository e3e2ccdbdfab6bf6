"""A model as a function from an image path to depth at a given size, for the evaluators."""

from pathlib import Path

import cv2
import numpy as np

from dav2.errors import Dav2Error
from dav2.media import read_image
from dav2.runtime.backends import open_backend


class ModelPredictor:
    """Runs an artifact (any backend) on images below a folder; remembers its kind.

    It opens its backend, so it owns it: use it as `with ModelPredictor(...) as predict:` (or
    call `close()`), so sessions, compiled models and GPU memory are released when done.
    """

    def __init__(self, model: str | Path, images: str | Path, input_size: int | None = None, threads: int = 0):
        self.backend = open_backend(model, threads=threads)
        self.kind = self.backend.kind
        self.images = Path(images)
        self.input_size = input_size

    def __call__(self, image: str, out_hw: tuple[int, int] | None = None) -> np.ndarray:
        """Depth (disparity or metres) at the image's resolution, or resized to `out_hw`."""
        bgr = read_image(self.images / image)
        if bgr is None:
            raise Dav2Error(f"cannot read image {self.images / image}")
        depth = self.backend.predict(bgr, self.input_size)
        if out_hw is not None and depth.shape != tuple(out_hw):
            depth = cv2.resize(depth, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR)
        return depth

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> "ModelPredictor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
