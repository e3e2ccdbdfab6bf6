"""What a job processes: every image and video frame named by --input, and each one's output name.

--input is read by these rules, in this order:
  an existing folder     every image and video below it (recursively, sorted, hidden files left
                         out: dav2.media.scan_folder, the scanner dav2-run uses)
  an existing image or video file, by extension
  an existing other file a text file of paths, one a line ('#' starts a comment; relative paths
                         are relative to the text file's folder)
  anything else          a glob (`photos/**/*.jpg`; `**` crosses folders)

A URI (s3://bucket/images/, gs://..., any filesystem pyarrow.fs knows; storage.py) is a
prefix listed recursively with the rules of a folder (image extensions, hidden names left out,
sorted folder by folder, names relative to the prefix), or one image object; a list file may
name URIs too (all its lines URIs, or all local paths). Videos at a URI are refused: OpenCV
reads video from files, so mount the bucket or download the clips.

Output names are those dav2-run gives a folder's files (dav2.runtime.sources.frame_names): the
path below the common folder without its extension ("sub/photo"), both extensions kept when two
files share a stem. A video's frames are named "<video name>/frame_000012", as dav2-run names
a video's frames, so a corpus of clips becomes one folder of frames per clip.

Videos are expanded into frames here, on the driver, from the frame count in the video's
header (`--frame-stride n`: frames 0, n, 2n, ...), so that every frame is its own row in the
manifest and --resume skips frame by frame. A header that overstates the count gives `failed`
rows for the frames that are not there; one that understates it loses the tail (OpenCV's
count is exact for the common containers: MP4, MKV, AVI, WebM).
"""

import glob
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2

from dav2.batch import storage
from dav2.batch.storage import Remote
from dav2.errors import Dav2Error
from dav2.files import InputError, check_user_file, read_user_text
from dav2.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_hidden, is_image, is_video, scan_folder
from dav2.runtime.sources import frame_names

IMAGE_FRAME = -1  # the `frame` of an item that is a whole image
MAX_LIST_BYTES = 64 * 1024 * 1024  # a text file of paths: about half a million lines


@dataclass(frozen=True)
class InputItem:
    """One picture to process: an image file, or one frame of a video file."""

    source: str  # absolute path of the file, or its URI ("s3://bucket/images/photo.jpg")
    name: str  # output name without extension: "photo", "sub/photo", "clip/frame_000012"
    frame: int = IMAGE_FRAME  # the frame's index in its video; IMAGE_FRAME for an image
    filesystem: str = ""  # a URI source's filesystem URI (storage.Remote.filesystem); "" for a path

    @property
    def key(self) -> tuple[str, int]:
        """What identifies the item in the manifest (and for --resume)."""
        return self.source, self.frame


@dataclass(frozen=True)
class InputSet:
    """The files an --input names (images and videos), below one root folder."""

    root: Path | PurePosixPath  # PurePosixPath of the common prefix's URI for URIs
    files: list[Path] | list[Remote]
    ignored: int = 0  # visible files of other kinds in a scanned folder


def find_inputs(spec: str) -> InputSet:
    """The files --input names, by the rules of the module docstring."""
    where = storage.location(spec)
    if isinstance(where, Remote):
        return from_uri(where)
    path = where.expanduser()
    if path.is_dir():
        scan = scan_folder(path, IMAGE_EXTENSIONS | VIDEO_EXTENSIONS)
        return InputSet(path.resolve(), [file.resolve() for file in scan.files], len(scan.others))
    if path.is_file() and (is_image(path) or is_video(path)):
        return InputSet(path.resolve().parent, [path.resolve()])
    if path.is_file():
        return from_list_file(path)
    return from_glob(spec)


def from_list_file(path: Path) -> InputSet:
    """A text file of paths, one a line."""
    # measured before it is read (a 6 GB file, /dev/zero): one line; split a larger list into jobs
    lines = read_user_text(path, MAX_LIST_BYTES, "list of inputs").splitlines()
    base = path.resolve().parent
    files = []
    for line in lines:
        entry = line.split("#", 1)[0].strip()
        if entry:
            where = storage.location(entry)
            files.append(where if isinstance(where, Remote) else (base / where).resolve())
    if not files:
        raise Dav2Error(f"{path} lists no paths")
    remote = [file for file in files if isinstance(file, Remote)]
    if not remote:
        return InputSet(common_root(files), files)
    if len(remote) < len(files):
        raise Dav2Error(f"{path} lists both URIs and local paths; give each kind its own job")
    for file in remote:
        refuse_video(file)
    return InputSet(common_prefix(remote), remote)


