"""The calibration image set every INT8 path shares.

A folder of images or a video is turned into a reproducible list of pictures: the candidates
are shuffled with a seed, the first `holdout` are kept aside for the accuracy report (they are
never calibrated on), the next `validation` are the images accuracy-controlled INT8 tunes its
layer choice on (kept apart from both, so the report's numbers are not the ones it optimised),
and the next `count` are the calibration images. Every picture goes
through the shared preprocessing (processing.preprocess) at the artifact's input size, so the
quantizer sees exactly the tensors the runtime will feed.

Images past the limits of dav2.media.ImageLimits (decoded pixels, aspect ratio; checked from
the header before decoding), unreadable files (permission) and files that do not decode are
skipped with a warning each: one bad picture does not end an INT8 export.

`identity()` is what goes into the artifact's metadata: where the images came from, which
ones, how many, the seed, and a hash over their bytes, so two INT8 artifacts can be told apart
and a calibration cache is only reused for the same images.
"""

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.media import DEFAULT_LIMITS, ImageLimits, ImageRejected, header_size, is_video, read_image, scan_folder

DEFAULT_COUNT = 32
DEFAULT_HOLDOUT = 4
DEFAULT_SEED = 0
DEFAULT_VALIDATION = 4  # accuracy-controlled INT8 only


@dataclass
class Picture:
    name: str  # file name relative to the folder, or "frame_000123" for a video
    digest: str  # sha256 of the file (folder) or of the decoded frame (video)
    image: np.ndarray | None = None  # BGR uint8, kept for video frames only


class CalibrationSet:
    """Calibration and held-out pictures drawn from a folder or a video."""

    def __init__(
        self,
        source: str | Path,
        input_hw: tuple[int, int],
        count: int = DEFAULT_COUNT,
        holdout: int = DEFAULT_HOLDOUT,
        seed: int = DEFAULT_SEED,
        limits: ImageLimits = DEFAULT_LIMITS,
        validation: int = 0,
    ):
        self.limits = limits
        if count < 1:
            raise Dav2Error("--calib-count must be at least 1")
        if holdout < 0 or validation < 0:
            raise Dav2Error("the numbers of held-out and validation images cannot be negative")
        self.source = Path(source)
        self.input_hw = input_hw
        self.seed = seed
        candidates = self._candidates(count + holdout + validation)
        if len(candidates) < 2:
            raise Dav2Error(f"{self.source} has {len(candidates)} usable image(s); calibration needs at least 2")
        random.Random(seed).shuffle(candidates)
        # keep at least one picture for calibration when the set is small
        holdout = min(holdout, len(candidates) - 1)
        validation = min(validation, len(candidates) - 1 - holdout)
        self.holdout = candidates[:holdout]
        self.validation = candidates[holdout : holdout + validation]
        self.pictures = candidates[holdout + validation : holdout + validation + count]

    # -- where the pictures come from --------------------------------------------------------

    def _candidates(self, wanted: int) -> list[Picture]:
        if self.source.is_dir():
            return self._folder_pictures()
        if self.source.is_file() and is_video(self.source):
            return self._video_pictures(wanted)
        if not self.source.exists():
            raise Dav2Error(f"calibration source not found: {self.source}")
        raise Dav2Error(f"calibration source {self.source} is neither a folder of images nor a video")

    def _folder_pictures(self) -> list[Picture]:
        scan = scan_folder(self.source)
        pictures = []
        for path in scan.files:
            data = self._usable_bytes(path)
            if data is not None:
                pictures.append(Picture(scan.relative(path), hashlib.sha256(data).hexdigest()))
        return pictures

    def _usable_bytes(self, path: Path) -> bytes | None:
        """The file's bytes when it is an image within the limits; None, with a warning, when not."""
        try:
            data = path.read_bytes()
            size = header_size(data)
            if size is not None:
                self.limits.check(*size, str(path))
            # decode once to leave out files that are not images after all
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
            if image is not None:
                self.limits.check(image.shape[1], image.shape[0], str(path))
        except OSError as exc:
            console.warn(f"skipping calibration image {path}: {exc.strerror or exc}")
            return None
        except cv2.error:
            image = None
        except ImageRejected as exc:
            console.warn(f"skipping calibration image: {exc}")
            return None
        if image is None:
            console.warn(f"skipping calibration image {path}: not a readable image")
            return None
        return data

    def _video_pictures(self, wanted: int) -> list[Picture]:
        """`wanted` frames spread evenly over the video (neighbouring frames are near-duplicates)."""
        capture = cv2.VideoCapture(str(self.source))
        if not capture.isOpened():
            raise Dav2Error(f"cannot open calibration video {self.source}")
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:
            capture.release()
            raise Dav2Error(f"calibration video {self.source} reports no frames")
        indices = sorted({int(i) for i in np.linspace(0, total - 1, num=min(wanted, total))})
        pictures = []
        for index in indices:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, image = capture.read()
            if ok and image is not None:
                digest = hashlib.sha256(image.tobytes()).hexdigest()
                pictures.append(Picture(f"frame_{index:06d}", digest, image))
        capture.release()
        return pictures

    # -- what the quantizers read ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.pictures)

    def load(self, picture: Picture) -> np.ndarray:
        """The BGR image of one picture."""
        if picture.image is not None:
            return picture.image
        image = read_image(self.source / picture.name, self.limits)
        if image is None:
            raise Dav2Error(f"cannot read calibration image {self.source / picture.name}")
        return image

    def tensors(self, input_hw: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        """(1, 3, H, W) float32 network inputs, one per calibration picture, in set order,
        at `input_hw` (default: the set's own input size)."""
        for picture in self.pictures:
            yield processing.preprocess(self.load(picture), fixed_hw=input_hw or self.input_hw)

    def batches(self, batch_size: int, input_hw: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        """(batch_size, 3, H, W) contiguous float32 batches; a last incomplete batch is dropped,
        because an engine's calibration profile has one fixed batch size."""
        if batch_size < 1:
            raise Dav2Error("the calibration batch size must be at least 1")
        pending = []
        for tensor in self.tensors(input_hw):
            pending.append(tensor)
            if len(pending) == batch_size:
                yield np.ascontiguousarray(np.concatenate(pending, axis=0))
                pending = []

    def validation_tensors(self, input_hw: tuple[int, int] | None = None) -> list[np.ndarray]:
        """Network inputs of the validation pictures (accuracy-controlled INT8), in set order."""
        return [processing.preprocess(self.load(p), fixed_hw=input_hw or self.input_hw) for p in self.validation]

    def holdout_images(self) -> list[tuple[str, np.ndarray]]:
        """(name, BGR image) of the held-out pictures, for the accuracy report."""
        return [(picture.name, self.load(picture)) for picture in self.holdout]

    def identity(self) -> dict:
        """What the artifact's metadata records about its calibration."""
        digest = hashlib.sha256()
        for picture in self.pictures:
            digest.update(f"{picture.name}\0{picture.digest}\n".encode())
        return {
            "source": str(self.source),
            "kind": "folder" if self.source.is_dir() else "video",
            "count": len(self.pictures),
            "seed": self.seed,
            "input_hw": list(self.input_hw),
            "files": [picture.name for picture in self.pictures],
            "holdout": [picture.name for picture in self.holdout],
            "validation": [picture.name for picture in self.validation],
            "sha256": digest.hexdigest(),
        }
