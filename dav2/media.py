"""Media files on disk: which files are images or videos, reading an image, listing a folder.

Three parts of dav2 read folders of pictures: the runtime's folder source (dav2-run), the INT8
calibration set and the evaluators (dav2-eval). They all list files through `scan_folder`, so
a folder means the same pictures in the same order everywhere:

- sorted by their path below the folder, compared folder by folder ("a/b.png" before
  "a.png", "a/..." never interleaved with "a0.png"), case-sensitively;
- recursive by default; symbolic links to folders are not followed (as `Path.rglob`);
- hidden files and folders (a name starting with ".": `.DS_Store`, macOS `._photo.jpg`
  resource forks, `.ipynb_checkpoints/`, `.git/`) are never listed: they are not the
  user's pictures, and a `._photo.jpg` would otherwise be counted as an unreadable image.

Images are decoded as upstream's `cv2.imread(path, IMREAD_COLOR)`: grey, RGBA and 16-bit files
become 8-bit BGR.

Limits (`ImageLimits`): a small file can decode to gigabytes (a 20000x20000 PNG of 389 KB
takes 1.2 GB as BGR and far more on its way through the network), so an image is measured
before it is decoded, and measured again after decoding. `header_size` reads the size from
the header itself for PNG, JPEG, BMP, GIF, WebP, TIFF (classic and BigTIFF, either byte
order), PNM/PFM and Radiance HDR: every format of IMAGE_EXTENSIONS plus the ones OpenCV
recognises by content whatever the extension. Other formats are measured by Pillow when it is
installed and can; bytes no reader can measure are never decoded (`decode_image` answers
None: "not a readable image"), so no format reaches OpenCV unmeasured. (Pillow alone is not
enough: it refuses to report the size of images over its own bomb limit, 179 megapixels.)
The file itself is read through dav2.files.read_user_bytes: a regular file (not a FIFO or a
device) of at most `ImageLimits.max_file_bytes` (8 bytes a pixel of the pixel limit, the size
of an uncompressed 16-bit RGBA image, plus 1 MB of headers: 401 MB at 50 megapixels). Past a
limit the image is refused with one line naming the option that raises it:

- decoded pixels: 50 megapixels (`--max-megapixels`);
- aspect ratio, long side over short side: 20 (`--max-aspect`); beyond it the short side
  would be scaled to the input size and the long side to thousands of patches.
The network's own limit (patch tokens) is checked where the network size is known
(dav2.processing.check_tokens).

OpenCV's and FFmpeg's own log lines ("moov atom not found", "can't open camera by index")
are silenced when this module is imported (unless OPENCV_LOG_LEVEL / OPENCV_FFMPEG_LOGLEVEL
are set), so a failure reads as dav2's one line.
"""

import os
import struct
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from dav2.errors import Dav2Error, quote
from dav2.files import InputError, read_user_bytes

# before cv2 opens any media: FFmpeg reads its level when its backend first registers
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def quiet_opencv() -> None:
    """OpenCV's own warnings off (unless the user asked for them with OPENCV_LOG_LEVEL)."""
    if os.environ.get("OPENCV_LOG_LEVEL", "").upper() == "SILENT":
        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        except AttributeError:  # builds without the logging module
            pass


quiet_opencv()

DEFAULT_MAX_MEGAPIXELS = 50.0
DEFAULT_MAX_ASPECT = 20.0


class ImageRejected(Dav2Error):
    """An image that cannot be opened, or is refused by a limit (the message says which)."""


@dataclass(frozen=True)
class ImageLimits:
    """How large a decoded image may be (see the module docstring); raise them with the options named."""

    max_pixels: int = int(DEFAULT_MAX_MEGAPIXELS * 1_000_000)
    max_aspect: float = DEFAULT_MAX_ASPECT

    @property
    def max_file_bytes(self) -> int:
        """The largest image file read: an uncompressed 16-bit RGBA image at the pixel limit, plus headers."""
        return self.max_pixels * 8 + (1 << 20)

    def check(self, width: int, height: int, what: str) -> None:
        """Raise ImageRejected when a width x height picture is past a limit."""
        if width < 1 or height < 1:
            raise ImageRejected(f"{what} has an empty size {width}x{height}")
        if width * height > self.max_pixels:
            raise ImageRejected(
                f"{what} is {width}x{height} ({width * height / 1e6:.1f} megapixels), over the limit of "
                f"{self.max_pixels / 1e6:g} megapixels (raise it with --max-megapixels)"
            )
        aspect = max(width, height) / min(width, height)
        if aspect > self.max_aspect:
            raise ImageRejected(
                f"{what} is {width}x{height}, an aspect ratio of 1:{aspect:.0f}, past the limit of "
                f"1:{self.max_aspect:g} (raise it with --max-aspect)"
            )


