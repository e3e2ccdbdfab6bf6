"""dav2-run under hostile inputs (issue #10): nothing lost, nothing hung.

Every case ends in one `error:` line and exit 1 (130/143 for Ctrl-C/SIGTERM), or in a documented
warning and a normal run; no traceback, no temporary file left, no earlier output lost, no
input overwritten. The hostile inputs are built here, small: a "full disk" is a real write
failure (a process file-size limit, RLIMIT_FSIZE, or an OSError(ENOSPC) from the low-level
write), "decompression bombs" are PNG headers that claim a huge size, and the stalled stream
is a loopback MJPEG server that stops sending without closing.
"""

import errno
import http.server
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import IMAGES, VIDEO, default_ctrl_c
from dav2 import files
from dav2.calibration.dataset import CalibrationSet
from dav2.cli import run_main
from dav2.errors import Dav2Error
from dav2.media import ImageLimits, ImageRejected, header_size, read_image
from dav2.runtime.backends import open_backend
from dav2.runtime.pipeline import run
from dav2.runtime.session import RunPlan
from dav2.runtime.sources import Frame, Source, classify_source

RUN = "from dav2.cli import run_main; run_main()"


# --- building hostile inputs ------------------------------------------------------------------


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A small file whose PNG header claims width x height (grey); its pixel data is a few rows
    of zeros, so decoding it for real would allocate the claimed size and then fail."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(bytes(width + 1) * 4)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def write_image(path: Path, height: int, width: int, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(value).integers(0, 255, (height, width, 3), np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def write_video(path: Path, frames: int, size=(64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for index in range(frames):
        writer.write(np.full((size[1], size[0], 3), (index * 7) % 255, np.uint8))
    writer.release()
    return path


