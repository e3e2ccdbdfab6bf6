"""dav2-batch at s3:// URIs (issue #14): pyarrow's own S3 client against a local S3 server (moto).

The photos and a corrupt file are uploaded to a bucket; a job reads them from one prefix and
writes depth and its manifest to another. Its objects must be byte for byte the files of the
same job on a local folder, the manifest (read back from the bucket) must list the corrupt
file as failed, and --resume must find everything done. Skipped only when moto is not
installed (the `test` extra installs it).
"""

import os
import shutil
from pathlib import Path

import pytest
from test_batch import CORRUPT, FAST, PHOTOS, batch, files_below, local_ray

from conftest import IMAGES, VIDEO

pytestmark = pytest.mark.slow  # dav2-batch on a local Ray against a local S3 server

BUCKET = "corpus"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_server():
    """A local S3 server and the query that points pyarrow at it; credentials in the environment
    before Ray starts, so the workers inherit them as on a cluster node."""
    pytest.importorskip("moto", reason="the S3 tests need moto[server] (the test extra)")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # the OS picks the port
    server.start()
    _, port = server.get_host_and_port()
    saved = {key: os.environ.get(key) for key in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        yield f"endpoint_override=127.0.0.1:{port}&scheme=http"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def ray_session(s3_server):
    yield from local_ray()


def uri(query: str, key: str) -> str:
    return f"s3://{BUCKET}/{key}?{query}"


def bucket_fs(query: str):
    from pyarrow.fs import FileSystem

    fs, _ = FileSystem.from_uri(f"s3://{BUCKET}/?{query}")
    return fs


@pytest.fixture(scope="module")
def corpus(s3_server, tmp_path_factory) -> Path:
    """The photos (one in a sub-folder) and a JPEG cut short, in a local folder and in the bucket."""
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "sub").mkdir()
    for name in PHOTOS[:3]:
        shutil.copy(IMAGES / name, folder / name)
    shutil.copy(IMAGES / PHOTOS[3], folder / "sub" / PHOTOS[3])
    (folder / CORRUPT).write_bytes((IMAGES / PHOTOS[0]).read_bytes()[:2000])
    from pyarrow.fs import FileSystem

    fs, _ = FileSystem.from_uri(f"s3://{BUCKET}/?{s3_server}&allow_bucket_creation=true")
    fs.create_dir(BUCKET)
    for file in sorted(folder.rglob("*.jpg")):
        with fs.open_output_stream(f"{BUCKET}/images/{file.relative_to(folder).as_posix()}") as stream:
            stream.write(file.read_bytes())
    return folder


def objects_below(query: str, prefix: str, suffix: str) -> dict[str, bytes]:
    from pyarrow.fs import FileSelector

    fs = bucket_fs(query)
    found = fs.get_file_info(FileSelector(f"{BUCKET}/{prefix}", recursive=True))
    base = f"{BUCKET}/{prefix}/"
    return {
        info.path[len(base) :]: fs.open_input_stream(info.path).read()
        for info in sorted(found, key=lambda info: info.path)
        if info.path.endswith(suffix)
    }


@pytest.fixture(scope="module")
def s3_job(ray_session, s3_server, corpus, dynamic_onnx):
    code, text, summary = batch("--model", str(dynamic_onnx), "--input", uri(s3_server, "images/"),
                                "--output", uri(s3_server, "depth/"), *FAST)  # fmt: skip
    assert code == 0, text
    return summary


def test_s3_outputs_equal_a_local_jobs_bytes(s3_job, s3_server, corpus, dynamic_onnx, tmp_path):
    assert (s3_job["processed"], s3_job["skipped"], s3_job["failed"], s3_job["total"]) == (4, 0, 1, 5)
    code, text, _ = batch("--model", str(dynamic_onnx), "--input", str(corpus), "--output", str(tmp_path), *FAST)
    assert code == 0, text
    expected = files_below(tmp_path, ".png")
    assert sorted(expected) == ["demo02.png", "demo03.png", "demo06.png", "sub/demo08.png"]
    assert objects_below(s3_server, "depth", ".png") == expected