DEFAULT_LIMITS = ImageLimits()


def read_image(path: str | Path, limits: ImageLimits | None = DEFAULT_LIMITS) -> np.ndarray | None:
    """BGR uint8 image, or None when the file cannot be decoded (empty, corrupt, not an image).

    Raises ImageRejected when the file cannot be opened (permission, a folder) or the image
    is past `limits` (checked from the header before decoding when the format allows; None:
    no limits).
    """
    return decode_image(read_image_file(path, limits), quote(path), limits)


def read_image_file(path: str | Path, limits: ImageLimits | None = DEFAULT_LIMITS) -> bytes:
    """The bytes of an image file, bounded (see the module docstring); ImageRejected if not."""
    limit = (limits or DEFAULT_LIMITS).max_file_bytes if limits is not None else 1 << 40
    try:
        return read_user_bytes(path, limit, "image", "--max-megapixels")
    except InputError as exc:
        raise ImageRejected(str(exc)) from None


def decode_image(
    data: np.ndarray | bytes, what: str, limits: ImageLimits | None = DEFAULT_LIMITS, mode: int = cv2.IMREAD_COLOR
) -> np.ndarray | None:
    """BGR uint8 image from an encoded file's bytes (a file read_image opened, an object from a
    store), or None when they do not decode or no reader can measure them. Raises ImageRejected
    when the size in the header (before decoding) or the decoded size is past `limits`; `what`
    names the source. `mode` is cv2.IMREAD_COLOR (upstream's) or IMREAD_UNCHANGED (depth files)."""
    array = np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray) else data
    if array.size == 0:
        return None
    if limits is not None:
        size = header_size(array)
        if size is None:  # never decode what was not measured (see the module docstring)
            return None
        limits.check(*size, what)
    try:
        image = cv2.imdecode(array, mode)
    except cv2.error:  # OpenCV's own limits (1 gigapixel) and decoder failures
        return None
    if image is not None and limits is not None:
        limits.check(image.shape[1], image.shape[0], what)
    return image


# --- image sizes from headers, without decoding ------------------------------------------------


def header_size(data: np.ndarray | bytes) -> tuple[int, int] | None:
    """(width, height) from an image file's header, or None when the format is not one read here."""
    head = bytes(data[:65536]) if isinstance(data, np.ndarray) else bytes(data[:65536])
    for reader in (_png_size, _gif_size, _bmp_size, _webp_size, _pnm_size, _jpeg_size, _hdr_size):
        size = reader(head)
        if size is not None:
            return size
    if head[:4] in TIFF_MAGIC:  # the first directory may lie anywhere in the file: no copy of it
        return _tiff_size(memoryview(data).cast("B") if isinstance(data, np.ndarray) else data)
    return _pillow_size(bytes(data))


TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
TIFF_WIDTH, TIFF_HEIGHT = 256, 257
# TIFF field types that can hold a width: SHORT, LONG, LONG8 (BigTIFF) -> struct format
_TIFF_INTEGERS = {3: "H", 4: "I", 16: "Q"}


def _tiff_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """ImageWidth and ImageLength of the first image file directory (IFD), read from the bytes
    themselves: classic TIFF and BigTIFF, little- ("II") or big-endian ("MM"). None when the
    directory is missing or truncated."""
    order = "<" if bytes(data[:2]) == b"II" else ">"
    big = bytes(data[2:4]) in (b"+\0", b"\0+")
    try:
        if big:
            (offset,) = struct.unpack_from(order + "Q", data, 8)
            (count,) = struct.unpack_from(order + "Q", data, offset)
            entry_size, start, value_at = 20, offset + 8, 12
        else:
            (offset,) = struct.unpack_from(order + "I", data, 4)
            (count,) = struct.unpack_from(order + "H", data, offset)
            entry_size, start, value_at = 12, offset + 2, 8
        found = {}
        for index in range(min(count, 4096)):
            entry = start + index * entry_size
            tag, kind = struct.unpack_from(order + "HH", data, entry)
            if tag in (TIFF_WIDTH, TIFF_HEIGHT) and kind in _TIFF_INTEGERS:
                (found[tag],) = struct.unpack_from(order + _TIFF_INTEGERS[kind], data, entry + value_at)
    except struct.error:
        return None
    if TIFF_WIDTH not in found or TIFF_HEIGHT not in found:
        return None
    return found[TIFF_WIDTH], found[TIFF_HEIGHT]


