"""Live latency and the latest-frame policy, checked without hardware.

A synthetic camera (dav2.runtime.sources.SyntheticCamera) delivers frames at a fixed rate with
their capture times; a Backend subclass sleeps a fixed time per call, standing in for an
accelerator's inference time (no library is imitated: it returns a constant depth). The
pipeline's summary must then say what the arithmetic of the policy predicts: inference takes
the newest frame whenever it becomes free, every other frame is dropped, and a frame's
latency is its wait for inference to become free plus one inference.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata
from dav2.runtime.backends.base import Backend
from dav2.runtime.fps import FpsMeter, RunSummary, format_summary, overlay_text
from dav2.runtime.pipeline import run
from dav2.runtime.session import RunPlan
from dav2.runtime.sinks import MemorySink
from dav2.runtime.sources import SyntheticCamera, classify_source, open_source
from dav2.vocabulary import ArtifactFormat, ModelKind, Precision

NET_HW = (42, 56)  # the frames' 3:4 shape, so nothing is stretched
FRAME_SIZE = (160, 120)  # small frames: host work stays far below a frame period


class SleepBackend(Backend):
    """Inference that takes `seconds` and returns a constant disparity (a test double of time)."""

    name = "sleep"

    def __init__(self, seconds: float):
        metadata = ArtifactMetadata(
            artifact="sleep.onnx",
            format=ArtifactFormat.ONNX,
            encoder="vits",
            kind=ModelKind.RELATIVE,
            precision=Precision.FP32,
            dynamic=False,
            input_shape=[1, 3, *NET_HW],
            from_sidecar=False,
        )
        super().__init__(Path("sleep.onnx"), metadata)
        self.seconds = seconds
        self.depth = np.linspace(1.0, 2.0, NET_HW[0] * NET_HW[1], dtype=np.float32).reshape(1, *NET_HW)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return self.depth

    def close(self) -> None:
        pass


@dataclass
class Predicted:
    processed: int
    dropped: int
    latency_ms: list[float]  # of the processed frames after the first (the warm-up frame)


def predict_live_run(fps: float, infer_s: float, frames: int) -> Predicted:
    """The latest-frame policy on paper: frame k is captured at k / fps; inference, when free,
    takes the newest frame captured since it last took one (or waits for the next); it takes
    infer_s. The source ends right after its last frame, and a frame still waiting then is
    dropped (the end marker replaces it). Host work is taken as zero."""
    period = 1.0 / fps
    captures = [k * period for k in range(frames)]
    end = captures[-1]
    free, taken, latencies = 0.0, -1, []
    while True:
        waiting = [k for k in range(taken + 1, frames) if captures[k] <= free]
        if waiting:
            newest, start = waiting[-1], free
        elif taken + 1 < frames:
            newest = taken + 1
            start = captures[newest]
        else:
            break
        if start > end:  # the end marker has replaced what was waiting
            break
        latencies.append((start + infer_s - captures[newest]) * 1000)
        taken, free = newest, start + infer_s
    processed = len(latencies)
    return Predicted(processed, frames - processed, latencies[1:])


def live_run(fps: float, infer_s: float, frames: int) -> tuple[RunSummary, SyntheticCamera]:
    camera = SyntheticCamera(fps, FRAME_SIZE, frames=frames)
    backend = SleepBackend(infer_s)
    summary = run(camera, backend, RunPlan.for_sinks(backend, [MemorySink()], preprocessing="float32"))
    return summary, camera


def test_the_paper_model_itself():
    """The prediction used below, on numbers small enough to check by hand."""
    # 10 FPS, 250 ms inference: frames 0, 2 (at 250 ms: 0.2 captured), 5 (at 500), 7 (at 750),
    # then the source ends at 900 with frame 9 waiting: dropped by the end marker
    predicted = predict_live_run(10.0, 0.25, 10)
    assert predicted.processed == 4 and predicted.dropped == 6
    assert predicted.latency_ms == pytest.approx([300.0, 250.0, 300.0])
    # inference faster than the camera: nothing dropped, latency is one inference
    fast = predict_live_run(10.0, 0.02, 10)
    assert fast.processed == 10 and fast.dropped == 0 and fast.latency_ms == pytest.approx([20.0] * 9)


def test_slow_inference_drops_what_the_arithmetic_predicts():
    """30 FPS camera, 80 ms inference: about 3 of every 8 frames processed, latency 80-113 ms."""
    fps, infer_s, frames = 30.0, 0.08, 75
    summary, camera = live_run(fps, infer_s, frames)
    predicted = predict_live_run(fps, infer_s, frames)
    period_ms = 1000.0 / fps
    # every frame the camera delivered is either shown or counted as dropped
    assert summary.frames + summary.dropped_frames == camera.delivered
    assert camera.delivered + camera.missed == frames and camera.missed <= 2
    assert abs(summary.frames - predicted.processed) <= 2, (summary.frames, predicted.processed)
    assert abs(summary.dropped_frames - predicted.dropped) <= 2 + camera.missed
    latency = summary.latency_ms
    expected = np.percentile(predicted.latency_ms, [50, 90])
    # host work (preprocessing 160x120, postprocessing, thread hand-offs) adds a few ms;
    # the tolerance is a third of a frame period either way
    assert latency.p50 == pytest.approx(expected[0], abs=period_ms / 3 + 4)
    assert latency.p90 == pytest.approx(expected[1], abs=period_ms / 3 + 6)
    assert infer_s * 1000 - 1 <= latency.p50 <= latency.p90 <= infer_s * 1000 + period_ms + 25
    assert summary.stages["inference"].p50_ms == pytest.approx(infer_s * 1000, abs=5)


def test_fast_inference_drops_nothing_and_latency_is_one_inference():
    fps, infer_s, frames = 30.0, 0.01, 30
    summary, camera = live_run(fps, infer_s, frames)
    # at most the very last frame, replaced by the end marker before inference took it
    assert summary.dropped_frames <= 1 and camera.missed == 0
    assert summary.frames + summary.dropped_frames == frames
    latency = summary.latency_ms
    assert infer_s * 1000 - 1 <= latency.p50 <= infer_s * 1000 + 8
    assert summary.end_to_end_fps == pytest.approx(fps, rel=0.15)  # the camera sets the pace


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
    start = time.perf_counter()
    frames = list(camera)
    assert [f.index for f in frames] == list(range(10)) and frames[0].image.shape == (48, 64, 3)
    assert time.perf_counter() - start == pytest.approx(0.09, abs=0.05)
    gaps = np.diff([f.captured for f in frames])
    assert gaps == pytest.approx([0.01] * 9, abs=1e-9)  # due times, not read times
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
    camera = SyntheticCamera(0.5, (32, 32))  # a frame every two seconds
    frames = iter(camera)
    next(frames)
    start = time.perf_counter()
    camera.close()
    assert next(frames, None) is None and time.perf_counter() - start < 0.5
