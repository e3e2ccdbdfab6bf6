"""The work done inside Ray: decode + preprocess, inference, postprocess + write.

Each stage is a plain function (or, for inference, a class) over one batch, a dict of columns
as Ray Data hands it over, so it can be tested and reasoned about without Ray. A row that fails
(a corrupt or unreadable file, an image past a limit, a write that the disk refuses) is marked
`failed` with the error and travels on to the manifest: one bad input never ends the job.

Decoding and preprocessing (`decode_batch`) run as CPU tasks apart from inference, so an
accelerator is not kept waiting on JPEG decoding; the actors (`InferenceActor`) hold one opened
backend each for their whole life; postprocessing and writing (`write_batch`) run as CPU tasks
again. Images at a URI are read as bytes through pyarrow (storage.py) and decoded under the
same limits as a file; outputs at a URI are written as whole objects (outputs.py).

Tensors are made by dav2-run's own feeder (dav2.runtime.feed.Feeder, from the artifact's
FeedSpec), so an artifact that takes uint8 frames (`dav2-export --input uint8`) gets its
bytes here as it does in dav2-run, and a float artifact gets the exact float64 preprocessing
dav2-run gives images and folders. They travel between stages as raw bytes with their dtype
and size in columns, which Ray's object store carries without conversion whatever the image
sizes; the network's output size is recorded from the depth itself.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dav2 import processing
from dav2.batch import storage
from dav2.batch.inputs import IMAGE_FRAME, regular_file_problem
from dav2.batch.manifest import FAILED, OK
from dav2.batch.outputs import PictureWriter, RemotePictureWriter, shard_path, write_shard
from dav2.batch.storage import Remote
from dav2.errors import Dav2Error
from dav2.media import ImageLimits, ImageRejected, decode_image, read_image
from dav2.metadata import MetricCalibration
from dav2.runtime.backends.base import error_reason
from dav2.runtime.feed import Feeder, FeedSpec
from dav2.runtime.session import StoredCalibration

Row = dict
UNREADABLE = "not a readable image (empty, corrupt or not an image)"


# --- columns <-> rows -------------------------------------------------------------------------


def rows_of(batch: dict[str, np.ndarray]) -> list[Row]:
    columns = list(batch)
    count = len(batch[columns[0]]) if columns else 0
    return [{column: plain(batch[column][i]) for column in columns} for i in range(count)]


def plain(value):
    """numpy scalars as Python values (np.str_ -> str, np.int64 -> int)."""
    return value.item() if isinstance(value, np.generic) else value


def batch_of(rows: list[Row], columns: list[str]) -> dict[str, np.ndarray]:
    return {column: column_array([row.get(column) for row in rows]) for column in columns}


def column_array(values: list) -> np.ndarray:
    """Text and bytes as object arrays (numpy would pad them to fixed width), numbers as numbers."""
    if values and isinstance(values[0], (str, bytes)):
        return np.array(values, dtype=object)
    return np.array(values)


def fail(row: Row, error: str) -> Row:
    row.update(status=FAILED, error=error)
    return row


# --- stage 1: decode and preprocess (CPU tasks) -----------------------------------------------

TENSOR_COLUMNS = ["tensor", "tensor_dtype", "tensor_height", "tensor_width"]  # decode -> inference only
DECODED_COLUMNS = [
    "source", "frame", "name", "status", "error", "image_width", "image_height",
    "network_width", "network_height", *TENSOR_COLUMNS, "seconds",
]  # fmt: skip
BATCH_PREPROCESSING = "exact"  # dav2-run's choice for images and folders (bit-equal with upstream)


@dataclass(frozen=True)
class DecodeSettings:
    feed: FeedSpec  # how dav2-run's feeder makes this artifact's input (FeedSpec.of its backend)
    max_tokens: int
    limits: ImageLimits
    filesystems: tuple[tuple[str, str], ...] = ()  # (root, filesystem URI) of URI sources: storage.from_uri


def decode_batch(batch: dict[str, np.ndarray], settings: DecodeSettings) -> dict[str, np.ndarray]:
    """Items -> network inputs (or failed rows), as dav2-run's capture stage prepares frames."""
    rows = [
        {**row, "status": OK, "error": "", "image_width": 0, "image_height": 0, "network_width": 0,
         "network_height": 0, "tensor": b"", "tensor_dtype": "", "tensor_height": 0, "tensor_width": 0,
         "seconds": 0.0}
        for row in rows_of(batch)
    ]  # fmt: skip
    feed = Feeder.from_spec(settings.feed)
    for row, (image, error, seconds) in zip(rows, read_pictures(rows, settings.limits, dict(settings.filesystems))):
        start = time.perf_counter()
        if image is None:
            fail(row, error)
        else:
            prepare(row, image, feed, settings.max_tokens)
        row["seconds"] = seconds + time.perf_counter() - start
    return batch_of(rows, DECODED_COLUMNS)


