"""The manifest: one Parquet row per input saying what became of it, and what --resume skips.

Columns (MANIFEST_SCHEMA): source, frame (-1 for an image), name, output, status (`ok` or
`failed`), error, image and network width/height, model_sha256 (of the artifact and its
weights file), seconds (decode + inference + write), finished_at (UTC).

Consistency: rows reach the driver only after their output is complete on disk. They are kept
in memory and flushed every FLUSH_ROWS rows or FLUSH_S seconds as a part file beside the
manifest (`manifest.parquet.parts/part-000001.parquet`, each written atomically); closing the
writer (at the end, on Ctrl-C or SIGTERM, on an error) merges the previous manifest and the
parts into `manifest.parquet` (atomically), keeping the newest row of each input, and removes
the parts. A job killed outright (SIGKILL, power) leaves the parts, and the next --resume reads
them. Outputs whose row was not recorded yet are simply redone by --resume: an output counts
as done only when it exists AND its newest row is `ok` for the same model.

A manifest at a URI (storage.py; the default when --output is one) works the same way with
objects: the parts are objects below `manifest.parquet.parts/`, each written whole.
"""

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dav2.batch import storage
from dav2.batch.storage import Remote
from dav2.errors import Dav2Error
from dav2.files import atomic_path, describe_os_error
from dav2.metadata import ArtifactMetadata

OK, FAILED = "ok", "failed"
FLUSH_ROWS = 1000
FLUSH_S = 30.0
PARTS_SUFFIX = ".parts"
PART_NAME = re.compile(r"^part-\d+\.parquet$")

MANIFEST_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("frame", pa.int64()),
        ("name", pa.string()),
        ("output", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("image_width", pa.int32()),
        ("image_height", pa.int32()),
        ("network_width", pa.int32()),
        ("network_height", pa.int32()),
        ("model_sha256", pa.string()),
        ("seconds", pa.float64()),
        ("finished_at", pa.timestamp("ms", tz="UTC")),
    ]
)
COLUMNS = MANIFEST_SCHEMA.names


def model_sha256(model: Path, metadata: ArtifactMetadata | None) -> str:
    """sha256 over the artifact and its weights file (an OpenVINO .xml alone is only the graph)."""
    digest = hashlib.sha256()
    files = [model]
    if metadata is not None and metadata.weights_file:
        files.append(model.parent / metadata.weights_file)
    for file in files:
        if file.is_file():
            with open(file, "rb") as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def parts_folder(path: Path | Remote) -> Path | Remote:
    if isinstance(path, Remote):
        return Remote(path.root, path.key + PARTS_SUFFIX, path.filesystem)
    return path.with_name(path.name + PARTS_SUFFIX)


def exists(path: Path | Remote) -> bool:
    if isinstance(path, Remote):
        return storage.is_file(path) or bool(remote_parts(path))
    return path.is_file() or parts_folder(path).is_dir()


def remote_parts(path: Remote) -> list[Remote]:
    """The part objects of a manifest at a URI, in name order."""
    found = storage.list_files(parts_folder(path))
    return sorted((part for part in found if PART_NAME.match(part.key.rpartition("/")[2])), key=lambda p: p.key)


def read_manifest(path: Path | Remote) -> pa.Table:
    """The manifest and any parts left by a killed job, newest row per input (empty when none)."""
    if isinstance(path, Remote):
        return read_remote_manifest(path)
    tables = []
    try:
        if path.is_file():
            tables.append(pq.read_table(path, schema=MANIFEST_SCHEMA))
        parts = parts_folder(path)
        if parts.is_dir():
            tables += [pq.read_table(part, schema=MANIFEST_SCHEMA) for part in sorted(parts.glob("part-*.parquet"))]
    except (OSError, pa.ArrowException) as exc:
        raise Dav2Error(f"cannot read the manifest {path}: {exc}") from None
    return newest_rows(pa.concat_tables(tables)) if tables else MANIFEST_SCHEMA.empty_table()


def read_remote_manifest(path: Remote) -> pa.Table:
    objects = ([path] if storage.is_file(path) else []) + remote_parts(path)
    try:
        tables = [storage.read_parquet(item, MANIFEST_SCHEMA) for item in objects]
    except (OSError, pa.ArrowException) as exc:
        raise Dav2Error(f"cannot read the manifest {path}: {exc}") from None
    return newest_rows(pa.concat_tables(tables)) if tables else MANIFEST_SCHEMA.empty_table()