def leftovers(folder: Path) -> list[str]:
    """Temporary files dav2 would have left behind (atomic_path names them .<stem>.*.tmp<ext>)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name)


# --- running dav2-run -------------------------------------------------------------------------


def invoke(*args: str):
    """dav2-run in this process (CliRunner keeps stderr apart)."""
    return CliRunner().invoke(run_main, [str(arg) for arg in args])


def one_error(result, code: int = 1) -> str:
    """The command ended with `code` and exactly one 'error:' line, no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def file_size_limit(limit: int):
    """preexec_fn: writes past `limit` bytes fail with EFBIG (Python ignores SIGXFSZ), like a full disk."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def subprocess_run(args: list, limit: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", RUN, *map(str, args)]
    preexec = file_size_limit(limit) if limit else None
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


def started(args: list, watchdog_s: float = 90) -> subprocess.Popen:
    """dav2-run in a subprocess whose stderr we read line by line; killed after `watchdog_s`
    whatever happens, so a regression makes the test fail instead of hanging."""
    command = [sys.executable, "-c", RUN, *map(str, args)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, preexec_fn=default_ctrl_c)
    timer = threading.Timer(watchdog_s, process.kill)
    timer.daemon = True
    timer.start()
    return process


def check_one_error_line(stderr: str, returncode: int, code: int = 1) -> str:
    assert returncode == code, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


# --- 1. data loss: a full disk ------------------------------------------------------------------


def test_video_on_a_full_disk_fails_and_keeps_the_previous_video(dynamic_onnx, tmp_path):
    previous = tmp_path / "prev.mp4"
    shutil.copy(VIDEO, previous)
    before = previous.read_bytes()
    args = ["--model", dynamic_onnx, "--source", VIDEO, "--input-size", "56", "--save", previous]
    done = subprocess_run(args, limit=8_000)  # the new video needs far more than 8 KB
    line = check_one_error_line(done.stderr, done.returncode)
    assert "could not write" in line and "previous file is kept" in line, line
    assert "saved to" not in done.stderr
    assert previous.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_npy_on_a_full_disk_is_one_line_and_keeps_the_previous_file(dynamic_onnx, tmp_path):
    previous = tmp_path / "depth.npy"
    np.save(previous, np.zeros(3, np.float32))
    before = previous.read_bytes()
    args = ["--model", dynamic_onnx, "--source", IMAGES / "demo08.jpg", "--input-size", "56", "--format", "npy"]
    done = subprocess_run([*args, "--save", previous], limit=50_000)  # 425x640 float32 is 1 MB
    line = check_one_error_line(done.stderr, done.returncode)
    assert "could not write" in line and previous.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_png_with_no_space_left_is_one_line_and_keeps_the_previous_file(dynamic_onnx, tmp_path, monkeypatch):
    previous = write_image(tmp_path / "depth.png", 8, 8)
    before = previous.read_bytes()

    def disk_full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.Path, "write_bytes", disk_full)
    result = invoke(
        "--model", dynamic_onnx, "--source", IMAGES / "demo08.jpg", "--input-size", "56", "--save", previous
    )
    line = one_error(result)
    assert "no space left on the device" in line and "previous file is kept" in line
    assert previous.read_bytes() == before and leftovers(tmp_path) == []


# --- 2. inputs are never overwritten --------------------------------------------------------------


def test_save_equal_to_source_is_refused_symlinks_included(dynamic_onnx, tmp_path):
    photo = write_image(tmp_path / "photo.png", 40, 60)
    before = photo.read_bytes()
    (tmp_path / "link.png").symlink_to(photo)
    for target in (photo, tmp_path / "link.png"):
        line = one_error(invoke("--model", dynamic_onnx, "--source", photo, "--save", target, "--input-size", "28"))
        assert "would overwrite the input" in line
    assert photo.read_bytes() == before


def test_a_video_saved_over_its_own_source_is_refused(dynamic_onnx, tmp_path):
    clip = tmp_path / "clip.mp4"
    shutil.copy(VIDEO, clip)
    before = clip.read_bytes()
    line = one_error(invoke("--model", dynamic_onnx, "--source", clip, "--save", clip, "--input-size", "28"))
    assert "would overwrite the input" in line and clip.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_a_folder_saved_into_itself_never_overwrites_its_inputs(dynamic_onnx, tmp_path):
    photos = tmp_path / "photos"
    write_image(photos / "a.png", 20, 30)
    write_image(photos / "b.jpg", 20, 30)
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    line = one_error(invoke("--model", dynamic_onnx, "--source", photos, "--save", photos, "--input-size", "28"))
    assert "would overwrite the input" in line and "a.png" in line
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_files_sharing_a_stem_get_outputs_that_do_not_collide(dynamic_onnx, tmp_path):
    photos = tmp_path / "photos"
    write_image(photos / "x.jpg", 20, 30)
    write_image(photos / "x.png", 30, 20)
    write_image(photos / "y.png", 20, 20)
    result = invoke("--model", dynamic_onnx, "--source", photos, "--save", tmp_path / "out", "--input-size", "28")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.jpg.png", "x.png.png", "y.png"]
    assert cv2.imread(str(tmp_path / "out" / "x.png.png")).shape[:2] == (30, 20)


def test_a_character_device_is_never_replaced(dynamic_onnx):
    if not Path("/dev/null").is_char_device():
        pytest.skip("no /dev/null here")
    for fmt in ("color", "npy"):
        line = one_error(invoke("--model", dynamic_onnx, "--save", "/dev/null", "--format", fmt, "--input-size", "28"))
        assert "not a regular file" in line
    assert Path("/dev/null").is_char_device()


@pytest.mark.parametrize("name", ["depth.png", "depth.mp4"])
def test_an_existing_folder_named_like_the_output_is_one_line(dynamic_onnx, tmp_path, name):
    (tmp_path / name).mkdir()
    source = VIDEO if name.endswith(".mp4") else IMAGES / "demo08.jpg"
    line = one_error(
        invoke("--model", dynamic_onnx, "--source", source, "--save", tmp_path / name, "--input-size", "28")
    )
    assert "a folder of that name exists" in line
    assert (tmp_path / name).is_dir() and leftovers(tmp_path) == []


# --- 3. interrupted runs ------------------------------------------------------------------------


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_an_interrupted_video_keeps_the_previous_file_and_says_so(dynamic_onnx, tmp_path, sig, code, word):
    long_clip = write_video(tmp_path / "long.mp4", 900)
    previous = tmp_path / "out" / "depth.mp4"
    previous.parent.mkdir()
    shutil.copy(VIDEO, previous)
    before = previous.read_bytes()
    args = ["--model", dynamic_onnx, "--source", long_clip, "--save", previous, "--input-size", "28"]
    process = started(args)
    lines = []
    for line in process.stderr:  # wait until frames are being written
        lines.append(line)
        if line.strip().startswith("frame 25/"):
            break
    process.send_signal(sig)
    rest = process.stderr.read()
    process.wait(timeout=30)
    stderr = "".join(lines) + rest
    line = check_one_error_line(stderr, process.returncode, code)
    assert word in line, stderr
    assert "saved to" not in stderr and "frame(s)" not in stderr  # no normal summary
    assert previous.read_bytes() == before
    assert leftovers(tmp_path) == []


# --- 4. limits ---------------------------------------------------------------------------------


def spy_on_decoding(monkeypatch) -> list[int]:
    """The sizes (bytes) of what OpenCV is asked to decode from now on; decoding itself is OpenCV's."""
    decoded: list[int] = []
    imdecode = cv2.imdecode

    def recording(data, *args, **kwargs):
        decoded.append(len(data))
        return imdecode(data, *args, **kwargs)

    monkeypatch.setattr(cv2, "imdecode", recording)
    return decoded


