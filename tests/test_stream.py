"""A network stream source, for real: an MJPEG-over-HTTP stream (what IP cameras serve) on loopback.

The frames are JPEG-encoded frames of a real video; the server sends them once and closes,
like a camera that goes away, so the run must end cleanly with a warning and a summary.
"""

import http.server
import json
import threading

import cv2
import pytest
from click.testing import CliRunner

from conftest import VIDEOS, requires_shared
from dav2.cli import run_main

pytestmark = requires_shared
STREAM_FRAMES = 4


def jpeg_frames(count: int) -> list[bytes]:
    capture = cv2.VideoCapture(str(VIDEOS / "davis_dolphins.mp4"))
    frames = []
    for _ in range(count):
        ok, frame = capture.read()
        assert ok
        frames.append(cv2.imencode(".jpg", frame)[1].tobytes())
    capture.release()
    return frames


@pytest.fixture
def mjpeg_url():
    frames = jpeg_frames(STREAM_FRAMES)

    class MjpegHandler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for jpg in frames:
                header = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                self.wfile.write(header + jpg + b"\r\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MjpegHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
    server.shutdown()
    server.server_close()


def test_mjpeg_stream_to_frames_ends_cleanly(dynamic_onnx, tmp_path, mjpeg_url):
    out = tmp_path / "frames"
    args = ["--model", str(dynamic_onnx), "--source", mjpeg_url, "--save", str(out), "--input-size", "112", "--json"]
    result = CliRunner().invoke(run_main, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == [f"frame_{i:06d}.png" for i in range(STREAM_FRAMES)]
    assert cv2.imread(str(out / "frame_000000.png")).shape == (540, 960, 3)
    assert f"stopped sending frames after {STREAM_FRAMES}" in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["frames"] == STREAM_FRAMES


def test_unreachable_stream_is_one_error(dynamic_onnx):
    result = CliRunner().invoke(run_main, ["--model", str(dynamic_onnx), "--source", "http://127.0.0.1:9/none.mjpg"])
    assert result.exit_code == 1
    assert "could not open stream http://127.0.0.1:9/none.mjpg" in result.stderr
