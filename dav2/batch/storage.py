"""Inputs and outputs at a URI (s3://, gs://, any filesystem pyarrow.fs knows), through pyarrow.

dav2 writes no object-store client of its own: `pyarrow.fs.FileSystem.from_uri` builds the
filesystem, with its options in the URI's query (`s3://bucket/images/?endpoint_override=
host:9000&scheme=http`, `region=...`) and credentials from the usual places (AWS_* variables,
~/.aws, an instance role; GOOGLE_APPLICATION_CREDENTIALS). A `file://` URI is a local path.

A `Remote` names one object or prefix as the user reads it (`s3://bucket/images/a.jpg`: the
manifest's `source` and `output` columns hold these) plus the URI pyarrow builds its
filesystem from (scheme, host and query; never a key). Workers get the latter as a string and
build the filesystem themselves, once per process (`filesystem`), so nothing that cannot be
pickled travels through Ray. Object keys are used as listed, never parsed as URIs, so a key
may hold '?', '#' or spaces.

Writing: an object store publishes an object only when its upload completes, and pyarrow's
output streams have no abort (pyarrow 26). So an object is encoded whole in memory first and
handed to the stream in one write: the store sees all of it or none (one PUT; a multipart
upload whose part failed is not completed). An exception between opening the stream and the
end of that write closes it and deletes what the close published, so no short object stays.
"""

import contextlib
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dav2.errors import Dav2Error

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(text: str | Path) -> bool:
    return isinstance(text, str) and bool(URI.match(text))


@dataclass(frozen=True)
class Remote:
    """An object or prefix on a pyarrow filesystem (see the module docstring)."""

    root: str  # "s3://bucket": what the user sees before the key (no credentials, no query)
    key: str  # "images/a.jpg", no leading or trailing "/"; "" for the bucket itself
    filesystem: str  # "s3://bucket/?endpoint_override=...": what pyarrow builds the filesystem from

    @property
    def uri(self) -> str:
        return f"{self.root}/{self.key}" if self.key else self.root

    def __str__(self) -> str:
        return self.uri

    def child(self, name: str) -> "Remote":
        """The object `name` below this prefix ("sub/photo.png")."""
        key = f"{self.key}/{name}" if self.key else name
        return Remote(self.root, key.strip("/"), self.filesystem)

    def open(self):
        """(pyarrow FileSystem, path on it) for this object, the filesystem built once per process."""
        fs, base = filesystem(self.filesystem)
        base = base.rstrip("/")
        return fs, f"{base}/{self.key}" if self.key else base or "/"


def parse(uri: str) -> Remote:
    """A URI the user gave (--input, --output, a line of a list file) as a Remote."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = parts.netloc.rpartition("@")[2]
    query = f"?{parts.query}" if parts.query else ""
    remote = Remote(f"{scheme}://{host}", unquote(parts.path).strip("/"), f"{scheme}://{parts.netloc}/{query}")
    remote.open()  # an unknown scheme or a bad option: one line now, not in every worker
    return remote


def root_of(uri: str) -> str:
    """The root ("s3://bucket") of a Remote's uri ("s3://bucket/images/a.jpg")."""
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://{rest.partition('/')[0]}"


def from_uri(uri: str, filesystems: dict[str, str]) -> Remote:
    """A Remote again from its uri (a manifest's source) and the filesystem URIs of its roots."""
    root = root_of(uri)
    if root not in filesystems:
        raise Dav2Error(f"{uri}: no filesystem known for {root}")
    return Remote(root, uri[len(root) + 1 :], filesystems[root])


def location(text: str | Path) -> "Path | Remote":
    """A local path (file:// URIs included) or a Remote, from what the user typed."""
    if not is_uri(text):
        return Path(text)
    if str(text).lower().startswith("file://"):
        return Path(unquote(urlsplit(str(text)).path))
    return parse(str(text))


@functools.lru_cache(maxsize=64)
def filesystem(uri: str):
    """pyarrow's filesystem for a filesystem URI, and its base path (cached: one per process)."""
    from pyarrow import ArrowException
    from pyarrow.fs import FileSystem

    try:
        return FileSystem.from_uri(uri)
    except (ArrowException, OSError, ValueError) as exc:
        shown = re.sub(r"//[^/@]*@", "//", uri)  # credentials in a URI stay out of the message
        raise Dav2Error(f"cannot open {shown}: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    """pyarrow's errors run to several lines of AWS SDK detail; the first says what went wrong."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def remote_error(what: str, remote: Remote, exc: BaseException) -> Dav2Error:
    return Dav2Error(f"{what} {remote}: {first_line(exc)}")


# --- reading ------------------------------------------------------------------------------------


def is_file(remote: Remote) -> bool:
    from pyarrow.fs import FileType

    return info(remote).type == FileType.File


def is_dir(remote: Remote) -> bool:
    from pyarrow.fs import FileType

    return info(remote).type == FileType.Directory


def info(remote: Remote):
    fs, path = remote.open()
    try:
        return fs.get_file_info(path)
    except (OSError, ValueError) as exc:
        raise remote_error("cannot reach", remote, exc) from None


def list_files(prefix: Remote) -> list[Remote]:
    """Every object below `prefix`, recursively, in no particular order (nothing when absent)."""
    from pyarrow.fs import FileSelector, FileType

    fs, path = prefix.open()
    try:
        found = fs.get_file_info(FileSelector(path, recursive=True, allow_not_found=True))
    except (OSError, ValueError) as exc:
        raise remote_error("cannot list", prefix, exc) from None
    base = path.rstrip("/") + "/"
    return [prefix.child(entry.path[len(base) :]) for entry in found if entry.type == FileType.File]


def read_bytes(remote: Remote) -> bytes:
    fs, path = remote.open()
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read()
    except (OSError, ValueError) as exc:
        raise remote_error("cannot read", remote, exc) from None


def read_parquet(remote: Remote, schema):
    """A Parquet object as a table (read whole: manifests and their parts are small)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(read_bytes(remote)), schema=schema)


# --- writing ------------------------------------------------------------------------------------


def parquet_bytes(table) -> bytes:
    """A Parquet file in memory, as pq.write_table writes it to disk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_bytes(remote: Remote, data: bytes) -> None:
    """The whole object in one write, published at close (see the module docstring)."""
    fs, path = remote.open()
    stream = None
    try:
        stream = fs.open_output_stream(path)
        stream.write(data)
        stream.close()
    except BaseException as exc:
        if stream is not None and not stream.closed:
            withdraw(fs, path, stream)
        if isinstance(exc, (OSError, ValueError)):
            raise remote_error("could not write", remote, exc) from None
        raise


def withdraw(fs, path: str, stream) -> None:
    """An unfinished object: close the stream (pyarrow cannot abort it), then delete what it published."""
    with contextlib.suppress(Exception):
        stream.close()
    with contextlib.suppress(Exception):
        fs.delete_file(path)


def delete(remote: Remote) -> None:
    """Remove one object (gone already is fine)."""
    fs, path = remote.open()
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:
        raise remote_error("could not delete", remote, exc) from None