def test_header_is_checked_before_decoding(tmp_path, monkeypatch):
    bomb = png_claiming(tmp_path / "bomb.png", 40000, 40000)
    assert bomb.stat().st_size < 1000 and header_size(bomb.read_bytes()) == (40000, 40000)
    decoded = spy_on_decoding(monkeypatch)
    with pytest.raises(ImageRejected, match="--max-megapixels"):
        read_image(bomb)
    assert decoded == []  # refused from the header: OpenCV never saw the file
    with pytest.raises(ImageRejected, match="--max-aspect"):
        ImageLimits().check(3, 640, "thin.png")


def test_a_decompression_bomb_is_one_line(dynamic_onnx, tmp_path):
    bomb = png_claiming(tmp_path / "bomb.png", 20000, 20000)
    line = one_error(invoke("--model", dynamic_onnx, "--source", bomb))
    assert "400.0 megapixels" in line and "--max-megapixels" in line


def test_pixel_limit_can_be_raised_and_lowered(dynamic_onnx, tmp_path):
    photo = write_image(tmp_path / "p.png", 100, 100)
    line = one_error(invoke("--model", dynamic_onnx, "--source", photo, "--max-megapixels", "0.005"))
    assert "over the limit of 0.005 megapixels" in line
    assert invoke("--model", dynamic_onnx, "--source", photo, "--input-size", "28").exit_code == 0


def test_thin_images_are_refused_by_aspect_and_tokens(dynamic_onnx, tmp_path):
    thin = write_image(tmp_path / "thin.png", 3, 640)
    assert "aspect ratio of 1:213" in one_error(invoke("--model", dynamic_onnx, "--source", thin))
    # past the aspect limit (raised), the network would ask for ~290,000 tokens at input size 518
    line = one_error(invoke("--model", dynamic_onnx, "--source", thin, "--max-aspect", "1000"))
    assert "--max-tokens" in line and "patch tokens" in line
    # both raised or a small input: it runs
    result = invoke("--model", dynamic_onnx, "--source", thin, "--max-aspect", "1000", "--input-size", "14")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "size, message", [("100000", "--input-size must be at most 4096"), ("2000", "raise it with --max-tokens")]
)
def test_input_size_is_bounded(dynamic_onnx, size, message):
    assert message in one_error(invoke("--model", dynamic_onnx, "--input-size", size))


