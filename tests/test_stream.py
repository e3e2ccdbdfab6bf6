"""A network stream source, for real: an MJPEG-over-HTTP stream (what IP cameras serve) on loopback.

The frames are JPEG-encoded frames of the test video (tests/data); the server sends them once and closes,
like a camera that goes away, so the run must end cleanly with a warning and a summary.
"""

import http.server
import json
import threading

import cv2
import pytest
from click.testing import CliRunner

from conftest import VIDEO
from dav2.cli import run_main

STREAM_FRAMES = 4


def jpeg_frames(count: int) -> list[bytes]:
    capture = cv2.VideoCapture(str(VIDEO))
    frames = []
    for _ in range(count):
        ok, frame = capture.read()
        assert ok
        frames.append(cv2.imencode(".jpg", frame)[1].tobytes())
    capture.release()
    return frames


def mjpeg_server(frames: list[bytes], connections: int):
    """Serve `frames` to each of the first `connections` clients, then stop listening."""
    served = []

    class MjpegHandler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for jpg in frames:
                header = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                self.wfile.write(header + jpg + b"\r\n")
            served.append(len(frames))
            if len(served) >= connections:  # the camera goes away: stop accepting, close the socket
                threading.Thread(target=stop, daemon=True).start()

        def log_message(self, *args):
            pass

    def stop():
        server.shutdown()
        server.server_close()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MjpegHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, served


def run_stream(dynamic_onnx, url, out):
    args = ["--model", str(dynamic_onnx), "--source", url, "--save", str(out), "--input-size", "112"]
    return CliRunner().invoke(run_main, [*args, "--reconnects", "2", "--json"])


@pytest.mark.parametrize("connections", [1, 2])
def test_mjpeg_stream_reconnects_then_ends_cleanly(dynamic_onnx, tmp_path, connections):
    server, served = mjpeg_server(jpeg_frames(STREAM_FRAMES), connections)
    url = f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
    try:
        result = run_stream(dynamic_onnx, url, tmp_path / "frames")
    finally:
        server.server_close()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    saved = sorted((tmp_path / "frames").glob("*.png"))
    assert summary["frames"] == len(saved) >= 1
    assert summary["frames"] + summary["dropped_frames"] == sum(served) == STREAM_FRAMES * connections
    assert cv2.imread(str(saved[0])).shape == (180, 320, 3)
    assert result.stderr.count("reconnecting (1/2)") == connections
    assert "stopped sending frames" in result.stderr


def test_unreachable_stream_is_one_error(dynamic_onnx):
    result = CliRunner().invoke(run_main, ["--model", str(dynamic_onnx), "--source", "http://127.0.0.1:9/none.mjpg"])
    assert result.exit_code == 1
    assert "could not open stream http://127.0.0.1:9/none.mjpg" in result.stderr
