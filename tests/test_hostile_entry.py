"""Hostile inputs at the remaining entry points (issue #22): sidecars, dav2-batch, dav2-export.

The same promise and the same method as test_hostile_inputs.py (whose helpers this file uses):
the real console script in a subprocess under an address-space limit and a timeout; exactly one
`error:` line, a non-zero exit, no traceback, no temporary file, inputs and earlier outputs
byte-identical.

dav2-batch imports Ray before it checks where it writes, and Ray alone reserves more address
space than MODEL_LIMIT, so its refusals run under BATCH_LIMIT; each of them happens before Ray
starts, the model is hashed or an input is read.
"""

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import test_hostile_inputs
from test_hostile_inputs import BIN, GIB, MODEL_LIMIT, cli, fifo, nested, refused, sparse

from conftest import ROOT
from dav2.metadata import ArtifactMetadata, sidecar_path

pytestmark = pytest.mark.slow  # dav2 commands in subprocesses

place = test_hostile_inputs.place  # the fixture: a folder checked unchanged at the end of the case
BATCH_LIMIT = 4 * GIB


@pytest.fixture
def model_here(dynamic_onnx, place) -> Path:
    """The test ONNX model linked into the case's folder, with a copy of its sidecar to spoil."""
    model = place / dynamic_onnx.name
    model.symlink_to(dynamic_onnx)
    return model


def photo(path: Path) -> Path:
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (42, 56, 3), np.uint8))
    return path


# --- sidecars ------------------------------------------------------------------------------------


def spoilt_sidecar(model: Path, dynamic_onnx: Path, **changes) -> Path:
    record = json.loads(sidecar_path(dynamic_onnx).read_text())
    record.update(changes)
    path = sidecar_path(model)
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize("kind", ["deep", "fifo", "sparse", "absolute", "escaping", "binary"])
def test_a_hostile_sidecar_is_one_line(dynamic_onnx, model_here, place, tiny_photo, kind):
    sidecar = sidecar_path(model_here)
    if kind == "deep":
        sidecar.write_text(nested(200_000))
    elif kind == "fifo":
        fifo(sidecar)
    elif kind == "sparse":
        sparse(sidecar, 6 * GIB)
    elif kind == "binary":
        sidecar.write_bytes(b"\xff\xfe\x00" * 100)
    else:
        weights = "/etc/passwd" if kind == "absolute" else "../../weights.bin"
        spoilt_sidecar(model_here, dynamic_onnx, weights_file=weights)
    place.freeze()
    done = cli("dav2-run", "--model", model_here, "--source", tiny_photo, "--input-size", "28", memory=MODEL_LIMIT)
    line = refused(done)
    expected = {
        "deep": "nested",
        "fifo": "not a regular file",
        "sparse": "over the limit",
        "binary": "not UTF-8",
        "absolute": "weights_file",
        "escaping": "weights_file",
    }[kind]
    assert expected in line and "metadata file" in line, line


@pytest.mark.parametrize("name", ["/abs/model.bin", "../model.bin", "sub/model.bin", "..", ""])
def test_a_weights_file_must_be_a_name_beside_the_artifact(dynamic_onnx, name):
    record = json.loads(sidecar_path(dynamic_onnx).read_text())
    with pytest.raises(Exception) as caught:
        ArtifactMetadata.from_json(json.dumps({**record, "weights_file": name}), "sidecar")
    assert type(caught.value).__name__ == "Dav2Error" and "weights_file" in str(caught.value)
    plain = ArtifactMetadata.from_json(json.dumps({**record, "weights_file": "model.onnx.data"}), "sidecar")
    assert plain.weights_file == "model.onnx.data"


@pytest.fixture
def tiny_photo(place) -> Path:
    return photo(place / "photo.png")


# --- dav2-batch ----------------------------------------------------------------------------------


def batch(*args, memory: int = BATCH_LIMIT):
    return cli("dav2-batch", *args, memory=memory, timeout=180)


@pytest.fixture
def corpus(place) -> Path:
    folder = place / "photos"
    folder.mkdir()
    photo(folder / "a.png")
    return folder


def test_a_batch_list_is_measured_before_it_is_read(dynamic_onnx, place):
    pytest.importorskip("ray.data")
    listing = sparse(place / "list.txt", 6 * GIB)
    place.freeze()
    line = refused(batch("--model", dynamic_onnx, "--input", listing, "--output", place / "out"))
    assert "list of inputs" in line and "over the limit" in line


@pytest.mark.parametrize("where", ["device", "under-a-file", "long"])
def test_a_batch_manifest_that_cannot_be_written_is_refused_before_any_work(dynamic_onnx, corpus, place, where):
    pytest.importorskip("ray.data")
    manifest = {
        "device": Path("/dev/null"),  # a character device: never replaced, no .parts folder beside it
        "under-a-file": corpus / "a.png" / "manifest.parquet",
        "long": place / ("m" * 300 + ".parquet"),
    }[where]
    place.freeze()
    done = batch("--model", dynamic_onnx, "--input", corpus, "--output", place / "out", "--manifest", manifest)
    line = refused(done)
    assert "cannot write" in line or "could not write" in line, line
    assert not Path("/dev/null.parts").exists()


