"""The threaded pipeline: nothing dropped for files, newest-frame mailboxes for live sources,
live JSON lines, colour ranges that do not flicker, camera options; and the run
policy (dav2.runtime.session) that every front end shares."""

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import VIDEO
from dav2 import processing
from dav2.cli import run_main
from dav2.errors import Dav2Error
from dav2.processing import ColorRange
from dav2.runtime import pipeline
from dav2.runtime.backends import open_backend
from dav2.runtime.pipeline import STOP, LatestSlot, run
from dav2.runtime.session import SEQUENCE_SMOOTHING, RunOptions, RunPlan, SaveTarget, plan_run
from dav2.runtime.sinks import ImageSink, MemorySink, VideoSink
from dav2.runtime.sources import CaptureSource, FolderSource, Frame, SampleSource, Source, gstreamer_available


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
    """A folder-like source that reads a frame every 5 ms: faster than inference takes them."""

    kind = "folder"
    live = False

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


def plain_plan(*sinks) -> RunPlan:
    """A plan for the stand-in backends of these tests: 56 px input, one colour range per frame."""
    return RunPlan(sinks=list(sinks), color_range=ColorRange(), unit="disparity", input_size=56)


def test_file_sources_wait_and_drop_nothing(dynamic_onnx, tmp_path):
    """A folder read faster than inference takes it: the reader waits, every frame is written.
    (Live sources keep only the newest frame: tests/test_latency.py observes that step by step.)"""

    with open_backend(dynamic_onnx) as opened:
        sink = ImageSink(tmp_path / "files", "gray", "gray", "disparity", False)
        summary = run(BurstSource(12), SlowBackend(opened), plain_plan(sink))
    assert summary.dropped_frames == 0 and summary.frames == 12
    assert len(list((tmp_path / "files").glob("*.png"))) == 12


def video_frames(path: Path, indices: list[int]) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    for index in range(max(indices) + 1):
        ok, image = capture.read()
        assert ok, f"{path} has no frame {index}"
        if index in indices:
            frames.append(image)
    capture.release()
    return frames


@pytest.mark.slow
def test_video_json_lines_and_fixed_range(dynamic_onnx, tmp_path, monkeypatch):
    checked = [0, 29]  # the first and the last frame written
    with open_backend(dynamic_onnx) as backend:
        depths = [backend.predict(image, 196) for image in video_frames(VIDEO, checked)]
    # a fixed range five times as wide as the frames' own: per-frame min..max colours differ a lot
    low, high = min(d.min() for d in depths), max(d.max() for d in depths)
    fixed = (float(low - 2 * (high - low)), float(high + 2 * (high - low)))
    monkeypatch.setattr(pipeline, "TICK_S", 0.0)  # a live line after every frame, however fast the machine
    out = tmp_path / "depth.mp4"
    args = ["--model", str(dynamic_onnx), "--source", str(VIDEO), "--save", str(out), "--input-size", "196"]
    options = [f"--range={fixed[0]!r},{fixed[1]!r}", "--format", "gray", "--max-frames", "30", "--json"]
    result = CliRunner().invoke(run_main, [*args, *options])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    summary, live_lines = lines[-1], lines[:-1]
    assert summary["frames"] == 30 and summary["dropped_frames"] == 0
    assert summary["latency_ms"] is None  # a video's frames queue: no latency for files
    assert summary["end_to_end_fps"] > 0 and summary["inference_fps"] > 0
    assert [line["live"]["frames"] for line in live_lines] == list(range(1, 31))
    for live in live_lines:
        assert set(live["live"]) >= {"frames", "end_to_end_fps", "latency_ms", "stage_fps", "dropped_frames"}
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    capture.release()
    # every frame is coloured over the fixed range, not its own min..max (MPEG-4 is lossy: compare means)
    for written, depth in zip(video_frames(out, checked), depths):
        grey = written[:, :, 0].astype(np.float64)
        to_fixed = np.abs(grey - processing.normalize_to_uint8(depth, fixed)).mean()
        to_own = np.abs(grey - processing.normalize_to_uint8(depth)).mean()
        assert to_fixed < 6 and to_own > 4 * to_fixed, (to_fixed, to_own)


