"""Writing outputs so that a failure never leaves a half-written file behind.

Every file dav2 writes goes to a temporary name in the destination folder first and is renamed
into place only when complete (os.replace is atomic on one filesystem).
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same extension); rename it to `path` on success.

    The extension is kept because some writers (cv2.VideoWriter, cv2.imwrite) choose the
    format from it. On an exception the temporary file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


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
        target = folder / file.name
        os.replace(file, target)
        placed.append(target)
    return placed
