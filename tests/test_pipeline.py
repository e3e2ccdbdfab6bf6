"""The threaded pipeline: nothing dropped for files, newest-frame mailboxes for live sources,
live JSON lines, latency, colour ranges that do not flicker, camera options."""

import json
import threading
import time

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import VIDEOS, requires_shared
from dav2.cli import run_main
from dav2.processing import ColorRange
from dav2.runtime.backends import open_backend
from dav2.runtime.pipeline import STOP, LatestSlot, run
from dav2.runtime.sinks import ImageSink
from dav2.runtime.sources import CaptureSource, Frame, Source, gstreamer_available

VIDEO = VIDEOS / "davis_dolphins.mp4"


def test_latest_slot_keeps_the_newest_and_counts_drops():
    slot = LatestSlot()
    for item in (1, 2, 3):
        slot.put(item)
    assert slot.get() == 3 and slot.dropped == 2
    slot.put(4)
    slot.put(STOP)
    slot.put(5)  # nothing replaces the end marker
    assert slot.get() is STOP


def test_colour_range_fixed_single_and_smoothed():
    near = np.array([[0.0, 10.0]])
    far = np.array([[0.0, 20.0]])
    assert ColorRange((1.0, 5.0), 0.9).update(near) == (1.0, 5.0)
    single = ColorRange()
    assert single.update(near) == (0.0, 10.0) and single.update(far) == (0.0, 20.0)
    smooth = ColorRange(smoothing=0.9)
    smooth.update(near)
    assert smooth.update(far) == pytest.approx((0.0, 11.0))  # 0.9 * 10 + 0.1 * 20
    with pytest.raises(ValueError):
        ColorRange((5.0, 1.0))


class BurstSource(Source):
    """A live source that delivers a frame every 5 ms: much faster than inference takes them."""

    kind = "camera"
    live = True

    def __init__(self, count: int):
        self.count = count
        self.image = np.full((56, 56, 3), 128, np.uint8)

    def __iter__(self):
        for index in range(self.count):
            time.sleep(0.005)
            yield Frame(self.image, f"frame_{index:06d}", index)


class SlowBackend:
    """Wraps a real backend and makes each call take at least 30 ms (a slow accelerator)."""

    def __init__(self, backend):
        self.backend = backend
        self.fixed_hw, self.default_input_size, self.kind = backend.fixed_hw, 56, backend.kind
        self.gate = threading.Event()

    def infer(self, batch):
        self.gate.wait(0.03)
        return self.backend.infer(batch)


@requires_shared
def test_live_sources_drop_stale_frames_files_do_not(dynamic_onnx, tmp_path):
    backend = SlowBackend(open_backend(dynamic_onnx))
    summary = run(BurstSource(100), backend, [ImageSink(tmp_path / "live", "gray", "gray", "disparity", False)])
    assert summary["dropped_frames"] > 0 and summary["frames"] >= 3
    assert summary["frames"] + summary["dropped_frames"] == 100
    # a frame waits for at most one inference in progress, never for a queue of stale ones
    assert summary["latency_ms"]["p90"] < 3 * summary["stages"]["inference"]["p90_ms"] + 50

    class FileLike(BurstSource):
        kind, live = "folder", False

    summary = run(FileLike(12), backend, [ImageSink(tmp_path / "files", "gray", "gray", "disparity", False)])
    assert summary["dropped_frames"] == 0 and summary["frames"] == 12
    assert len(list((tmp_path / "files").glob("*.png"))) == 12


@requires_shared
def test_video_json_lines_and_fixed_range(dynamic_onnx, tmp_path):
    out = tmp_path / "depth.mp4"
    args = ["--model", str(dynamic_onnx), "--source", str(VIDEO), "--save", str(out), "--input-size", "196"]
    result = CliRunner().invoke(run_main, [*args, "--range", "0,5", "--max-frames", "30", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    summary = lines[-1]
    assert summary["frames"] == 30 and summary["dropped_frames"] == 0
    assert summary["latency_ms"]["p90"] >= summary["latency_ms"]["p50"] > 0
    assert summary["end_to_end_fps"] > 0 and summary["inference_fps"] > 0
    for live in lines[:-1]:
        assert set(live["live"]) >= {"frames", "end_to_end_fps", "latency_ms", "stage_fps", "dropped_frames"}
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    capture.release()


@requires_shared
def test_smoothed_colours_change_less_than_per_frame_colours(dynamic_onnx):
    backend = open_backend(dynamic_onnx)
    capture = cv2.VideoCapture(str(VIDEO))
    depths = []
    for _ in range(8):
        ok, image = capture.read()
        depths.append(backend.predict(image, 112))
    capture.release()
    per_frame, smooth = ColorRange(), ColorRange(smoothing=0.9)
    jumps = {"per_frame": [], "smooth": []}
    previous = {}
    for depth in depths:
        for name, colours in (("per_frame", per_frame), ("smooth", smooth)):
            low, high = colours.update(depth)
            if name in previous:
                jumps[name].append(abs(high - previous[name][1]) + abs(low - previous[name][0]))
            previous[name] = (low, high)
    assert sum(jumps["smooth"]) < sum(jumps["per_frame"])


@requires_shared
def test_camera_and_range_options_are_checked(dynamic_onnx):
    base = ["--model", str(dynamic_onnx)]
    result = CliRunner().invoke(run_main, [*base, "--source", "0", "--camera-size", "1280by720"])
    assert result.exit_code == 1 and "--camera-size expects two numbers" in result.output
    result = CliRunner().invoke(run_main, [*base, "--range", "5,1"])
    assert result.exit_code == 1 and "MIN < MAX" in result.output


@requires_shared
def test_gstreamer_pipeline_without_gstreamer_is_one_error(dynamic_onnx):
    if gstreamer_available():
        pytest.skip("this OpenCV has GStreamer")
    pipeline = "videotestsrc num-buffers=5 ! videoconvert ! appsink"
    result = CliRunner().invoke(run_main, ["--model", str(dynamic_onnx), "--source", pipeline])
    assert result.exit_code == 1 and "GStreamer" in result.output


def test_camera_that_cannot_be_opened_names_itself():
    from dav2.errors import Dav2Error

    with pytest.raises(Dav2Error, match="could not open camera"):
        CaptureSource("/dev/video97", "camera", "/dev/video97")


class InterruptingSink:
    """Writes nothing; raises KeyboardInterrupt (Ctrl-C) at the third frame."""

    def __init__(self):
        self.written = 0

    def write(self, frame, depth, value_range=None):
        self.written += 1
        if self.written == 3:
            raise KeyboardInterrupt

    def close(self, success=True):
        self.closed = success


@requires_shared
def test_ctrl_c_ends_promptly_with_full_queues(dynamic_onnx):
    class FileLike(BurstSource):
        kind, live = "folder", False

    sink = InterruptingSink()
    start = time.perf_counter()
    summary = run(FileLike(200), SlowBackend(open_backend(dynamic_onnx)), [sink])  # the input queue fills
    assert time.perf_counter() - start < 5  # the stages stop on the event, not on a join timeout
    assert sink.written == 3 and sink.closed and summary["frames"] == 2