def test_smoothed_colours_change_less_than_per_frame_colours(dynamic_onnx):
    with open_backend(dynamic_onnx) as backend:
        depths = [backend.predict(image, 112) for image in video_frames(VIDEO, list(range(8)))]
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


def test_camera_and_range_options_are_checked(dynamic_onnx):
    base = ["--model", str(dynamic_onnx)]
    result = CliRunner().invoke(run_main, [*base, "--source", "0", "--camera-size", "1280by720"])
    assert result.exit_code == 1 and "--camera-size expects two numbers" in result.output
    result = CliRunner().invoke(run_main, [*base, "--range", "5,1"])
    assert result.exit_code == 1 and "MIN < MAX" in result.output


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


def test_ctrl_c_ends_promptly_with_full_queues(dynamic_onnx):
    sink = InterruptingSink()
    before = set(threading.enumerate())
    with open_backend(dynamic_onnx) as backend:
        with pytest.raises(KeyboardInterrupt):  # not swallowed: the caller says the run was interrupted
            run(BurstSource(200), SlowBackend(backend), plain_plan(sink))  # the input queue fills
    # the stages ended on the stop event while their queues were full: none is left running
    assert [t.name for t in set(threading.enumerate()) - before] == []
    assert sink.written == 3 and sink.closed is False  # unfinished outputs are discarded


# --- the run policy (dav2.runtime.session) ----------------------------------------------------


class FakeBackend:
    """What the pipeline and the policy ask of a backend; depth is the input's first channel."""

    name = "fake"
    default_input_size = 56

    def __init__(self, fixed_hw=None, kind="relative", path=Path("models/fake_56x84.onnx")):
        self.fixed_hw, self.kind, self.path = fixed_hw, kind, path

    def infer(self, batch):
        return batch[:, 0]


class VideoLike(Source):
    """Frames of one scene through time (as a video file): smoothed colours, no window."""

    kind, fps = "video", 12.0

    def __init__(self, count=3, shape=(42, 56, 3)):
        self.count, self.shape = count, shape

    def __iter__(self):
        for index in range(self.count):
            yield Frame(np.full(self.shape, 40 * index, np.uint8), f"frame_{index:06d}", index)


