"""The calibration image set: reproducible, disjoint from the held-out images, hashed."""

import shutil

import numpy as np
import pytest

from conftest import IMAGES, VIDEO
from dav2 import processing
from dav2.calibration.dataset import CalibrationSet
from dav2.errors import Dav2Error


def test_holdout_and_calibration_images_are_disjoint_and_seeded():
    first = CalibrationSet(IMAGES, (70, 98), count=8, holdout=3, seed=0)
    again = CalibrationSet(IMAGES, (70, 98), count=8, holdout=3, seed=0)
    other = CalibrationSet(IMAGES, (70, 98), count=8, holdout=3, seed=1)
    names = [p.name for p in first.pictures]
    held = [p.name for p in first.holdout]
    assert len(names) == 8 and len(held) == 3
    assert not set(names) & set(held)
    assert names == [p.name for p in again.pictures]
    assert names != [p.name for p in other.pictures]
    assert first.identity()["sha256"] == again.identity()["sha256"] != other.identity()["sha256"]


def test_validation_images_are_apart_from_calibration_and_held_out():
    """Accuracy-controlled INT8 tunes on the validation images; the accuracy report must not
    see them, nor may the quantizer calibrate on them."""
    plain = CalibrationSet(IMAGES, (56, 56), count=5, holdout=2)
    checked = CalibrationSet(IMAGES, (56, 56), count=5, holdout=2, validation=3)
    held, validation, calib = (
        {p.name for p in group} for group in (checked.holdout, checked.validation, checked.pictures)
    )
    assert (len(held), len(validation), len(calib)) == (2, 3, 5)
    assert not held & validation and not held & calib and not validation & calib
    assert [p.name for p in plain.holdout] == [p.name for p in checked.holdout]  # the report's images do not move
    assert checked.identity()["validation"] == [p.name for p in checked.validation]
    tensors = checked.validation_tensors()
    assert len(tensors) == 3 and all(t.shape == (1, 3, 56, 56) for t in tensors)
    assert plain.validation == [] and plain.identity()["validation"] == []


def test_identity_records_the_set():
    calib = CalibrationSet(IMAGES, (70, 98), count=5, holdout=2, seed=3)
    identity = calib.identity()
    assert identity["count"] == 5 and identity["seed"] == 3 and identity["kind"] == "folder"
    assert identity["files"] == [p.name for p in calib.pictures]
    assert identity["holdout"] == [p.name for p in calib.holdout]
    assert identity["input_hw"] == [70, 98]
    assert len(identity["sha256"]) == 64


def test_hash_follows_the_image_bytes(tmp_path):
    for name in ("demo01.jpg", "demo02.jpg", "demo03.jpg"):
        shutil.copy(IMAGES / name, tmp_path / name)
    before = CalibrationSet(tmp_path, (28, 28), count=3, holdout=0).identity()["sha256"]
    shutil.copy(IMAGES / "demo04.jpg", tmp_path / "demo02.jpg")  # same name, other picture
    after = CalibrationSet(tmp_path, (28, 28), count=3, holdout=0).identity()["sha256"]
    assert before != after


def test_tensors_are_the_shared_preprocessing():
    calib = CalibrationSet(IMAGES, (112, 154), count=2, holdout=0)
    tensors = list(calib.tensors())
    expected = processing.preprocess(calib.load(calib.pictures[0]), fixed_hw=(112, 154))
    assert len(tensors) == 2
    np.testing.assert_array_equal(tensors[0], expected)
    assert tensors[0].dtype == np.float32 and tensors[0].shape == (1, 3, 112, 154)


def test_batches_have_one_fixed_size_and_drop_the_remainder():
    calib = CalibrationSet(IMAGES, (56, 56), count=7, holdout=0)
    batches = list(calib.batches(3))
    assert [b.shape for b in batches] == [(3, 3, 56, 56)] * 2
    assert all(b.flags["C_CONTIGUOUS"] and b.dtype == np.float32 for b in batches)
    tensors = list(calib.tensors())
    np.testing.assert_array_equal(batches[1][0], tensors[3][0])
    assert [b.shape for b in calib.batches(2, (28, 42))][0] == (2, 3, 28, 42)


def test_small_sets_keep_one_calibration_image(tmp_path):
    for name in ("demo01.jpg", "demo02.jpg"):
        shutil.copy(IMAGES / name, tmp_path / name)
    calib = CalibrationSet(tmp_path, (28, 28), count=32, holdout=4)
    assert len(calib) == 1 and len(calib.holdout) == 1


def test_video_frames_are_spread_over_the_clip():
    calib = CalibrationSet(VIDEO, (56, 98), count=6, holdout=2)  # 48 frames
    names = sorted(p.name for p in calib.pictures + calib.holdout)
    assert len(names) == 8 and len(set(names)) == 8
    indices = [int(n.split("_")[1]) for n in names]
    assert indices[0] == 0 and indices[-1] > 40
    assert calib.identity()["kind"] == "video"
    assert next(calib.tensors()).shape == (1, 3, 56, 98)


def test_bad_sources_give_clear_errors(tmp_path):
    with pytest.raises(Dav2Error, match="not found"):
        CalibrationSet(tmp_path / "missing", (28, 28))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(Dav2Error, match="at least 2"):
        CalibrationSet(tmp_path, (28, 28))
    with pytest.raises(Dav2Error, match="neither a folder"):
        CalibrationSet(tmp_path / "notes.txt", (28, 28))
    with pytest.raises(Dav2Error, match="at least 1"):
        CalibrationSet(IMAGES, (28, 28), count=0)
