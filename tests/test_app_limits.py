"""dav2-app under attack (issue #10, item 6): what one request may cost, what is left behind,
what a user is told, and a port in use.

The service runs with a stand-in backend (tests/test_app.py's FakeBackend) except where ONNX
Runtime's own session options are the point.
"""

import os
import signal
import socket
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import IMAGES
from dav2 import app
from dav2.app import DepthService, handle_image, handle_images, public_message
from dav2.errors import Dav2Error

PHOTO = IMAGES / "demo05.jpg"


class CountingBackend:
    """A dynamic stand-in that counts its inferences (a refused upload must cost none)."""

    name, default_input_size, fixed_hw, kind = "fake", 518, None, "relative"

    def __init__(self, path):
        self.path, self.closed, self.runs = Path(path), False, 0

    def infer(self, batch):
        self.runs += 1
        return batch[:, 0]

    def describe(self) -> str:
        return "fake"

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def service(tmp_path, monkeypatch):
    opened = []

    def fake_open(path, **options):
        opened.append(CountingBackend(path))
        opened[-1].options = options
        return opened[-1]

    monkeypatch.setattr(app, "open_backend", fake_open)
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.onnx").write_text("")
    with DepthService(models) as depth_service:
        depth_service.opened = opened
        yield depth_service


def png_bomb(path: Path, width: int, height: int) -> Path:
    """A real 1-bit PNG of width x height zeros: a few hundred kilobytes on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def results_below(service: DepthService) -> list[Path]:
    return [p for p in service.outputs.rglob("*") if p.is_file()]


# --- what one request may cost --------------------------------------------------------------------


def test_a_thin_upload_is_refused_before_inference(service, tmp_path):
    thin = tmp_path / "thin.png"
    cv2.imwrite(str(thin), np.zeros((3, 640, 3), np.uint8))
    with pytest.raises(Dav2Error, match="aspect ratio") as caught:
        handle_image(service, str(thin), service.choices()[0])
    assert "raise it with --max-aspect" in str(caught.value)
    assert all(backend.runs == 0 for backend in service.opened) and results_below(service) == []


def test_an_upload_past_the_token_limit_is_refused_before_inference(service, tmp_path):
    wide = tmp_path / "wide.png"  # 1:4, within the aspect limit: 518 x 2072 is 5,476 tokens
    cv2.imwrite(str(wide), np.zeros((100, 400, 3), np.uint8))
    with pytest.raises(Dav2Error, match="--max-tokens"):
        handle_image(service, str(wide), service.choices()[0])
    assert all(backend.runs == 0 for backend in service.opened)


def test_several_images_get_the_decompression_bomb_limit(service, tmp_path, monkeypatch):
    bomb = png_bomb(tmp_path / "bomb.png", 20000, 20000)  # 400 megapixels
    assert bomb.stat().st_size < 1_000_000
    decoded: list[int] = []  # the sizes of what OpenCV is asked to decode (it still decodes them)
    imdecode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda data, *args: decoded.append(len(data)) or imdecode(data, *args))
    with pytest.raises(Dav2Error, match="megapixels"):
        handle_images(service, [str(PHOTO), str(bomb)], service.choices()[0])
    assert bomb.stat().st_size not in decoded  # refused from the header, not decoded


def test_several_images_are_capped_per_request(service):
    with pytest.raises(Dav2Error, match=f"at most {app.MAX_IMAGES}"):
        handle_images(service, [str(PHOTO)] * (app.MAX_IMAGES + 1), service.choices()[0])
    assert service.opened == []


def test_the_app_runs_onnxruntime_without_its_memory_arena(dynamic_onnx, tmp_path):
    with DepthService(dynamic_onnx.parent) as depth_service:
        backend = depth_service.backend(str(dynamic_onnx))
        assert backend.session.get_session_options().enable_cpu_mem_arena is False


def test_one_request_at_a_time_and_a_bounded_queue(service):
    pytest.importorskip("gradio", reason="Gradio is not installed (pip install 'dav2[app]')")
    page = app.build_app(service)
    assert page._queue.max_size == app.MAX_QUEUE
    runs = [fn for fn in page.fns.values() if fn.name.startswith("on_")]
    assert len(runs) == 3 and {(fn.concurrency_limit, fn.concurrency_id) for fn in runs} == {(1, "dav2-model")}


# --- what is left behind --------------------------------------------------------------------------


def test_results_are_removed_after_they_were_served(service, monkeypatch):
    result = service.image_outputs(str(PHOTO), service.choices()[0])
    assert all(Path(f).is_file() for f in result.files)
    old = time.time() - app.RESULT_KEEP_S - 1
    for path in service.outputs.rglob("*"):
        os.utime(path, (old, old))
    service.sweep()
    assert list(service.outputs.iterdir()) == []


def test_the_sweeper_runs_on_a_schedule(service, monkeypatch):
    service.image_outputs(str(PHOTO), service.choices()[0])
    monkeypatch.setattr(app, "RESULT_KEEP_S", 0)
    thread = service.start_sweeping(every_s=0.05)
    for _ in range(100):
        if not any(service.outputs.iterdir()):
            break
        time.sleep(0.05)
    assert list(service.outputs.iterdir()) == []
    service.close()
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_uploads_and_results_are_removed_when_the_app_stops(service, monkeypatch):
    class Page:
        def launch(self, **kwargs):
            assert os.environ["GRADIO_TEMP_DIR"] == str(service.gradio_cache)
            service.gradio_cache.mkdir()
            (service.gradio_cache / "upload.jpg").write_bytes(b"uploaded")  # where Gradio keeps uploads
            service.image_outputs(str(PHOTO), service.choices()[0])
            raise KeyboardInterrupt

    monkeypatch.setattr(app, "build_app", lambda _: Page())
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(KeyboardInterrupt):
            app.serve(service, port=0)
    finally:  # serve() makes SIGTERM end the app's process; not pytest's, for the tests after this one
        signal.signal(signal.SIGTERM, sigterm)
    assert not service.folder.exists()


def test_folders_of_apps_that_died_are_removed_at_start(tmp_path, monkeypatch):
    monkeypatch.setattr(app.tempfile, "gettempdir", lambda: str(tmp_path))
    dead = tmp_path / "dav2-app-999999999-abc"  # no such process
    alive = tmp_path / f"dav2-app-{os.getppid()}-def"
    other = tmp_path / "dav2-app-notapid"
    for folder in (dead, alive, other):
        (folder / "results").mkdir(parents=True)
    models = tmp_path / "models"
    models.mkdir()
    with DepthService(models) as depth_service:
        assert depth_service.folder.parent == tmp_path
        assert not dead.exists() and alive.exists() and other.exists()


# --- what a user is told --------------------------------------------------------------------------


def test_a_bad_upload_is_answered_without_server_paths(service, tmp_path):
    broken = tmp_path / "uploads" / "3f2a9c" / "holiday.jpg"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(Dav2Error) as caught:
        handle_images(service, [str(broken)], service.choices()[0])
    message = str(caught.value)
    assert "holiday.jpg" in message and str(tmp_path) not in message and "/" not in message


def test_an_unexpected_failure_is_one_readable_line(service, monkeypatch, capsys):
    def broken(*args):
        raise ValueError(f"internal state at {service.folder}")

    monkeypatch.setattr(service, "image_outputs", broken)
    with pytest.raises(Dav2Error) as caught:
        handle_image(service, str(PHOTO), service.choices()[0])
    assert "could not be processed (ValueError)" in str(caught.value) and str(service.folder) not in str(caught.value)
    assert "Traceback" in capsys.readouterr().err  # the server's log keeps the details


def test_public_message_drops_folders():
    message = public_message(Dav2Error("cannot read /tmp/gradio/ab12/x y.png: denied; models/a.onnx and C:\\u\\b.xml"))
    assert message == "cannot read x y.png: denied; a.onnx and b.xml"


# --- the port -------------------------------------------------------------------------------------


def test_a_port_in_use_is_one_error_line(tmp_path):
    pytest.importorskip("gradio", reason="Gradio is not installed (pip install 'dav2[app]')")
    from dav2.cli import app_main

    models = tmp_path / "models"
    models.mkdir()
    (models / "a.onnx").write_text("")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app_main, ["--models", str(models), "--port", str(port)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: cannot listen on 127.0.0.1:") and "--port" in lines[-1]
    assert "Traceback" not in result.output and sum(line.startswith("error:") for line in lines) == 1
