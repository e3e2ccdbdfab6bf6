"""Writing one job's depth: files that mirror the inputs' names, or Parquet shards.

Picture formats (png16, npy, color, gray) go through dav2-run's own ImageSink, so a file here
is byte for byte the file dav2-run writes for the same image and artifact: png16 with its
scale chunk (processing.encode_png16), float32 .npy, colour maps coloured over each picture's
own range (a folder of unrelated photos, as dav2-run colours a folder). Every file is written
under a temporary name and renamed when complete (dav2.files), so an interrupted job leaves
whole files or none.

`parquet` writes one shard per batch below <output>/depth/, holding each item's source, frame,
output name, height, width and `depth` (the float32 depth at the image's size, C order, as
raw little-endian bytes: `np.frombuffer(row.depth, "<f4").reshape(row.height, row.width)`).
A shard is named from its first item and its size, and written atomically too; the manifest's
`output` column names the shard that holds an item's depth.

At a URI (storage.py) the same bytes are made in memory (sinks.encode_picture, which
ImageSink writes too; storage.parquet_bytes) and written as whole objects: an object store has
no rename, and publishes an object only whole.
"""

import hashlib
import os
import re
from pathlib import Path

import numpy as np

from dav2.batch import storage
from dav2.batch.storage import Remote
from dav2.files import atomic_path
from dav2.runtime.sinks import ImageSink, encode_picture
from dav2.runtime.sources import Frame

SHARD_FOLDER = "depth"
# dav2.files.atomic_path's temporary names (tempfile.mkstemp: 8 random characters) for our extensions
TEMPORARY_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp\.(png|npy|parquet)$")
EXTENSIONS = {"npy": ".npy", "parquet": ".parquet"}  # the other formats write .png
NO_FRAME = Frame(np.empty((0, 0, 3), np.uint8), "", 0)  # a folder's picture is coloured over its own range


def output_path(output: Path | Remote, name: str, fmt: str) -> Path | Remote | None:
    """Where an item's picture goes (None for parquet: known when its shard is written)."""
    if fmt == "parquet":
        return None
    file = f"{name}{EXTENSIONS.get(fmt, '.png')}"
    return output.child(file) if isinstance(output, Remote) else output / file


class PictureWriter:
    """One file per item, through dav2-run's ImageSink (see the module docstring)."""

    def __init__(self, output: Path, fmt: str, cmap: str, unit: str):
        self.sink = ImageSink(Path(output), fmt, cmap, unit, single=False)

    def write(self, name: str, depth: np.ndarray) -> str:
        self.sink.write(Frame(np.empty((0, 0, 3), np.uint8), name, 0), depth)
        return str(self.sink.path_for_name(name))


class RemotePictureWriter:
    """One object per item below a URI prefix, byte for byte PictureWriter's file."""

    def __init__(self, output: Remote, fmt: str, cmap: str, unit: str):
        self.output, self.fmt, self.cmap, self.unit = output, fmt, cmap, unit

    def write(self, name: str, depth: np.ndarray) -> str:
        target = output_path(self.output, name, self.fmt)
        storage.write_bytes(target, encode_picture(NO_FRAME, depth, self.fmt, self.cmap, self.unit))
        return target.uri


def shard_path(output: Path | Remote, first_name: str, first_frame: int, count: int) -> Path | Remote:
    digest = hashlib.sha1(f"{first_name}\0{first_frame}\0{count}".encode()).hexdigest()[:16]
    file = f"{SHARD_FOLDER}/part-{digest}.parquet"
    return output.child(file) if isinstance(output, Remote) else Path(output) / file


def write_shard(path: Path | Remote, rows: list[dict]) -> str:
    """One Parquet shard of depth arrays, written atomically (a whole object at a URI)."""
    import pyarrow.parquet as pq

    table = shard_table(rows)
    if isinstance(path, Remote):
        storage.write_bytes(path, storage.parquet_bytes(table))
        return path.uri
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return str(path)


def shard_table(rows: list[dict]):
    import pyarrow as pa

    return pa.table(
        {
            "source": pa.array([row["source"] for row in rows], pa.string()),
            "frame": pa.array([row["frame"] for row in rows], pa.int64()),
            "name": pa.array([row["name"] for row in rows], pa.string()),
            "height": pa.array([row["depth"].shape[0] for row in rows], pa.int32()),
            "width": pa.array([row["depth"].shape[1] for row in rows], pa.int32()),
            "depth": pa.array([row["depth"].astype("<f4").tobytes() for row in rows], pa.large_binary()),
        }
    )


def sweep_temporary_files(output: Path) -> int:
    """Remove temporary files a killed job left below `output` (Ray stops its workers with
    SIGKILL, so a write in progress cannot clean up after itself); the count removed."""
    removed = 0
    for folder, _, names in os.walk(output):
        for name in names:
            if TEMPORARY_NAME.match(name):
                Path(folder, name).unlink(missing_ok=True)
                removed += 1
    return removed