def test_s3_manifest_lists_the_corrupt_object_as_failed(s3_job, s3_server):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = objects_below(s3_server, "depth", ".parquet")
    assert list(data) == ["manifest.parquet"], "the parts are merged into the manifest"
    rows = {row["source"]: row for row in pq.read_table(pa.BufferReader(data["manifest.parquet"])).to_pylist()}
    assert sorted(rows) == sorted(
        f"s3://{BUCKET}/images/{name}" for name in ["demo02.jpg", "demo03.jpg", "demo06.jpg", "sub/demo08.jpg", CORRUPT]
    )
    bad = rows[f"s3://{BUCKET}/images/{CORRUPT}"]
    assert bad["status"] == "failed" and "not a readable image" in bad["error"] and bad["output"] == ""
    good = rows[f"s3://{BUCKET}/images/sub/demo08.jpg"]
    assert good["status"] == "ok" and good["output"] == f"s3://{BUCKET}/depth/sub/demo08.png"


def test_s3_resume_processes_nothing(s3_job, s3_server, dynamic_onnx):
    before = objects_below(s3_server, "depth", ".png")
    code, text, summary = batch("--model", str(dynamic_onnx), "--input", uri(s3_server, "images/"),
                                "--output", uri(s3_server, "depth/"), "--resume", *FAST)  # fmt: skip
    assert code == 0, text
    assert (summary["processed"], summary["skipped"], summary["failed"]) == (0, 4, 1)  # the corrupt one is retried
    assert objects_below(s3_server, "depth", ".png") == before


def test_a_list_file_of_uris_is_named_like_a_prefix(s3_server, corpus, tmp_path):
    from dav2.batch.inputs import collect_items

    listing = tmp_path / "list.txt"
    lines = [uri(s3_server, "images/demo02.jpg"), "# a comment", uri(s3_server, "images/sub/demo08.jpg")]
    listing.write_text("\n".join(lines) + "\n")
    assert [item.name for item in collect_items(str(listing))] == ["demo02", "sub/demo08"]
    prefix = collect_items(uri(s3_server, "images"))
    assert [item.name for item in prefix] == ["corrupt", "demo02", "demo03", "demo06", "sub/demo08"]
    assert prefix[1].source == f"s3://{BUCKET}/images/demo02.jpg"


def test_a_video_at_a_uri_is_refused_in_one_line(s3_server, corpus, dynamic_onnx, tmp_path):
    fs = bucket_fs(s3_server)
    with fs.open_output_stream(f"{BUCKET}/clips/pan.mp4") as stream:
        stream.write(VIDEO.read_bytes())
    code, text, _ = batch("--model", str(dynamic_onnx), "--input", uri(s3_server, "clips/"), "--output", str(tmp_path))
    assert code == 1
    error = one_error_line(text)
    assert f"s3://{BUCKET}/clips/pan.mp4" in error and "mount" in error


@pytest.mark.parametrize(
    "where, words",
    [
        ("input", "Unrecognized filesystem"),  # an unknown scheme
        ("input", "no such object or prefix"),  # a bucket that does not exist
        ("output", "create the bucket"),
    ],
)
def test_bad_uris_are_one_error_line(where, words, s3_server, corpus, dynamic_onnx, tmp_path):
    good_input, good_output = uri(s3_server, "images/"), str(tmp_path / "out")
    bad = {
        "Unrecognized filesystem": "nosuchscheme://bucket/images/",
        "no such object or prefix": f"s3://missing-bucket/images/?{s3_server}",
        "create the bucket": f"s3://missing-bucket/depth/?{s3_server}",
    }[words]
    source, output = (bad, good_output) if where == "input" else (good_input, bad)
    code, text, _ = batch("--model", str(dynamic_onnx), "--input", source, "--output", output, *FAST)
    assert code == 1, text
    assert words in one_error_line(text), text


def one_error_line(text: str) -> str:
    """The job's one `error:` line (after at most the model's description), with no traceback."""
    lines = text.strip().splitlines()
    assert len(lines) <= 2 and lines[-1].startswith("error: ") and "Traceback" not in text, text
    return lines[-1]