def from_uri(where: Remote) -> InputSet:
    """One image object, or every image below a prefix (a folder's rules; videos refused)."""
    if is_image(where.key) and storage.is_file(where):
        return InputSet(PurePosixPath(where.uri).parent, [where])
    found = []
    ignored = 0
    for file in storage.list_files(where):
        parts = PurePosixPath(file.uri).relative_to(PurePosixPath(where.uri)).parts
        if any(is_hidden(part) for part in parts):
            continue
        if is_video(file.key):
            refuse_video(file)
        if is_image(file.key):
            found.append((parts, file))
        else:
            ignored += 1
    if not found and not storage.is_dir(where):
        raise Dav2Error(f"--input {where}: no such object or prefix")
    found.sort(key=lambda entry: entry[0])
    return InputSet(PurePosixPath(where.uri), [file for _, file in found], ignored)


def refuse_video(file: Remote) -> None:
    if is_video(file.key):
        raise Dav2Error(
            f"{file} is a video at a URI; dav2-batch reads videos from local files: mount the bucket or download it"
        )


def common_prefix(files: list[Remote]) -> PurePosixPath:
    return PurePosixPath(os.path.commonpath([str(PurePosixPath(file.uri).parent) for file in files]))


def from_glob(pattern: str) -> InputSet:
    """The images and videos a glob matches, sorted."""
    matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
    files = [Path(match).resolve() for match in matches if Path(match).is_file()]
    files = [file for file in files if is_image(file) or is_video(file)]
    if not files:
        raise Dav2Error(f"--input {pattern}: no such folder or file, and no images or videos match it as a glob")
    return InputSet(common_root(files), files)


def common_root(files: list[Path]) -> Path:
    return Path(os.path.commonpath([str(file.parent) for file in files]))


def expand(inputs: InputSet, frame_stride: int = 1) -> list[InputItem]:
    """One item per image and per kept video frame, named as the module docstring says."""
    names = frame_names(inputs.root, [naming_path(file) for file in inputs.files])
    items: list[InputItem] = []
    for file, name in zip(inputs.files, names):
        if isinstance(file, Remote):
            items.append(InputItem(file.uri, name, IMAGE_FRAME, file.filesystem))
        elif is_video(file):
            items.extend(video_items(file, name, frame_stride))
        else:
            items.append(InputItem(str(file), name))
    check_unique(items)
    return items


def naming_path(file: Path | Remote) -> Path | PurePosixPath:
    """What output names are made from: the path, or the URI as a POSIX path ("s3:/bucket/a.jpg")."""
    return PurePosixPath(file.uri) if isinstance(file, Remote) else file


def video_items(file: Path, name: str, frame_stride: int) -> list[InputItem]:
    """Frames 0, stride, 2*stride, ... of a video (none when it cannot be opened: one failed row)."""
    count = video_frame_count(file)
    if count <= 0:
        return [InputItem(str(file), f"{name}/frame_{0:06d}", 0)]  # decoding reports why it failed
    return [InputItem(str(file), f"{name}/frame_{index:06d}", index) for index in range(0, count, frame_stride)]


def video_frame_count(file: Path) -> int:
    if regular_file_problem(str(file)):  # one failed row says why; never open a FIFO
        return 0
    capture = cv2.VideoCapture(str(file))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


def regular_file_problem(source: str) -> str:
    """Why a local video cannot be opened safely (a FIFO, a device, a folder, missing), or "".
    From the file's status, before OpenCV opens it: a FIFO would block a decode task for ever.
    Videos are streamed, so their size is not limited here."""
    try:
        check_user_file(source, 1 << 62, "video")
    except InputError as exc:
        return str(exc)
    return ""


def check_unique(items: list[InputItem]) -> None:
    """Refuse two items that would write one output (a clip "a.mp4" beside a folder "a/")."""
    seen: dict[str, InputItem] = {}
    for item in items:
        other = seen.setdefault(item.name, item)
        if other is not item:
            raise Dav2Error(f"{other.source} and {item.source} would be saved under one name ({item.name}); rename one")


def collect_items(spec: str, frame_stride: int = 1, max_items: int | None = None) -> list[InputItem]:
    """The items of --input (at most `max_items`); a Dav2Error when there are none."""
    items = expand(find_inputs(spec), frame_stride)
    if not items:
        raise Dav2Error(f"no images or videos found in {spec}")
    return items[:max_items] if max_items is not None else items
