"""Live latency and the latest-frame policy, checked without hardware and without a clock.

A live source the test drives (LockstepCamera) and a backend that holds each inference until
the test lets it go (HeldBackend: no library is imitated, it returns a constant depth) put the
pipeline into a known state at each step: which frame inference holds, which frames arrived
meanwhile. The policy is then observed as counts and order, not as durations: inference takes
the newest frame whenever it becomes free, every frame it skipped is counted as dropped, and
each frame's latency runs from the time its sensor stamped on it. Timing itself (how long a
frame waits) belongs to benchmarks/, not here.
"""

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata
from dav2.runtime.backends.base import Backend
from dav2.runtime.fps import FpsMeter, format_summary, overlay_text
from dav2.runtime.pipeline import run
from dav2.runtime.session import RunPlan
from dav2.runtime.sources import Frame, Source, SyntheticCamera, classify_source, open_source
from dav2.vocabulary import ArtifactFormat, ModelKind, Precision

NET_HW = (42, 56)  # the frames' 3:4 shape, so nothing is stretched
FRAME_SIZE = (160, 120)
HANG_S = 60.0  # how long a step may take before the test calls the pipeline stuck (a hang guard, not a timing)
STAMP_AGE_S = 1000.0  # the sensor's stamp on each frame: this long before it is handed out


def wait_for(condition: threading.Condition, predicate, what: str) -> None:
    with condition:
        if not condition.wait_for(predicate, HANG_S):
            raise AssertionError(f"the pipeline is stuck: {what} never happened")


class HeldBackend(Backend):
    """Inference that starts, says so, and finishes only when the test releases it; call k
    also waits until the output stage has written k frames, so no result is replaced at the
    output before it is written (the output mailbox is not what these tests look at)."""

    name = "held"

    def __init__(self, sink: "CountingSink"):
        metadata = ArtifactMetadata(
            artifact="held.onnx",
            format=ArtifactFormat.ONNX,
            encoder="vits",
            kind=ModelKind.RELATIVE,
            precision=Precision.FP32,
            dynamic=False,
            input_shape=[1, 3, *NET_HW],
            from_sidecar=False,
        )
        super().__init__(Path("held.onnx"), metadata)
        self.sink = sink
        self.depth = np.linspace(1.0, 2.0, NET_HW[0] * NET_HW[1], dtype=np.float32).reshape(1, *NET_HW)
        self.changed = threading.Condition()
        self.started = 0  # calls begun
        self.released = 0  # calls allowed to finish

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with self.changed:
            call = self.started
            self.started += 1
            self.changed.notify_all()
        wait_for(self.changed, lambda: self.released > call, f"the release of inference {call}")
        wait_for(self.sink.changed, lambda: len(self.sink.names) >= call, f"the output of frame {call - 1}")
        return self.depth

    def release(self) -> None:
        with self.changed:
            self.released += 1
            self.changed.notify_all()

    def close(self) -> None:
        pass


class CountingSink:
    """Records the name of every frame written, in order."""

    def __init__(self):
        self.names: list[str] = []
        self.changed = threading.Condition()

    def write(self, frame, depth, value_range=None):
        with self.changed:
            self.names.append(frame.name)
            self.changed.notify_all()

    def close(self, success=True):
        pass


class LockstepCamera(Source):
    """A live source that hands out frames in steps: `steps[k]` frames once inference has
    started on k frames (all at once, as a sensor delivers them while inference is busy). Once
    a step's frames are in the mailbox, the inference held since the step before may finish.
    Before ending it waits until every frame inference took has been written, so the end
    marker replaces nothing. Each frame is stamped as made STAMP_AGE_S before it is handed out."""

    kind = "camera"
    live = True

    def __init__(self, backend: HeldBackend, steps: list[int]):
        self.backend, self.steps = backend, steps
        self.image = np.full((FRAME_SIZE[1], FRAME_SIZE[0], 3), 128, np.uint8)
        self.delivered = 0

    def __iter__(self):
        backend, sink = self.backend, self.backend.sink
        for step, count in enumerate(self.steps):
            wait_for(backend.changed, lambda step=step: backend.started >= step, f"inference {step}")
            for _ in range(count):
                index = self.delivered
                self.delivered += 1
                yield Frame(self.image, f"frame_{index:06d}", index, captured=time.perf_counter() - STAMP_AGE_S)
            if step:  # asked for the next frame: the last one waits in the mailbox
                backend.release()
        wait_for(backend.changed, lambda: backend.started == len(self.steps), "the last inference")
        backend.release()
        wait_for(sink.changed, lambda: len(sink.names) == len(self.steps), "the last output")


def lockstep_run(steps: list[int]):
    sink = CountingSink()
    backend = HeldBackend(sink)
    camera = LockstepCamera(backend, steps)
    summary = run(camera, backend, RunPlan.for_sinks(backend, [sink], preprocessing="float32"))
    return summary, camera, sink