def write_images(folder: Path, count: int, shape=(425, 640, 3)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        cv2.imwrite(str(folder / f"{index}.png"), np.random.default_rng(index).integers(0, 255, shape, np.uint8))
    return folder


def test_policy_colours_pictures_alone_and_sequences_smoothed(tmp_path):
    backend = FakeBackend()
    assert plan_run(backend, SampleSource(), RunOptions()).color_range.smoothing == 0.0
    folder = FolderSource(write_images(tmp_path / "photos", 2, (20, 30, 3)))
    assert plan_run(backend, folder, RunOptions()).color_range.smoothing == 0.0
    plan = plan_run(backend, VideoLike(), RunOptions(color_range=(0.0, 5.0)))
    assert plan.color_range.smoothing == SEQUENCE_SMOOTHING and plan.color_range.fixed == (0.0, 5.0)
    assert plan.sinks == [] and plan.input_size == 56 and plan.unit == "disparity"
    plan = plan_run(FakeBackend(kind="metric"), SampleSource(), RunOptions(input_size=70))
    assert plan.unit == "m" and plan.input_size == 70


@pytest.mark.parametrize(
    "options, message",
    [
        ({"input_size": 13}, "--input-size must be at least 14"),
        ({"color_range": (5.0, 1.0)}, "MIN < MAX"),
        ({"fmt": "jpeg"}, "unknown format 'jpeg'"),
        ({"cmap": "jet"}, "unknown colour map 'jet'"),
        ({"also_save": (SaveTarget("x.png", "tiff"),)}, "unknown format 'tiff'"),
    ],
)
def test_policy_rejects_wrong_choices_before_anything_opens(options, message):
    with pytest.raises(Dav2Error, match=message):
        RunOptions(**options)


def test_policy_warns_that_a_static_artifact_ignores_input_size(capsys):
    plan = plan_run(FakeBackend(fixed_hw=(518, 784)), SampleSource(), RunOptions(input_size=700))
    expected = "--input-size is ignored: fake_56x84.onnx has a fixed input of 518x784"
    assert plan.warnings == [expected + " (images are stretched to it)"]
    assert expected in capsys.readouterr().err
    plan_run(FakeBackend(), SampleSource(), RunOptions(input_size=700))  # a dynamic one uses it
    assert "ignored" not in capsys.readouterr().err


def test_policy_opens_the_sinks_the_options_name(tmp_path):
    options = RunOptions(
        save=tmp_path / "depth.mp4", fmt="side-by-side", also_save=(SaveTarget(tmp_path / "f", "npy"),)
    )
    plan = plan_run(FakeBackend(), VideoLike(), options)
    video, files = plan.sinks
    assert isinstance(video, VideoSink) and video.fps == 12.0 and video.fmt == "side-by-side"
    assert isinstance(files, ImageSink) and files.fmt == "npy" and files.folder == tmp_path / "f"
    plan.close()
    assert list(tmp_path.iterdir()) == []  # a plan that never ran leaves nothing behind
    single = plan_run(FakeBackend(kind="metric"), SampleSource(), RunOptions(save=tmp_path / "d.png", fmt="png16"))
    assert single.sinks[0].file == tmp_path / "d.png" and single.sinks[0].unit == "m"
    with pytest.raises(Dav2Error, match="writes .npy files"):
        plan_run(FakeBackend(), SampleSource(), RunOptions(save=tmp_path / "d.png", fmt="npy"))


def test_policy_closes_what_it_opened_when_a_later_sink_fails(tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    opened = []
    original = VideoSink.__init__

    def remember(self, *args, **kwargs):
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(VideoSink, "__init__", remember)
    with pytest.raises(Dav2Error, match="--show needs a display"):
        plan_run(FakeBackend(), VideoLike(), RunOptions(save=tmp_path / "depth.mp4", show=True))
    assert len(opened) == 1 and list(tmp_path.iterdir()) == []  # the video's temporary file is gone


def test_plan_runs_through_the_pipeline_with_its_colour_range(tmp_path):
    memory = MemorySink()
    plan = plan_run(FakeBackend(), VideoLike(), RunOptions(save=tmp_path / "out", fmt="npy", color_range=(0.0, 9.0)))
    summary = run(VideoLike(), FakeBackend(), plan.with_sinks(memory))
    assert summary.frames == 3 and memory.written == 3 and memory.value_range == (0.0, 9.0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"frame_{i:06d}.npy" for i in range(3)]
    np.testing.assert_allclose(np.load(tmp_path / "out" / "frame_000002.npy"), memory.depth)


def test_static_artifact_stretching_is_warned_once_per_run(tmp_path, capsys):
    folder = write_images(tmp_path / "photos", 3)  # 425x640: aspect 1.51
    static = FakeBackend(fixed_hw=(518, 518))
    run(FolderSource(folder), static, plain_plan(MemorySink()))
    err = capsys.readouterr().err
    expected = "fake_56x84.onnx has a fixed 518x518 input: 425x640 images are stretched to it"
    assert err.count(expected) == 1 and "export without --height/--width" in err
    run(FolderSource(folder), static, plain_plan(MemorySink()))  # every run says it again, once
    assert capsys.readouterr().err.count(expected) == 1
    run(FolderSource(folder), FakeBackend(fixed_hw=(518, 784)), plain_plan(MemorySink()))  # 0.5 % off: not worth a word
    run(FolderSource(folder), FakeBackend(), plain_plan(MemorySink()))  # dynamic: keeps the shape
    assert "stretched" not in capsys.readouterr().err