def _hdr_size(head: bytes) -> tuple[int, int] | None:
    """Radiance RGBE (.hdr, .pic): header lines up to an empty line, then the resolution line
    ("-Y 480 +X 640", or any order and signs of the two axes)."""
    if not head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return None
    _, blank, rest = head.partition(b"\n\n")
    words = rest.split(b"\n", 1)[0].split() if blank else []
    if len(words) != 4 or not (words[1].isdigit() and words[3].isdigit()):
        return None
    sizes = {words[0][-1:].upper(): int(words[1]), words[2][-1:].upper(): int(words[3])}
    if set(sizes) != {b"X", b"Y"}:
        return None
    return sizes[b"X"], sizes[b"Y"]


def _png_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR" or len(head) < 24:
        return None
    return struct.unpack(">II", head[16:24])


def _gif_size(head: bytes) -> tuple[int, int] | None:
    if head[:6] not in (b"GIF87a", b"GIF89a") or len(head) < 10:
        return None
    return struct.unpack("<HH", head[6:10])


def _bmp_size(head: bytes) -> tuple[int, int] | None:
    if head[:2] != b"BM" or len(head) < 26:
        return None
    width, height = struct.unpack("<ii", head[18:26])
    return abs(width), abs(height)


def _webp_size(head: bytes) -> tuple[int, int] | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP" or len(head) < 30:
        return None
    chunk = head[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8L":
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _pnm_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 3 or head[0:1] != b"P" or head[1:2] not in b"123456Ff":  # PBM..PPM, PFM
        return None
    fields: list[int] = []
    for line in head[2:1024].splitlines():
        for word in line.split(b"#")[0].split():
            if not word.isdigit():
                return None
            fields.append(int(word))
            if len(fields) == 2:
                return fields[0], fields[1]
    return None


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Walk the JPEG markers to the first start-of-frame (SOFn) and read its size."""
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 9 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", head[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    return None


def _pillow_size(data: bytes) -> tuple[int, int] | None:
    """Pillow reads many more headers (TIFF, ...) lazily; it is optional (a gradio dependency)."""
    try:
        import io

        from PIL import Image
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own decompression-bomb warning: ours is the limit
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Exception:  # noqa: BLE001 - a format Pillow does not know, or its own bomb check: measured after decoding
        return None


@dataclass(frozen=True)
class FolderScan:
    """What `scan_folder` found below `root`: the wanted files and the other (visible) ones."""

    root: Path
    files: list[Path] = field(default_factory=list)  # wanted extensions, in scan order
    others: list[Path] = field(default_factory=list)  # visible files with other extensions

    def relative(self, path: Path) -> str:
        """`path` below the root, with forward slashes: 'sub/photo.jpg'."""
        return path.relative_to(self.root).as_posix()

    def names(self) -> list[str]:
        return [self.relative(path) for path in self.files]


def scan_folder(root: str | Path, extensions: Collection[str] = IMAGE_EXTENSIONS, recursive: bool = True) -> FolderScan:
    """The files below `root` whose extension (any case) is in `extensions`, in the order and
    with the skipping rules the module docstring gives. A missing folder finds nothing."""
    root = Path(root)
    wanted = {extension.lower() for extension in extensions}
    found: list[tuple[tuple[str, ...], Path]] = []
    for folder, subfolders, names in os.walk(root):
        # pruning in place keeps os.walk out of hidden folders (and of everything when not recursive)
        subfolders[:] = [name for name in subfolders if recursive and not is_hidden(name)]
        base = Path(folder)
        for name in names:
            path = base / name
            if not is_hidden(name) and path.is_file():  # not broken links, sockets, fifos
                found.append((path.relative_to(root).parts, path))
    found.sort(key=lambda item: item[0])
    files = [path for _, path in found if path.suffix.lower() in wanted]
    others = [path for _, path in found if path.suffix.lower() not in wanted]
    return FolderScan(root, files, others)


def image_files(root: str | Path, recursive: bool = True) -> list[Path]:
    """The images below `root` (see `scan_folder`)."""
    return scan_folder(root, IMAGE_EXTENSIONS, recursive).files