def test_frames_that_arrive_while_inference_is_busy_leave_only_the_newest():
    """Frame 0 is taken; frames 1-3 arrive while inference holds it; then 4-5 arrive while it
    holds frame 3. Inference must take 3 (the newest), then 5; 1, 2 and 4 are dropped."""
    summary, camera, sink = lockstep_run([1, 3, 2])
    assert sink.names == ["frame_000000", "frame_000003", "frame_000005"]
    assert summary.frames == 3 and summary.dropped_frames == 3
    assert summary.frames + summary.dropped_frames == camera.delivered == 6
    # latency runs from the sensor's stamp, not from when the pipeline read the frame
    assert summary.latency_ms is not None and summary.latency_ms.p50 >= STAMP_AGE_S * 1000
    assert "inference" in summary.stages


def test_inference_that_keeps_up_drops_nothing():
    """Each frame comes while inference holds the one before: one frame waits at a time, and
    none is dropped."""
    summary, camera, sink = lockstep_run([1] * 8)
    assert sink.names == [f"frame_{k:06d}" for k in range(8)]
    assert summary.frames == 8 and summary.dropped_frames == 0 and camera.delivered == 8


def test_summary_text_states_latency_percentiles_and_drops_for_live_sources():
    meter = FpsMeter(live=True)
    meter.start()
    for latency in (40.0, 100.0, 110.0, 120.0, 200.0):
        meter.add({"read": 1.0, "inference": 80.0}, latency_ms=latency)
    summary = meter.summary(dropped_frames=7)  # what pipeline.run counts
    text = format_summary(summary)
    assert summary.live is True
    assert summary.latency_ms.p50 == pytest.approx(115.0)  # the warm-up frame (40) left out
    assert "latency capture -> display 115.0 ms p50, 176.0 ms p90" in text
    assert "7 of 12 captured frame(s) dropped by the latest-frame policy" in text
    assert "0 of 5 captured frame(s) dropped" in format_summary(meter.summary())  # said even when none
    files = FpsMeter()
    files.start()
    for _ in range(3):
        files.add({"inference": 80.0}, latency_ms=90.0)
    file_summary = files.summary()
    # a file's capture-to-output time is queueing, not latency: neither kept nor printed
    assert file_summary.latency_ms is None
    assert "dropped" not in format_summary(file_summary) and "latency" not in format_summary(file_summary)


def test_overlay_text_for_the_window():
    text = overlay_text(14.24, [90.0, 96.0, 100.0, 118.0], 37, {"preprocess": 2.0, "inference": 70.0})
    lines = text.splitlines()
    assert lines[0] == "14.2 FPS end-to-end"
    assert lines[1].startswith("latency p50 98 ms  p90 ")
    assert lines[2] == "dropped 37 (latest frame kept)"
    assert lines[3] == "stage FPS: prepr 500  infer 14"
    meter = FpsMeter(live=True)
    assert meter.live_text(dropped=0) == "warming up"


def test_synthetic_camera_keeps_time_and_is_a_source_string():
    camera = SyntheticCamera(100.0, (64, 48), frames=10)
    frames, received = [], []
    for frame in camera:
        received.append(time.perf_counter())
        frames.append(frame)
    indices = [f.index for f in frames]
    # a reader that fell behind (a loaded machine) skips frames, as from a sensor; none comes twice
    assert indices == sorted(set(indices)) and indices[0] == 0 and indices[-1] == 9
    assert camera.delivered == len(frames) and camera.delivered + camera.missed == 10
    assert frames[0].image.shape == (48, 64, 3)
    assert all(got >= frame.captured for got, frame in zip(received, frames))  # never handed out before it is due
    gaps = np.diff([f.captured for f in frames])
    assert gaps == pytest.approx(np.diff(indices) * 0.01, abs=1e-9)  # due times, not read times
    assert not np.array_equal(frames[0].image, frames[1].image)  # the scene moves
    late = SyntheticCamera(100.0, (64, 48), frames=20)
    delivered = []
    for frame in late:
        delivered.append(frame.index)
        time.sleep(0.035)  # a reader 3.5 periods late gets the newest frame, as a sensor would
    assert late.missed > 0 and late.delivered + late.missed == 20 and delivered[-1] == 19
    assert classify_source("synthetic:30").kind == "synthetic"
    source = open_source("synthetic:25:320x240")
    assert source.live and source.fps == 25.0 and source.size == (320, 240)
    assert open_source("synthetic:", camera_size=(128, 96), camera_fps=12.0).size == (128, 96)
    for bad in ("synthetic:0", "synthetic:fast", "synthetic:30:8x8", "synthetic:30:640", "synthetic:inf"):
        with pytest.raises(Dav2Error, match="synthetic"):
            open_source(bad)


def test_closing_ends_the_synthetic_camera_at_once():
    """close() from another thread ends a reader's wait for a frame due in about 11 days."""
    camera = SyntheticCamera(1e-6, (32, 32))
    frames = iter(camera)
    next(frames)
    after_close = []
    reader = threading.Thread(target=lambda: after_close.append(next(frames, None)))
    reader.start()
    camera.close()
    reader.join(HANG_S)
    assert not reader.is_alive() and after_close == [None]
