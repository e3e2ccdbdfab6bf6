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
"""

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def read_image(path: str | Path) -> np.ndarray | None:
    """BGR uint8 image, or None when the file cannot be decoded (empty, corrupt, not an image)."""
    data = np.fromfile(str(path), dtype=np.uint8)  # also works for non-ASCII paths
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


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
