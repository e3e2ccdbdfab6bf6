"""dav2.media: one image reader and one folder scanner, the same for dav2-run, calibration and dav2-eval."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from dav2.calibration.dataset import CalibrationSet
from dav2.evaluation.dense_run import DEPTH_EXTENSIONS, list_files
from dav2.media import IMAGE_EXTENSIONS, image_files, is_image, is_video, read_image, scan_folder
from dav2.runtime.sources import FolderSource

NAMES = ["a.png", "a/b.png", "a0.png", "B.JPG", "sub/deeper/c.jpg", "notes.txt"]
HIDDEN = [".DS_Store", "._a.png", ".cache/d.png", "sub/.hidden.png"]


def write_png(path: Path, value: int = 100, shape=(8, 12, 3)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full(shape, value, np.uint8))


@pytest.fixture
def tree(tmp_path) -> Path:
    for index, name in enumerate(NAMES + HIDDEN):
        if name.endswith(".txt") or name == ".DS_Store":
            (tmp_path / name).write_text("not an image")
        else:
            write_png(tmp_path / name, 10 * index)
    (tmp_path / "folder.png").mkdir()  # a folder whose name looks like an image
    return tmp_path


def test_scan_is_sorted_folder_by_folder_and_skips_hidden(tree):
    scan = scan_folder(tree)
    # "a/b.png" sorts before "a.png" (folder "a" < file "a.png"), never between "a.png" and "a0.png"
    assert scan.names() == ["B.JPG", "a/b.png", "a.png", "a0.png", "sub/deeper/c.jpg"]
    assert [scan.relative(p) for p in scan.others] == ["notes.txt"]
    assert image_files(tree) == scan.files


def test_scan_without_recursion_and_with_other_extensions(tree):
    assert scan_folder(tree, recursive=False).names() == ["B.JPG", "a.png", "a0.png"]
    assert scan_folder(tree, {".TXT"}).names() == ["notes.txt"]
    assert scan_folder(tree / "missing").files == []


def test_hidden_root_is_still_scanned(tmp_path):
    root = tmp_path / ".photos"
    write_png(root / "x.png")
    assert scan_folder(root).names() == ["x.png"]


def test_extension_checks():
    assert is_image("X.JPEG") and is_image(Path("a/b.webp")) and not is_image("clip.mp4")
    assert is_video("clip.MP4") and not is_video("photo.png")
    assert ".png" in IMAGE_EXTENSIONS


def test_read_image_decodes_to_bgr8_or_none(tmp_path):
    grey16 = tmp_path / "grey16 é.png"  # non-ASCII name, 16-bit single channel
    cv2.imencode(".png", np.full((4, 6), 65535, np.uint16))[1].tofile(str(grey16))
    image = read_image(grey16)
    assert image.dtype == np.uint8 and image.shape == (4, 6, 3) and (image == 255).all()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "corrupt.jpg").write_bytes(b"not a jpeg")
    assert read_image(tmp_path / "empty.png") is None
    assert read_image(tmp_path / "corrupt.jpg") is None


def test_run_calibration_and_eval_see_the_same_images(tree, capsys):
    expected = ["B.JPG", "a/b.png", "a.png", "a0.png", "sub/deeper/c.jpg"]
    folder = FolderSource(tree)
    assert [frame.name for frame in folder] == [Path(name).with_suffix("").as_posix() for name in expected]
    # only notes.txt is reported; hidden files are not the user's and not counted
    assert "skipping 1 file(s)" in capsys.readouterr().err
    calibration = CalibrationSet(tree, (28, 28), count=10, holdout=0)
    assert sorted(calibration.identity()["files"]) == sorted(expected)
    # dav2-eval once listed folders named like images ("folder.png") and hidden files
    assert list_files(tree, IMAGE_EXTENSIONS) == expected
    assert list_files(tree, DEPTH_EXTENSIONS) == ["a/b.png", "a.png", "a0.png"]
