"""Writing outputs so that a failure never leaves a half-written file behind, nor loses an old one.

Every file dav2 writes goes to a temporary name in the destination folder first and is renamed
into place only when complete (os.replace is atomic on one filesystem). Until that rename, an
earlier file of the same name is untouched: a full disk, a read-only folder, Ctrl-C or SIGTERM
leave it as it was and remove the temporary file.

What the operating system refuses (no space, no permission, a read-only filesystem, a folder
where a file should go) becomes one `OutputError` (a Dav2Error) that names the path and the
cause, so the CLI prints one line instead of a traceback. A path that exists but is not a
regular file (a folder, a character device such as /dev/null, a fifo) is never replaced; a
name longer than the file system allows (NAME_MAX, 255 bytes on common Linux file systems) is
refused before any work, in one line.

Reading: every file a user names is read through `read_user_bytes` / `read_user_text` (JSON
through dav2.jsonfile). They open the file without blocking, refuse what is not a regular file
(a folder, a FIFO that would block for ever, /dev/zero that never ends) and a size over the
caller's limit, from the file's own status, before reading a byte; then they read at most
limit + 1 bytes, so a file that grows while it is read is still bounded. The message names the
limit (and the option or variable that raises it, when there is one).
"""

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from dav2.errors import Dav2Error, quote

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
    try:
        kept = "; the previous file is kept" if path.is_file() else ""
    except OSError:  # a name the file system cannot even look up (too long)
        kept = ""
    return OutputError(f"could not write {quote(path)}: {describe_os_error(exc)}{kept}")


TEMP_NAME_ROOM = 16  # what atomic_path adds to a name: ".", "." + mkstemp's 8 characters, ".tmp"


def name_max(folder: Path) -> int:
    """The longest file name (in bytes) the file system holding `folder` (or its nearest existing
    parent) allows: NAME_MAX, 255 where the system does not say."""
    for place in (folder, *folder.parents):
        try:
            return os.pathconf(place, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return 255


def check_name_length(path: Path) -> None:
    """Refuse a name the file system cannot hold, with room for atomic_path's temporary name."""
    limit = name_max(path.parent) - TEMP_NAME_ROOM
    length = len(os.fsencode(path.name))
    if length > limit:
        raise OutputError(
            f"cannot write {quote(path)}: its name is {length} bytes, over the {limit} this file system allows "
            "for an output (choose a shorter name)"
        )


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse an output path that exists but is not a regular file (never replace a device or a
    folder), or whose name is too long for the file system."""
    path = Path(path)
    check_name_length(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise write_failed(path, exc) from None
    if stat.S_ISDIR(mode):
        raise OutputError(
            f"cannot write {quote(path)}: a folder of that name exists (name a file, or remove the folder)"
        )
    if not stat.S_ISREG(mode):
        raise OutputError(f"cannot write {quote(path)}: it exists and is not a regular file (a device, fifo or socket)")
    return path


def check_output_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Refuse, before any work, a folder outputs cannot go to: a path that exists and is not a
    folder (a file, /dev/null), a part of the path that is a file, a name too long for the file
    system, or a place where no file can be made (read-only, no permission). Writability is
    tried with an empty temporary file in the folder (or its nearest existing parent), since
    permission bits do not tell root about a read-only file system; nothing else is created."""
    folder = Path(folder)
    place = folder
    while not os.path.lexists(place) and place != place.parent:
        place = place.parent
    for part in (folder, *folder.parents):
        if part == place:
            break
        length, limit = len(os.fsencode(part.name)), name_max(place)
        if length > limit:
            raise OutputError(
                f"cannot write in {what} {quote(folder)}: a name in it is {length} bytes, over the {limit} "
                "this file system allows"
            )
    if not place.is_dir():
        cause = "it is not a folder" if place == folder else f"{quote(place)} is not a folder"
        raise OutputError(f"cannot write in {what} {quote(folder)}: {cause}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".dav2-probe.", dir=place)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write in {what} {quote(folder)}: {describe_os_error(exc)}") from None
    return folder


# --- reading a user's file ---------------------------------------------------------------------


class InputError(Dav2Error):
    """A file a user named cannot be read: missing, not a regular file, or over its size limit."""


def size_text(size: int) -> str:
    """'6.4 GB', '12 MB', '900 bytes': sizes in messages."""
    for unit, factor in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} bytes"


