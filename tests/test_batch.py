"""dav2-batch (issue #14): a corpus on Ray Data gives dav2-run's outputs, records every input
in its manifest, and loses nothing when stopped and resumed.

The jobs share one local Ray session (module-scoped: Ray takes seconds to start); dav2-batch
finds it open and leaves it open. The interrupted job runs as a real process that joins that
session with --address and is stopped with SIGINT, as Ctrl-C does.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import IMAGES, ROOT, default_ctrl_c
from dav2.errors import Dav2Error

pytestmark = pytest.mark.slow  # dav2-batch on a local Ray

PHOTOS = ["demo02.jpg", "demo03.jpg", "demo06.jpg", "demo08.jpg"]  # 640 wide: quick at --input-size 196
CORRUPT = "corrupt.jpg"
FAST = ["--input-size", "196"]
NO_RAY = "dav2-batch needs Ray Data: pip install 'dav2[batch]'"


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module's jobs."""
    yield from local_ray()


def local_ray():
    """A quiet local Ray with 2 CPUs for a test module, shut down afterwards (a generator for
    module fixtures: test_batch_s3 starts it after its S3 server, whose settings workers inherit)."""
    from dav2.batch.cluster import quiet_ray

    quiet_ray()
    ray = pytest.importorskip("ray", reason=NO_RAY)
    pytest.importorskip("ray.data", reason=NO_RAY)
    import logging

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Four real photos, one in a sub-folder, and a JPEG cut short (corrupt)."""
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "sub").mkdir()
    for name in PHOTOS[:3]:
        shutil.copy(IMAGES / name, folder / name)
    shutil.copy(IMAGES / PHOTOS[3], folder / "sub" / PHOTOS[3])
    (folder / CORRUPT).write_bytes((IMAGES / PHOTOS[0]).read_bytes()[:2000])
    return folder


def batch(*args: str) -> tuple[int, str, dict | None]:
    from dav2.cli import batch_main

    result = CliRunner().invoke(batch_main, [*args, "--json"])
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if result.exit_code == 0 and lines else None
    return result.exit_code, result.output, summary


def dav2_run(model: Path, source: Path, save: Path, fmt: str) -> None:
    from dav2.cli import run_main

    result = CliRunner().invoke(run_main, ["--model", str(model), "--source", str(source), "--save", str(save),
                                           "--format", fmt, *FAST])  # fmt: skip
    assert result.exit_code == 0, result.output


def read_manifest(path: Path) -> dict[str, dict]:
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    return {Path(row["source"]).name: row for row in rows}


def files_below(folder: Path, suffix: str) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob(f"*{suffix}"))}


@pytest.fixture(scope="module")
def png16_job(ray_session, corpus, dynamic_onnx, tmp_path_factory) -> tuple[Path, dict]:
    output = tmp_path_factory.mktemp("batch") / "png16"
    code, text, summary = batch("--model", str(dynamic_onnx), "--input", str(corpus), "--output", str(output), *FAST)
    assert code == 0, text
    return output, summary


def test_png16_outputs_equal_dav2_run_byte_for_byte(png16_job, corpus, dynamic_onnx, tmp_path):
    output, summary = png16_job
    assert (summary["processed"], summary["skipped"], summary["failed"], summary["total"]) == (4, 0, 1, 5)
    dav2_run(dynamic_onnx, corpus, tmp_path / "run", "png16")
    expected = files_below(tmp_path / "run", ".png")
    assert sorted(expected) == ["demo02.png", "demo03.png", "demo06.png", "sub/demo08.png"]
    assert files_below(output, ".png") == expected


def test_manifest_lists_every_input_and_the_corrupt_one_as_failed(png16_job, corpus, dynamic_onnx):
    output, _ = png16_job
    rows = read_manifest(output / "manifest.parquet")
    assert sorted(rows) == sorted([*PHOTOS, CORRUPT])
    bad = rows[CORRUPT]
    assert bad["status"] == "failed" and "not a readable image" in bad["error"] and bad["output"] == ""
    good = rows["demo02.jpg"]
    assert good["status"] == "ok" and good["error"] == "" and Path(good["output"]).is_file()
    assert (good["image_width"], good["image_height"]) == (640, 426)
    assert (good["network_width"], good["network_height"]) == (294, 196)  # upstream's rule at input size 196
    assert len({row["model_sha256"] for row in rows.values()}) == 1 and len(good["model_sha256"]) == 64
    assert good["seconds"] > 0 and good["finished_at"] is not None


def test_resume_processes_nothing_and_a_plain_rerun_is_refused(png16_job, corpus, dynamic_onnx):
    output, _ = png16_job
    before = files_below(output, ".png")
    code, text, _ = batch("--model", str(dynamic_onnx), "--input", str(corpus), "--output", str(output), *FAST)
    assert code == 1 and "error:" in text and "--resume" in text
    code, text, summary = batch(
        "--model", str(dynamic_onnx), "--input", str(corpus), "--output", str(output), "--resume", *FAST
    )
    assert code == 0, text
    assert (summary["processed"], summary["skipped"], summary["failed"]) == (0, 4, 1)  # the corrupt file is retried
    assert files_below(output, ".png") == before
    assert len(read_manifest(output / "manifest.parquet")) == 5


def test_parquet_shards_hold_dav2_runs_depth(ray_session, corpus, dynamic_onnx, tmp_path):
    import pyarrow.parquet as pq

    code, text, summary = batch("--model", str(dynamic_onnx), "--input", str(corpus), "--output",
                                str(tmp_path / "pq"), "--format", "parquet", "--batch-size", "2", *FAST)  # fmt: skip
    assert code == 0, text
    assert summary["processed"] == 4
    dav2_run(dynamic_onnx, corpus, tmp_path / "npy", "npy")
    rows = [
        row
        for shard in sorted((tmp_path / "pq" / "depth").glob("*.parquet"))
        for row in pq.read_table(shard).to_pylist()
    ]
    assert sorted(row["name"] for row in rows) == ["demo02", "demo03", "demo06", "sub/demo08"]
    for row in rows:
        depth = np.frombuffer(row["depth"], "<f4").reshape(row["height"], row["width"])
        np.testing.assert_array_equal(depth, np.load(tmp_path / "npy" / f"{row['name']}.npy"))
    manifest = read_manifest(tmp_path / "pq" / "manifest.parquet")
    assert all(Path(row["output"]).parent.name == "depth" for name, row in manifest.items() if name != CORRUPT)


def test_interrupted_job_resumes_to_the_same_outputs(ray_session, dynamic_onnx, png16_job, corpus, tmp_path):
    """SIGINT to a running dav2-batch (joined to this Ray), then --resume: the outputs of an
    uninterrupted run, and a manifest that was consistent in between."""
    folder = tmp_path / "many"
    folder.mkdir()
    copies = 8  # 32 images: room to stop mid-way even on a loaded machine
    total = copies * len(PHOTOS)
    for copy in range(copies):
        for name in PHOTOS:
            shutil.copy(IMAGES / name, folder / f"{copy}_{name}")
    output = tmp_path / "out"
    address = ray_session.get_runtime_context().gcs_address
    command = [
        *(sys.executable, "-c", "from dav2.cli import batch_main; batch_main()", "--model", str(dynamic_onnx)),
        *("--input", str(folder), "--output", str(output), "--batch-size", "1", "--address", address, *FAST),
    ]
    job = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_ctrl_c
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(output.glob("*.png"))) < 5 and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.2)
        job.send_signal(signal.SIGINT)
        _, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130, stderr
    assert "--resume" in stderr
    rows = read_manifest(output / "manifest.parquet")
    assert 0 < len(rows) < total, "the job was to be stopped mid-way"
    assert all(row["status"] == "ok" and Path(row["output"]).is_file() for row in rows.values())

    code, text, summary = batch("--model", str(dynamic_onnx), "--input", str(folder), "--output", str(output),
                                "--resume", *FAST)  # fmt: skip
    assert code == 0, text
    assert summary["skipped"] == len(rows) and summary["processed"] == total - len(rows) and summary["failed"] == 0
    assert len(read_manifest(output / "manifest.parquet")) == total
    assert not [p for p in output.rglob(".*") if p.is_file()], "temporary files left behind"
    reference, _ = png16_job  # the same photos, written in one uninterrupted job
    want = files_below(reference, ".png")
    got = files_below(output, ".png")
    assert len(got) == total
    for name, data in got.items():
        original = name.split("_", 1)[1]
        assert data == want.get(original, want.get(f"sub/{original}")), name


RAY_CPP_INFO = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+ I \d+ \d+\]", re.MULTILINE)  # Ray's C++ INFO line format


def test_a_small_job_prints_no_ray_log_line(ray_session, dynamic_onnx, tmp_path):
    """A real dav2-batch process (joining this module's Ray: its driver starts Ray's C++ core
    worker like an embedded Ray does) prints dav2's lines only."""
    folder = tmp_path / "two"
    folder.mkdir()
    for name in PHOTOS[:2]:
        shutil.copy(IMAGES / name, folder / name)
    address = ray_session.get_runtime_context().gcs_address
    command = [
        *(sys.executable, "-c", "from dav2.cli import batch_main; batch_main()", "--model", str(dynamic_onnx)),
        *("--input", str(folder), "--output", str(tmp_path / "out"), "--address", address, *FAST),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 processed, 0 skipped (done before), 0 failed of 2 inputs" in done.stderr
    for stream in (done.stdout, done.stderr):
        assert not RAY_CPP_INFO.search(stream) and "Set ray log level" not in stream, stream


def test_the_log_level_filter_drops_that_line_only(capfd):
    from dav2.batch.cluster import without_log_level_line

    level = b"[2026-12-02 11:56:35,834 I 25534 25534] logging.cc:303: Set ray log level from environment variable "
    error = b"[2026-12-02 11:56:36,001 E 25534 25534] core_worker.cc:1: a real error\n"
    with without_log_level_line():
        os.write(2, b"before\n" + level + b"RAY_BACKEND_LOG_LEVEL to 3\n" + error + b"after, no newline")
    assert capfd.readouterr().err == "before\n" + error.decode() + "after, no newline"


# --- without Ray, or with wrong numbers: one line, nothing started ----------------------------


def test_without_ray_the_error_names_the_extra(monkeypatch, dynamic_onnx, tmp_path):
    from dav2 import optional
    from dav2.cli import batch_main

    def missing(module, purpose):
        raise Dav2Error(f"{purpose} needs {module}: pip install {module}")

    monkeypatch.setattr(optional, "require", missing)
    result = CliRunner().invoke(batch_main, ["--model", str(dynamic_onnx), "--input", str(tmp_path), "--output",
                                             str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {NO_RAY}"


@pytest.mark.parametrize(
    "option, value",
    [("--actors", "0"), ("--actors", "5000"), ("--batch-size", "100000"), ("--threads-per-actor", "999"),
     ("--gpus-per-actor", "nan"), ("--frame-stride", "0")],
)  # fmt: skip
def test_user_sizes_are_limited(option, value, tmp_path):
    pytest.importorskip("ray.data", reason=NO_RAY)
    from dav2.cli import batch_main

    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    result = CliRunner().invoke(batch_main, ["--model", str(model), "--input", str(tmp_path), "--output",
                                             str(tmp_path / "o"), option, value])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1 and option in result.output


def test_inputs_from_a_list_file_and_a_glob_are_named_like_a_folder(corpus, tmp_path):
    from dav2.batch.inputs import collect_items

    listing = tmp_path / "list.txt"
    listing.write_text(f"# photos\n{corpus / 'demo02.jpg'}\n\n{corpus / 'sub' / 'demo08.jpg'}\n")
    assert [item.name for item in collect_items(str(listing))] == ["demo02", "sub/demo08"]
    assert [item.name for item in collect_items(str(corpus / "**" / "demo0[28].jpg"))] == ["demo02", "sub/demo08"]
    assert [item.name for item in collect_items(str(corpus))] == ["corrupt", "demo02", "demo03", "demo06", "sub/demo08"]


def test_video_frames_are_items_with_a_stride(tmp_path):
    from conftest import VIDEO
    from dav2.batch.inputs import collect_items

    items = collect_items(str(VIDEO), frame_stride=10)
    assert [item.frame for item in items] == [0, 10, 20, 30, 40]
    assert items[1].name == "demo08_pan/frame_000010"


def test_video_frames_decode_as_dav2_run_reads_them(tmp_path):
    import cv2

    from conftest import VIDEO
    from dav2.batch.stages import DecodeSettings, decode_batch
    from dav2.media import DEFAULT_LIMITS
    from dav2.runtime.feed import FeedSpec

    batch = {"source": np.array([str(VIDEO)] * 3, object), "frame": np.array([3, 5, 99]), "name": np.array(["a"] * 3)}
    decoded = decode_batch(batch, DecodeSettings(FeedSpec(196), 10_000, DEFAULT_LIMITS))
    assert list(decoded["status"]) == ["ok", "ok", "failed"]
    capture = cv2.VideoCapture(str(VIDEO))
    frames = [capture.read()[1] for _ in range(6)]
    capture.release()
    from dav2 import processing

    assert decoded["tensor"][1] == processing.preprocess(frames[5], 196).tobytes()
    assert os.path.basename(str(VIDEO)) in decoded["error"][2]


def test_a_cluster_without_cpus_for_the_decode_tasks_is_warned_about(ray_session, capsys, tmp_path):
    """Actors taking every CPU leave the decode tasks waiting for ever (two 1-CPU nodes, --actors 2)."""
    from dav2.batch.job import warn_if_short_of_cpus
    from dav2.batch.options import BatchOptions

    def options(actors: int) -> BatchOptions:
        return BatchOptions(model=tmp_path / "m.onnx", input=str(tmp_path), output=tmp_path, actors=actors,
                            threads_per_actor=1)  # fmt: skip

    warn_if_short_of_cpus(options(2))  # the session has 2 CPUs; 2 actors + 0.5 need 2.5
    assert "has 2 CPUs" in capsys.readouterr().err
    warn_if_short_of_cpus(options(1))
    assert capsys.readouterr().err == ""