def newest_rows(table: pa.Table) -> pa.Table:
    """The last row of each (source, frame), in first-seen order."""
    last: dict[tuple[str, int], int] = {}
    for index, key in enumerate(zip(table.column("source").to_pylist(), table.column("frame").to_pylist())):
        last.pop(key, None)
        last[key] = index
    return table.take(pa.array(sorted(last.values()), pa.int64()))


@dataclass(frozen=True)
class DoneSet:
    """Inputs an earlier run finished for this model, with the output still in place."""

    keys: frozenset[tuple[str, int]]

    @classmethod
    def from_manifest(
        cls, table: pa.Table, sha256: str, is_output: Callable[[str], bool] = os.path.isfile
    ) -> "DoneSet":
        """`is_output`: whether an output is in place (outputs at a URI: listed once, not one request each)."""
        ok = table.filter(pc.and_(pc.equal(table["status"], OK), pc.equal(table["model_sha256"], sha256)))
        keys = {
            (source, frame)
            for source, frame, output in zip(
                ok["source"].to_pylist(), ok["frame"].to_pylist(), ok["output"].to_pylist()
            )
            if output and is_output(output)
        }
        return cls(frozenset(keys))


@dataclass
class ManifestWriter:
    """Collects rows and keeps the manifest on disk consistent (see the module docstring)."""

    path: Path | Remote
    model_sha256: str = ""
    pending: list[pa.Table] = field(default_factory=list)
    pending_rows: int = 0
    parts_written: int = 0
    last_flush: float = field(default_factory=time.monotonic)

    def add(self, rows: pa.Table) -> None:
        """Rows from the write stage (finished_at in seconds since the epoch, no model_sha256)."""
        if "model_sha256" not in rows.schema.names:
            rows = rows.append_column("model_sha256", pa.array([self.model_sha256] * rows.num_rows, pa.string()))
        if pa.types.is_floating(rows.schema.field("finished_at").type):
            milliseconds = pc.cast(pc.round(pc.multiply(rows["finished_at"], 1000.0)), pa.int64())
            rows = rows.set_column(
                rows.schema.get_field_index("finished_at"),
                "finished_at",
                milliseconds.cast(pa.timestamp("ms", tz="UTC")),
            )
        self.pending.append(rows.select(COLUMNS).cast(MANIFEST_SCHEMA))
        self.pending_rows += rows.num_rows
        if self.pending_rows >= FLUSH_ROWS or time.monotonic() - self.last_flush >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write the rows gathered so far as one more part file."""
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        table = pa.concat_tables(self.pending)
        taken = part_exists(self.path)
        self.parts_written += 1
        while taken(self.parts_written):  # parts of a killed job stay until they are merged
            self.parts_written += 1
        write_table(part_path(self.path, self.parts_written), table)
        self.pending, self.pending_rows = [], 0

    def close(self) -> pa.Table:
        """Merge everything into the manifest file; return its rows."""
        self.flush()
        merged = read_manifest(self.path)
        write_table(self.path, merged)
        remove_parts(self.path)
        return merged


def part_path(path: Path | Remote, number: int) -> Path | Remote:
    name = f"part-{number:06d}.parquet"
    folder = parts_folder(path)
    return folder.child(name) if isinstance(folder, Remote) else folder / name


def part_exists(path: Path | Remote) -> Callable[[int], bool]:
    """Whether part number n exists (at a URI: from one listing)."""
    if isinstance(path, Remote):
        names = {part.key.rpartition("/")[2] for part in remote_parts(path)}
        return lambda number: f"part-{number:06d}.parquet" in names
    return lambda number: part_path(path, number).exists()


def write_table(path: Path | Remote, table: pa.Table) -> None:
    if isinstance(path, Remote):
        storage.write_bytes(path, storage.parquet_bytes(table))
        return
    with atomic_path(path) as tmp:
        try:
            pq.write_table(table, tmp)
        except OSError as exc:
            raise Dav2Error(f"could not write the manifest {path}: {describe_os_error(exc)}") from None


def remove_manifest(path: Path | Remote) -> None:
    """--overwrite: the earlier job's manifest and parts go (its outputs are replaced as they come)."""
    remove_parts(path)
    if isinstance(path, Remote):
        storage.delete(path)
    else:
        path.unlink(missing_ok=True)


def remove_parts(path: Path | Remote) -> None:
    if isinstance(path, Remote):
        for part in remote_parts(path):
            storage.delete(part)
        return
    parts = parts_folder(path)
    if not parts.is_dir():
        return
    for part in parts.glob("part-*.parquet"):
        part.unlink(missing_ok=True)
    try:
        parts.rmdir()
    except OSError:
        pass  # something else is in there: leave it