@pytest.mark.parametrize("where", ["device", "read-only", "inside", "inside-link"])
def test_a_batch_output_that_cannot_be_used_is_refused_before_any_work(dynamic_onnx, corpus, place, where):
    """(A regular file as --output is click's own usage error.)"""
    pytest.importorskip("ray.data")
    (place / "link").symlink_to(corpus)
    output = {
        "device": Path("/dev/null"),
        "read-only": Path("/sys/dav2-out"),  # sysfs: no file can be made there, even by root
        "inside": corpus / "depth",
        "inside-link": place / "link" / "depth",  # the same folder through a link
    }[where]
    place.freeze()
    line = refused(batch("--model", dynamic_onnx, "--input", corpus, "--output", output))
    if where.startswith("inside"):
        assert "--resume" in line and "inside the input folder" in line, line
    else:
        assert "cannot write in --output" in line, line


LISTED = """
import json, sys
from dav2.batch.inputs import collect_items
from dav2.batch.stages import read_pictures
from dav2.media import DEFAULT_LIMITS
rows = [{"source": item.source, "frame": item.frame} for item in collect_items(sys.argv[1])]
print(json.dumps([[row["source"], image is not None, error] for row, (image, error, _) in
                  zip(rows, read_pictures(rows, DEFAULT_LIMITS))]))
"""


def test_a_listed_fifo_is_a_failed_row_not_a_hang(place):
    """A list naming FIFOs (an image and a video by their names): each is one failed row, found
    from the file's status before anything opens it (opening a FIFO waits for a writer; the
    driver lists the video's frames, a decode task reads them: neither may block)."""
    good = photo(place / "good.png")
    fifo(place / "pipe.png")
    fifo(place / "pipe.mp4")
    (place / "list.txt").write_text("good.png\npipe.png\npipe.mp4\n")
    place.freeze()
    done = subprocess.run(
        [sys.executable, "-c", LISTED, str(place / "list.txt")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    by_source = {Path(source).name: (ok, error) for source, ok, error in json.loads(done.stdout)}
    assert by_source[good.name] == (True, "")
    for name in ("pipe.png", "pipe.mp4"):
        ok, error = by_source[name]
        assert not ok and "not a regular file" in error, (name, error)


# --- dav2-export ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["device", "read-only", "long", "under-a-file"])
def test_an_export_output_that_cannot_be_used_is_refused_before_any_work(vits_checkpoint, place, where):
    (place / "taken").write_text("an earlier file")
    output = {
        "device": Path("/dev/null"),
        "read-only": Path("/sys/dav2-models"),
        "long": place / ("m" * 300),
        "under-a-file": place / "taken" / "models",
    }[where]
    place.freeze()
    done = cli("dav2-export", "--checkpoint", vits_checkpoint, "--onnx", "--output", output, memory=MODEL_LIMIT)
    line = refused(done)
    assert "cannot write in --output" in line, line
    assert "loading" not in done.stderr  # refused before the checkpoint was opened


def test_a_full_disk_during_an_export_is_one_line_and_keeps_earlier_artifacts(vits_checkpoint, place):
    """A file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes every write past 4 MB fail as a
    full disk does: the ONNX graph cannot be written. One line, and the output folder holds what
    it held (an earlier artifact untouched, no scratch folder left; the folder's own time changes)."""
    output = place / "models"
    output.mkdir()
    (output / "earlier.onnx").write_bytes(b"an earlier artifact")

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MODEL_LIMIT * 2, MODEL_LIMIT * 2))
        resource.setrlimit(resource.RLIMIT_FSIZE, (4 << 20, 4 << 20))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    done = subprocess.run(
        [str(BIN / "dav2-export"), "--checkpoint", str(vits_checkpoint), "--onnx", "--output", str(output)],
        capture_output=True,
        text=True,
        preexec_fn=limits,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    line = refused(done)
    assert "could not write" in line and "nothing half-written" in line, line
    assert {path.name: path.read_bytes() for path in output.iterdir()} == {"earlier.onnx": b"an earlier artifact"}


# --- dav2-app ------------------------------------------------------------------------------------


def test_the_app_image_tab_hands_over_the_upload_undecoded(dynamic_onnx, tmp_path):
    """A 12000x12000 grey PNG (a few hundred KB): Gradio's image input gives dav2 the uploaded
    file itself (an RGB component would decode and re-save it first, 144 MP before dav2's 50 MP
    check); and the service points GRADIO_TEMP_DIR at its own folder before Gradio is imported."""
    pytest.importorskip("gradio")
    from gradio.data_classes import ImageData

    from dav2.app import DepthService, build_app

    grey = tmp_path / "grey.png"
    assert cv2.imwrite(str(grey), np.zeros((12000, 12000), np.uint8))
    with DepthService(dynamic_onnx.parent) as service:
        assert os.environ["GRADIO_TEMP_DIR"] == str(service.gradio_cache)
        page = build_app(service)
        image = next(block for block in page.blocks.values() if getattr(block, "elem_id", None) == "input-image")
        handed = image.preprocess(ImageData(path=str(grey), orig_name="grey.png"))
    assert handed == str(grey)