def test_a_folder_skips_bad_images_with_a_warning(dynamic_onnx, tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    write_image(photos / "good.png", 20, 30)
    write_image(photos / "wide.png", 40, 640)  # aspect 16 is allowed, but 518x8288 is 21,904 tokens
    png_claiming(photos / "bomb.png", 20000, 20000)
    locked = write_image(photos / "locked.png", 20, 30)
    real_open = os.open

    def open_file(path, *args, **kwargs):  # root reads everything: a PermissionError as a locked file gives it
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", open_file)  # the one reader of a user's file (dav2.files)
    result = invoke("--model", dynamic_onnx, "--source", photos, "--save", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: skipping")]
    assert len(warnings) == 3, result.stderr
    assert "permission denied" in result.stderr.lower() and "--max-megapixels" in result.stderr
    assert "--max-tokens" in result.stderr


def test_calibration_skips_bad_images_with_a_warning(tmp_path, capsys):
    write_image(tmp_path / "a.png", 20, 30)
    write_image(tmp_path / "b.png", 20, 30)
    png_claiming(tmp_path / "bomb.png", 40000, 40000)
    write_image(tmp_path / "thin.png", 2, 100)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    calibration = CalibrationSet(tmp_path, (28, 28), count=10, holdout=0)
    assert sorted(calibration.identity()["files"]) == ["a.png", "b.png"]
    err = capsys.readouterr().err
    assert err.count("warning: skipping calibration image") == 3, err


# --- 5. numeric options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--threads", "2000", "--threads must be from 0 to 256"),
        ("--threads", "-1", "--threads must be from 0 to 256"),
        ("--camera-fps", "0", "--camera-fps must be more than 0"),
        ("--camera-fps", "-1", "--camera-fps must be more than 0"),
        ("--camera-fps", "nan", "--camera-fps must be more than 0"),
        ("--camera-size", "-5x-5", "--camera-size (each side) must be from 1"),
        ("--reconnects", "-1", "--reconnects must be from 0"),
        ("--max-frames", "0", "--max-frames must be at least 1"),
        ("--max-frames", "-5", "--max-frames must be at least 1"),
        ("--range", "-inf,inf", "--range needs two finite numbers"),
        ("--range", "nan,1", "--range needs two finite numbers"),
        ("--input-size", "13", "--input-size must be at least 14"),
        ("--max-depth", "-1", "--max-depth must be more than 0"),
        ("--max-megapixels", "0", "--max-megapixels must be more than 0"),
        ("--max-tokens", "0", "--max-tokens must be from 1"),
    ],
)
def test_numeric_options_are_checked(dynamic_onnx, option, value, message):
    line = one_error(invoke("--model", dynamic_onnx, "--source", "cam:97", f"{option}={value}"))
    assert message in line, line


# --- 7. unreadable and unwritable ----------------------------------------------------------------


def test_an_unreadable_image_is_one_line(dynamic_onnx, tmp_path, monkeypatch):
    photo = write_image(tmp_path / "locked.png", 20, 30)

    real_open = os.open

    def open_file(path, *args, **kwargs):
        if Path(path) == photo:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", open_file)
    line = one_error(invoke("--model", dynamic_onnx, "--source", photo))
    assert "cannot read" in line and "permission denied" in line.lower()


def test_a_read_only_output_folder_is_one_line(dynamic_onnx, tmp_path, monkeypatch):
    def read_only(*args, **kwargs):  # what mkstemp meets in a read-only folder (root would not)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    for target in ("depth.png", "depth.mp4", "frames"):
        source = VIDEO if target.endswith(".mp4") else IMAGES / "demo08.jpg"
        args = ["--model", dynamic_onnx, "--source", source, "--input-size", "28", "--max-frames", "2"]
        line = one_error(invoke(*args, "--save", tmp_path / target))
        assert "cannot write in" in line and "permission denied" in line, line


# --- 9. no OpenCV/FFmpeg log noise before our line -------------------------------------------------


