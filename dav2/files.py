"""Writing outputs so that a failure never leaves a half-written file behind, nor loses an old one.

Every file dav2 writes goes to a temporary name in the destination folder first and is renamed
into place only when complete (os.replace is atomic on one filesystem). Until that rename, an
earlier file of the same name is untouched: a full disk, a read-only folder, Ctrl-C or SIGTERM
leave it as it was and remove the temporary file.

What the operating system refuses (no space, no permission, a read-only filesystem, a folder
where a file should go) becomes one `OutputError` (a Dav2Error) that names the path and the
cause, so the CLI prints one line instead of a traceback. A path that exists but is not a
regular file (a folder, a character device such as /dev/null, a fifo) is never replaced.
"""

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dav2.errors import Dav2Error

_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "the file is too large for this filesystem or process limit",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only filesystem",
    errno.EISDIR: "it is a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "the name is too long",
}


class OutputError(Dav2Error):
    """An output could not be written; the previous file of that name (if any) is kept."""


def describe_os_error(exc: OSError) -> str:
    """A short cause for an OSError, without the errno number or a repeated path."""
    return _CAUSES.get(exc.errno, exc.strerror or str(exc))


def write_failed(path: Path, exc: OSError) -> OutputError:
    kept = "; the previous file is kept" if path.is_file() else ""
    return OutputError(f"could not write {path}: {describe_os_error(exc)}{kept}")


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse an output path that exists but is not a regular file (never replace a device or a folder)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise write_failed(path, exc) from None
    if stat.S_ISDIR(mode):
        raise OutputError(f"cannot write {path}: a folder of that name exists (name a file, or remove the folder)")
    if not stat.S_ISREG(mode):
        raise OutputError(f"cannot write {path}: it exists and is not a regular file (a device, fifo or socket)")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same extension); rename it to `path` on success.

    The extension is kept because some writers (cv2.VideoWriter, cv2.imwrite) choose the
    format from it. On an exception (Ctrl-C and SIGTERM included) the temporary file is
    removed and `path` is untouched. OSErrors of the steps taken here (making the folder,
    the temporary file, the rename) become one OutputError.
    """
    path = check_output_file(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write in {path.parent}: {describe_os_error(exc)}") from None
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        check_output_file(path)  # something may have appeared there while we wrote
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise write_failed(path, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically; a failed write (disk full, ...) is one OutputError."""
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as exc:
            raise write_failed(Path(path), exc) from None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def move_into_place(files: list[Path], folder: Path) -> list[Path]:
    """Move finished files (built in a temporary folder on the same filesystem) into `folder`.

    Files are moved in the order given, so the caller puts the file a reader looks for (the
    artifact) last: whoever sees it also finds its companions (weights, metadata).
    """
    folder.mkdir(parents=True, exist_ok=True)
    placed = []
    for file in files:
        target = check_output_file(folder / file.name)
        os.replace(file, target)
        placed.append(target)
    return placed