def read_user_bytes(path: str | os.PathLike, limit: int, what: str, raise_with: str = "") -> bytes:
    """The bytes of the regular file `path` (a `what`: "anchors", "DA-2K annotations"), at most
    `limit` bytes; anything else is one InputError (see the module docstring). `raise_with`
    names how to raise the limit ("--max-megapixels", "$DAV2_MAX_JSON_BYTES"), if anything can."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"cannot read {what} {quote(path)}: {describe_os_error(exc)}") from None
    try:
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):
            raise InputError(f"cannot read {what} {quote(path)}: it is a folder, not a file")
        if not stat.S_ISREG(status.st_mode):
            raise InputError(f"cannot read {what} {quote(path)}: not a regular file (a device, FIFO or socket)")
        over_limit(path, status.st_size, limit, what, raise_with)
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise InputError(f"cannot read {what} {quote(path)}: {describe_os_error(exc)}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    over_limit(path, len(data), limit, what, raise_with)  # it grew while we read
    return data


def check_user_file(path: str | os.PathLike, limit: int, what: str, raise_with: str = "") -> int:
    """The size of the regular file `path`, checked as read_user_bytes checks it, for a library
    that opens the file itself (OpenCV's FileStorage, an ONNX parser): one InputError if not."""
    path = Path(path)
    try:
        status = os.stat(path)
    except OSError as exc:
        raise InputError(f"cannot read {what} {quote(path)}: {describe_os_error(exc)}") from None
    if not stat.S_ISREG(status.st_mode):
        raise InputError(f"cannot read {what} {quote(path)}: not a regular file")
    over_limit(path, status.st_size, limit, what, raise_with)
    return status.st_size


def over_limit(path: Path, size: int, limit: int, what: str, raise_with: str) -> None:
    if size > limit:
        how = f" (raise it with {raise_with})" if raise_with else ""
        raise InputError(
            f"{what} {quote(path)} is {size_text(size)}, over the limit of {size_text(limit)} for {what}{how}"
        )


def read_user_text(path: str | os.PathLike, limit: int, what: str, raise_with: str = "") -> str:
    """`read_user_bytes` decoded as UTF-8 (a BOM allowed); a file that is not text is one InputError."""
    data = read_user_bytes(path, limit, what, raise_with)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {quote(path)} is not UTF-8 text (byte {exc.start})") from None


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
    artifact) last: whoever sees it also finds its companions (weights, metadata). A folder
    (a Core ML package) is renamed in whole (`move_folder_into_place`), so it too is either
    the earlier one or the complete new one, never half of each.
    """
    folder.mkdir(parents=True, exist_ok=True)
    placed = []
    for file in files:
        if file.is_dir() and not file.is_symlink():
            placed.append(move_folder_into_place(file, folder / file.name))
            continue
        target = check_output_file(folder / file.name)
        os.replace(file, target)
        placed.append(target)
    return placed


def move_folder_into_place(new: Path, target: Path) -> Path:
    """Rename the finished folder `new` to `target` (same filesystem). An earlier `target` is
    replaced only when it is an earlier output of the same kind (its top-level entries are
    ones `new` has too: a user's other folder is never deleted); it is moved aside beside
    `new` first and comes back if the rename fails."""
    check_name_length(target)
    if os.path.lexists(target) and (target.is_symlink() or not target.is_dir()):
        raise OutputError(f"cannot write {quote(target)}: it exists and is not a folder")
    names = {entry.name for entry in new.iterdir()}

    def earlier_output(path: Path) -> bool:
        return {entry.name for entry in path.iterdir()} <= names

    aside = new.with_name(f".previous-{new.name}")
    replace_folder(new, target, aside, earlier_output, f"an earlier {target.suffix} output")
    shutil.rmtree(aside, ignore_errors=True)
    return target


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, replaceable: Callable[[Path], bool], what: str) -> Iterator[Path]:
    """Yield a path (not yet existing) in a hidden staging folder beside `path`; on success the
    finished folder is renamed to `path`, replacing an earlier one only after it is complete.

    For outputs that are a folder of files (a rosbag2 bag): a failed or interrupted run removes
    the staging folder and leaves an earlier `path` as it was. The yielded path's own name is
    `path`'s, so files named after their folder inside it are named right. An existing `path`
    is replaced only when `replaceable(path)` says it is an earlier output of the same kind (a
    user's other folder is never deleted); an existing file or other non-folder is refused.
    The earlier folder is moved aside, the new one renamed in, then the earlier one removed,
    so at no moment is a half-written folder at `path`."""
    path = Path(path)
    check_name_length(path)
    if os.path.lexists(path) and (path.is_symlink() or not path.is_dir()):
        raise OutputError(f"cannot write {quote(path)}: it exists and is not a folder")
    if path.is_dir() and not replaceable(path):
        raise OutputError(f"cannot write {quote(path)}: a folder of that name exists and is not {what}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise OutputError(f"cannot write in {quote(path.parent)}: {describe_os_error(exc)}") from None
    try:
        yield staging / path.name
        replace_folder(staging / path.name, path, staging / "previous", replaceable, what)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_folder(new: Path, path: Path, aside: Path, replaceable: Callable[[Path], bool], what: str) -> None:
    """Rename `new` to `path`; an earlier `path` (checked again: it may have changed meanwhile)
    goes to `aside` first and comes back if the rename fails."""
    if path.is_dir() and not replaceable(path):
        raise OutputError(f"cannot write {quote(path)}: a folder of that name exists and is not {what}")
    moved = False
    try:
        if path.is_dir():
            os.replace(path, aside)
            moved = True
        os.replace(new, path)
    except OSError as exc:
        if moved and not os.path.lexists(path):
            os.replace(aside, path)
        raise write_failed(path, exc) from None