def test_a_broken_video_and_a_missing_camera_are_one_line_without_library_noise(dynamic_onnx, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(VIDEO.read_bytes()[:5000])  # no index: "moov atom not found"
    for source, expected in ((broken, "could not open video file"), ("cam:97", "could not open camera")):
        done = subprocess_run(["--model", dynamic_onnx, "--source", source, "--json"])
        line = check_one_error_line(done.stderr, done.returncode)
        assert expected in line
        assert done.stderr.strip().splitlines() == [line], done.stderr  # nothing else on stderr


# --- 10. a stalled stream stops at once -------------------------------------------------------------


def stalling_mjpeg_server(frames: list[bytes]):
    """Sends `frames`, then keeps the connection open without sending (a camera that hangs)."""
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            for jpg in frames:
                header = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                self.wfile.write(header + jpg + b"\r\n")
            self.wfile.flush()
            release.wait(60)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, release


def test_ctrl_c_during_a_stalled_stream_is_one_line_and_leaves_nothing(dynamic_onnx, tmp_path):
    capture = cv2.VideoCapture(str(VIDEO))
    frames = [cv2.imencode(".jpg", capture.read()[1])[1].tobytes() for _ in range(6)]
    capture.release()
    server, release = stalling_mjpeg_server(frames)
    url = f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
    args = ["--model", dynamic_onnx, "--source", url, "--save", tmp_path / "frames", "--input-size", "28"]
    process = started(args)
    try:
        for line in process.stderr:
            if line.strip().startswith("frame 1"):
                break
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        stderr = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        release.set()
        server.shutdown()
        server.server_close()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert leftovers(tmp_path) == []


class StuckCamera(Source):
    """A live source whose third read never returns by itself (a driver or FFmpeg call that
    cannot be cut short, as on a stalled stream): close() does not end it, only `unblock`."""

    kind, live = "stream", True

    def __init__(self):
        self.stuck, self.unblock = threading.Event(), threading.Event()

    def __iter__(self):
        for index in range(2):
            yield Frame(np.full((56, 56, 3), 128, np.uint8), f"frame_{index:06d}", index)
        self.stuck.set()
        self.unblock.wait()


class CtrlCWhenStuck:
    """Raises KeyboardInterrupt (Ctrl-C) at its first frame, once the capture is stuck."""

    def __init__(self, camera: StuckCamera):
        self.camera = camera

    def write(self, frame, depth, value_range=None):
        assert self.camera.stuck.wait(60), "the camera never reached its stuck read"
        raise KeyboardInterrupt

    def close(self, success=True):
        pass


def test_a_stop_does_not_wait_for_a_capture_stuck_in_a_read(dynamic_onnx):
    """Ctrl-C while the capture thread is inside a read that will not return: run() gives the
    interruption back with the read still stuck (it does not wait for the read)."""
    camera = StuckCamera()
    outcome = []

    def interrupted_run():
        with open_backend(dynamic_onnx) as backend:
            plan = RunPlan.for_sinks(backend, [CtrlCWhenStuck(camera)], preprocessing="float32", input_size=56)
            try:
                run(camera, backend, plan)
            except KeyboardInterrupt:
                outcome.append("interrupted")

    runner = threading.Thread(target=interrupted_run)
    runner.start()
    runner.join(60)  # a hang guard: a run that waited for the read would still be waiting
    returned = not runner.is_alive()
    camera.unblock.set()  # only now can the read return
    assert returned and outcome == ["interrupted"]


# --- 11. source strings ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sample", "12345", "a ! b.png"])
def test_an_existing_path_is_always_a_file(dynamic_onnx, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    data = cv2.imencode(".png", np.full((30, 40, 3), 200, np.uint8))[1].tobytes()
    Path(name).write_bytes(data)
    assert classify_source(name).kind == "image"
    result = invoke("--model", dynamic_onnx, "--source", name, "--save", "out.png", "--input-size", "28")
    assert result.exit_code == 0, result.output
    assert cv2.imread("out.png").shape[:2] == (30, 40)  # not the 480x640 sample scene, not a camera


def test_explicit_kinds_and_guesses_when_nothing_exists(tmp_path):
    assert classify_source("gst:videotestsrc ! appsink").kind == "gstreamer"
    assert classify_source("gst:videotestsrc ! appsink").target == "videotestsrc ! appsink"
    assert classify_source("cam:0").target == 0 and classify_source("cam:/dev/video3").target == "/dev/video3"
    assert classify_source("sample").kind == "sample" and classify_source("7").kind == "camera"
    assert classify_source("rtsp://host/stream").kind == "stream"
    assert classify_source(str(tmp_path)).kind == "folder"
    with pytest.raises(Dav2Error, match="gst:PIPELINE"):
        classify_source(str(tmp_path / "videotestsrc ! appsink"))
