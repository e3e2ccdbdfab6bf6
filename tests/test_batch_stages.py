"""dav2-batch's stages, run in this process without Ray, on an artifact that takes uint8 frames.

Ray Data only schedules dav2-batch's three stages (decode + preprocess, inference, write); what
they compute is plain functions over column batches (dav2.batch.stages). Here they run one after
the other as Ray would call them, so the tensors they make are checked where Ray is not
installed: a `dav2-export --input uint8` artifact once failed every row ("Unexpected input data
type ... expected uint8") because the decode stage built float tensors itself. Now the stage uses
dav2-run's own feeder, and the files equal what the `dav2-run` command writes, byte for byte.
The last test runs the real dav2-batch (Ray Data, a local Ray) on the same artifact.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_batch import NO_RAY, batch, local_ray

from conftest import IMAGES, export
from dav2.batch.inputs import collect_items
from dav2.batch.stages import DecodeSettings, InferenceActor, WriteSettings, batch_of, decode_batch, write_batch
from dav2.media import DEFAULT_LIMITS
from dav2.metadata import ArtifactMetadata
from dav2.processing import DEFAULT_MAX_TOKENS
from dav2.runtime.backends import open_backend
from dav2.runtime.feed import FeedSpec

pytestmark = pytest.mark.slow  # a uint8 export and dav2-batch on a local Ray

PHOTOS = ["demo02.jpg", "demo05.jpg"]
INPUT_SIZE = 56


@pytest.fixture(scope="module")
def uint8_small(vits_checkpoint, tmp_path_factory) -> Path:
    """A dynamic ONNX export that takes uint8 BGR frames, traced at 56x56."""
    folder = tmp_path_factory.mktemp("u8-small")
    return export(vits_checkpoint, folder, "--onnx", "--dynamic", "--input", "uint8", "--height", "56", "--width", "56")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        shutil.copy(IMAGES / name, folder / name)
    return folder


def run_stages(model: Path, folder: Path, output: Path, fmt: str, **write) -> dict[str, np.ndarray]:
    """decode -> inference -> write over one batch, as dav2-batch's Ray plan calls them (`write`:
    more WriteSettings, e.g. a stored calibration)."""
    items = collect_items(str(folder))
    names = ["source", "frame", "name"]
    items_batch = batch_of([{"source": i.source, "frame": i.frame, "name": i.name} for i in items], names)
    with open_backend(model, threads=1) as backend:
        feed = FeedSpec.of(backend, INPUT_SIZE, "exact")
    decoded = decode_batch(items_batch, DecodeSettings(feed, DEFAULT_MAX_TOKENS, DEFAULT_LIMITS))
    actor = InferenceActor(str(model), threads=1)
    inferred = actor(decoded)
    actor.backend.close()
    actor.backend = None
    return write_batch(inferred, WriteSettings(str(output), fmt, "spectral", "disparity", **write))


def dav2_run(*args) -> None:
    exe = shutil.which("dav2-run")
    command = [exe] if exe else [sys.executable, "-c", "from dav2.cli import run_main; run_main()"]
    done = subprocess.run(command + [str(arg) for arg in args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_the_decode_stage_passes_uint8_frames_to_a_uint8_artifact(uint8_small, photos, tmp_path):
    assert ArtifactMetadata.read(uint8_small).takes_uint8
    rows = run_stages(uint8_small, photos, tmp_path / "out", "npy")
    assert list(rows["status"]) == ["ok", "ok"], list(rows["error"])
    # the network's output size, recorded from the depth itself: 56 on the short side
    assert all(min(h, w) == INPUT_SIZE for h, w in zip(rows["network_height"], rows["network_width"]))


@pytest.mark.parametrize("fmt", ["png16", "npy"])
def test_uint8_artifact_outputs_equal_dav2_run_byte_for_byte(uint8_small, photos, tmp_path, fmt):
    rows = run_stages(uint8_small, photos, tmp_path / "batch", fmt)
    assert list(rows["status"]) == ["ok", "ok"], list(rows["error"])
    dav2_run("--model", uint8_small, "--source", photos, "--save", tmp_path / "run", "--format", fmt,
             "--input-size", INPUT_SIZE)  # fmt: skip
    suffix = ".npy" if fmt == "npy" else ".png"
    expected = {p.name: p.read_bytes() for p in sorted((tmp_path / "run").glob(f"*{suffix}"))}
    assert sorted(expected) == [Path(name).stem + suffix for name in PHOTOS]
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "batch").glob(f"*{suffix}"))} == expected


def test_dav2_batch_on_a_uint8_artifact_equals_dav2_run(uint8_small, photos, tmp_path):
    """The real command on Ray Data: every row processed, the files dav2-run's."""
    pytest.importorskip("ray.data", reason=NO_RAY)
    session = local_ray()
    next(session)
    try:
        code, text, summary = batch("--model", str(uint8_small), "--input", str(photos), "--output",
                                    str(tmp_path / "batch"), "--input-size", str(INPUT_SIZE))  # fmt: skip
    finally:
        next(session, None)  # shuts Ray down
    assert code == 0, text
    assert (summary["processed"], summary["failed"]) == (len(PHOTOS), 0), text
    dav2_run("--model", uint8_small, "--source", photos, "--save", tmp_path / "run", "--format", "png16",
             "--input-size", INPUT_SIZE)  # fmt: skip
    expected = {p.name: p.read_bytes() for p in sorted((tmp_path / "run").glob("*.png"))}
    assert len(expected) == len(PHOTOS)
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "batch").glob("*.png"))} == expected