def prepare(row: Row, image: np.ndarray, feed: Feeder, max_tokens: int) -> None:
    """dav2-run's feeder on one image, after the token limit for dynamic artifacts."""
    height, width = image.shape[:2]
    row.update(image_width=width, image_height=height)
    try:
        if feed.fixed_hw is None:
            processing.check_tokens((height, width), feed.input_size, max_tokens, what=row["source"])
        tensor = feed(image)
    except Dav2Error as exc:
        fail(row, str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - an input that breaks OpenCV is one failed row
        fail(row, f"cannot preprocess {row['source']}: {error_reason(exc)}")
        return
    tensor_hw = tensor.shape[1:3] if tensor.dtype == np.uint8 else tensor.shape[2:4]  # NHWC bytes, NCHW floats
    row.update(
        tensor=np.ascontiguousarray(tensor).tobytes(),
        tensor_dtype=tensor.dtype.name,
        tensor_height=tensor_hw[0],
        tensor_width=tensor_hw[1],
    )


def tensor_of(row: Row) -> np.ndarray:
    """The feeder's tensor back from a row: (1, H, W, 3) uint8 frames, (1, 3, H, W) float32 otherwise."""
    dtype = np.dtype(row.pop("tensor_dtype"))
    height, width = row.pop("tensor_height"), row.pop("tensor_width")
    shape = (1, height, width, 3) if dtype == np.uint8 else (1, 3, height, width)
    return np.frombuffer(row.pop("tensor"), dtype=dtype).reshape(shape)


def read_pictures(
    rows: list[Row], limits: ImageLimits, filesystems: dict[str, str] | None = None
) -> Iterator[tuple[np.ndarray | None, str, float]]:
    """(BGR image or None, why not, seconds) per row: images read alone, each video opened once."""
    videos: dict[str, VideoReader] = {}
    try:
        for row in rows:
            start = time.perf_counter()
            if row["frame"] == IMAGE_FRAME and storage.is_uri(row["source"]):
                image, error = read_remote_image(row["source"], filesystems or {}, limits)
            elif row["frame"] == IMAGE_FRAME:
                image, error = read_one_image(row["source"], limits)
            else:
                reader = videos.get(row["source"]) or videos.setdefault(row["source"], VideoReader(row["source"]))
                image, error = reader.frame(row["frame"], limits)
            yield image, error, time.perf_counter() - start
    finally:
        for reader in videos.values():
            reader.close()


def read_one_image(source: str, limits: ImageLimits) -> tuple[np.ndarray | None, str]:
    try:
        image = read_image(source, limits)
    except ImageRejected as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, the job goes on
        return None, f"cannot read {source}: {error_reason(exc)}"
    return (image, "") if image is not None else (None, f"{source}: {UNREADABLE}")


def read_remote_image(source: str, filesystems: dict[str, str], limits: ImageLimits) -> tuple[np.ndarray | None, str]:
    """An image object's bytes through pyarrow, decoded as read_one_image decodes a file."""
    try:
        image = decode_image(storage.read_bytes(storage.from_uri(source, filesystems)), source, limits)
    except Dav2Error as exc:  # unreachable, missing, refused by a limit
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever the decoder raises, the job goes on
        return None, f"cannot read {source}: {error_reason(exc)}"
    return (image, "") if image is not None else (None, f"{source}: {UNREADABLE}")


class VideoReader:
    """Frames of one video in increasing order: seek once, then read forward."""

    def __init__(self, source: str):
        self.source = source
        self.refused = regular_file_problem(source)  # a FIFO would block this task for ever
        self.capture = cv2.VideoCapture() if self.refused else cv2.VideoCapture(source)
        self.position = 0  # index of the next frame read() returns

    def frame(self, index: int, limits: ImageLimits) -> tuple[np.ndarray | None, str]:
        if self.refused:
            return None, self.refused
        if not self.capture.isOpened():
            return None, f"cannot open {self.source} as a video"
        if index < self.position or index - self.position > 64:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            self.position = index
        while self.position < index:
            if not self.capture.grab():
                break
            self.position += 1
        ok, image = self.capture.read() if self.position == index else (False, None)
        if not ok or image is None:
            return None, f"{self.source}: frame {index} could not be read (past the end, or corrupt)"
        self.position += 1
        try:
            limits.check(image.shape[1], image.shape[0], f"{self.source}'s frames")
        except ImageRejected as exc:
            return None, str(exc)
        return processing.to_bgr8(image), ""

    def close(self) -> None:
        self.capture.release()


# --- stage 2: inference (an actor pool) ---------------------------------------------------------

INFERRED_COLUMNS = [column for column in DECODED_COLUMNS if column not in TENSOR_COLUMNS] + ["depth"]


class InferenceActor:
    """One opened backend for the actor's life; `__call__` runs it on a batch, one image at a time
    (artifacts take a batch of one; images of a dynamic artifact differ in size anyway)."""

    def __init__(self, model: str, threads: int = 0, device: str = "cpu"):
        from dav2.runtime.backends import open_backend

        self.backend = open_backend(model, threads=threads, device=device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = rows_of(batch)
        for row in rows:
            row["depth"] = b""
            if row["status"] == OK:
                self.infer(row)
        return batch_of(rows, INFERRED_COLUMNS)  # the tensor columns are dropped here

    def infer(self, row: Row) -> None:
        start = time.perf_counter()
        tensor = tensor_of(row)
        try:
            depth = self.backend.infer(tensor)
        except Exception as exc:  # noqa: BLE001 - recorded in the manifest; the next image may work
            fail(row, f"inference failed on {row['source']}: {error_reason(exc)}")
            return
        depth = np.ascontiguousarray(depth, dtype=np.float32)
        # the network's own output size (a uint8 graph given camera frames resizes inside)
        row.update(network_height=depth.shape[-2], network_width=depth.shape[-1], depth=depth.tobytes())
        row["seconds"] += time.perf_counter() - start

    def __del__(self):
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()


# --- stage 3: postprocess and write (CPU tasks) -------------------------------------------------

WRITTEN_COLUMNS = [column for column in INFERRED_COLUMNS if column != "depth"] + ["output", "finished_at"]


@dataclass(frozen=True)
class WriteSettings:
    output: str
    fmt: str
    cmap: str
    unit: str
    remote: Remote | None = None  # outputs at a URI (then `output` is its uri)
    calibration: MetricCalibration | None = None  # the artifact's stored metric scale (dav2-calibrate)
    kind: str = "relative"  # the model's, for the calibration's formula

    @property
    def target(self) -> Path | Remote:
        return self.remote if self.remote is not None else Path(self.output)


def write_batch(batch: dict[str, np.ndarray], settings: WriteSettings) -> dict[str, np.ndarray]:
    """Depth at each image's size, written; rows become manifest rows."""
    rows = rows_of(batch)
    done: list[tuple[Row, np.ndarray]] = []
    for row in rows:
        row["output"] = ""
        if row["status"] == OK:
            start = time.perf_counter()
            depth = image_depth(row, settings)
            row["seconds"] += time.perf_counter() - start
            done.append((row, depth))
    if settings.fmt == "parquet":
        write_parquet(done, settings)
    else:
        write_pictures(done, settings)
    finished = time.time()  # seconds since the epoch; a UTC timestamp in the manifest
    for row in rows:
        row.pop("depth", None)
        row["finished_at"] = finished
    return batch_of(rows, WRITTEN_COLUMNS)


def image_depth(row: Row, settings: WriteSettings | None = None) -> np.ndarray:
    """The network's depth resized back to the image (the shared postprocessing), in metres when
    the artifact carries a calibration (as dav2-run applies it)."""
    network = np.frombuffer(row["depth"], dtype=np.float32).reshape(1, row["network_height"], row["network_width"])
    depth = processing.postprocess(network, (row["image_height"], row["image_width"]))
    if settings is not None and settings.calibration is not None:
        depth = StoredCalibration(settings.calibration, settings.kind, "")(depth)
    return depth


def write_pictures(done: list[tuple[Row, np.ndarray]], settings: WriteSettings) -> None:
    make = RemotePictureWriter if settings.remote is not None else PictureWriter
    writer = make(settings.target, settings.fmt, settings.cmap, settings.unit)
    for row, depth in done:
        start = time.perf_counter()
        try:
            row["output"] = writer.write(row["name"], depth)
        except Dav2Error as exc:  # dav2.files: disk full, permission, a folder in the way
            fail(row, str(exc))
        row["seconds"] += time.perf_counter() - start


def write_parquet(done: list[tuple[Row, np.ndarray]], settings: WriteSettings) -> None:
    if not done:
        return
    start = time.perf_counter()
    first = done[0][0]
    path = shard_path(settings.target, first["name"], first["frame"], len(done))
    try:
        written = write_shard(path, [{**row, "depth": depth} for row, depth in done])
    except (Dav2Error, OSError) as exc:
        for row, _ in done:
            fail(row, f"could not write {path}: {exc}")
        return
    share = (time.perf_counter() - start) / len(done)
    for row, _ in done:
        row.update(output=written, seconds=row["seconds"] + share)
