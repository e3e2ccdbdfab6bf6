"""The run loop: capture -> preprocess | inference | postprocess -> sinks, in three threads.

Capture and preprocessing, inference, and output (postprocessing, colouring, writing,
the window) run as separate stages joined by bounded queues, so each one works while the
others do: on a two-core CPU the pre/post-processing of neighbouring frames hides behind
inference.

- Files (videos, folders, images) go through bounded FIFO queues: nothing is dropped, and
  the reader waits when inference is behind.
- Live sources (cameras, streams) go through one-frame mailboxes instead: a newer frame
  replaces one that inference has not taken yet (counted as dropped), so live latency stays
  at about one capture plus one inference and does not grow.

Each frame carries its own stage times (wall clock, and the host stages' thread CPU time,
taken in the stage's own thread) and its capture time; the output stage records them
(FpsMeter), including, for live sources, the latency from capture to written/displayed depth.

`max_frames` counts frames processed (written to every sink). A file source reads no more
than that many; a live source keeps capturing (dropping what inference cannot take) until
the output stage has written that many, so `--max-frames 20` on a camera gives 20 frames.

The window (when --show is given) stays in the main thread, as GUI toolkits require.

Stopping: Ctrl-C and SIGTERM (KeyboardInterrupt, and dav2.cli.common.Terminated) are not
swallowed: the sinks are closed with success=False (a video's temporary file is removed, an
earlier file of that name kept), the source is closed, and the interruption goes on to the
caller, which reports it (dav2-run: one line, exit 130 or 143). Stopping does not wait for a
capture blocked inside FFmpeg (a stalled stream): the source releases it when the read returns,
and `run` waits for the capture thread at most CAPTURE_JOIN_S.

Limits: before preprocessing, a dynamic artifact's network input is checked against the
token limit (processing.check_tokens); a folder skips such an image with a warning, any other
source ends the run with one line.

Ownership: `run` closes the source and the sinks it is given (it is their last user); the
backend stays open, because callers reuse it across runs (the web app keeps models loaded),
so whoever opened it closes it: `with open_backend(path) as backend: run(...)`.
What to write, how to colour it and how to preprocess is decided once by
dav2.runtime.session.plan_run, and `run` takes that RunPlan whole.

Depth hooks: `stabilizer` aligns the network's output through time (at network resolution,
before postprocessing); `transforms` (`DepthTransform`s, e.g. session.AnchorScale for
--anchors) change the full-resolution depth after postprocessing, in order, before it is
coloured and written, so every sink sees the same depth in the same unit.
"""

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from dav2 import console, processing
from dav2.runtime.backends.base import Backend
from dav2.runtime.feed import Feeder
from dav2.runtime.fps import FpsMeter, LiveSnapshot, RunSummary
from dav2.runtime.session import RunPlan, StretchWarning
from dav2.runtime.sinks import Sink, WindowSink
from dav2.runtime.sources import Frame, Source

QUEUE_SIZE = 4
POLL_S = 0.05
TICK_S = 1.0  # seconds between live snapshots (on_tick)
CAPTURE_JOIN_S = 0.5  # how long a stopping run waits for a capture blocked in a read
STAGE_JOIN_S = 10.0  # how long it waits for the other stages (at most one inference in progress)
STOP = None  # end-of-stream marker passed down the stages


class DepthTransform(Protocol):
    """Full-resolution depth (H x W, the frame's size) in, depth out: applied by the output
    stage after postprocessing and before the colour range and the sinks."""

    def __call__(self, depth: np.ndarray) -> np.ndarray: ...


def apply_transforms(transforms: Sequence[DepthTransform], depth: np.ndarray) -> np.ndarray:
    for transform in transforms:
        depth = transform(depth)
    return depth


@dataclass
class Job:
    """One frame on its way through the stages."""

    frame: Frame
    captured: float  # perf_counter() when the frame was read
    tensor: np.ndarray
    times: dict[str, float] = field(default_factory=dict)  # wall-clock ms per stage
    cpu: dict[str, float] = field(default_factory=dict)  # thread CPU ms per host stage
    network_depth: np.ndarray | None = None


class LatestSlot:
    """A one-item mailbox: put() replaces an item nobody has taken yet (live sources)."""

    def __init__(self):
        self._item = None
        self._full = False
        self._condition = threading.Condition()
        self.dropped = 0

    def put(self, item, timeout: float | None = None) -> None:
        with self._condition:
            if self._full and self._item is not STOP:
                self.dropped += 1
            if not (self._full and self._item is STOP):  # the end marker is never overwritten
                self._item = item
            self._full = True
            self._condition.notify()

    def get(self, timeout: float | None = None):
        with self._condition:
            if not self._condition.wait_for(lambda: self._full, timeout):
                raise queue.Empty
            item, self._item, self._full = self._item, None, False
            return item


def new_channel(live: bool):
    return LatestSlot() if live else queue.Queue(maxsize=QUEUE_SIZE)


def put_until_stopped(channel, item, stop: threading.Event) -> bool:
    """Put, waiting while the channel is full; give up (False) when the run is stopping."""
    while not stop.is_set():
        try:
            channel.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


def get_until_stopped(channel, stop: threading.Event):
    while not stop.is_set():
        try:
            return channel.get(timeout=POLL_S)
        except queue.Empty:
            continue
    return STOP


class Stage(threading.Thread):
    """A daemon thread that remembers the exception that ended it."""

    def __init__(self, name: str, work: Callable[[], None]):
        super().__init__(name=name, daemon=True)
        self.work = work
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # re-raised in the main thread
            self.error = exc


def within_token_limit(frame: Frame, source: Source, input_size: int, max_tokens: int) -> bool:
    """False (with a warning) for a folder's image past the token limit; other sources raise."""
    try:
        processing.check_tokens(frame.image.shape[:2], input_size, max_tokens, what=frame.name)
    except processing.TooManyTokens as exc:
        if not source.skips_bad_frames:
            raise
        console.warn(f"skipping {exc}")
        return False
    return True


def capture_stage(
    source, feed: Feeder, backend, outbox, stop: threading.Event, max_frames, max_tokens
) -> Callable[[], None]:
    """Read and preprocess; `max_frames` None for a live source (the output stage counts)."""
    fixed_hw, input_size = backend.fixed_hw, feed.input_size
    stretch = StretchWarning.for_backend(backend)

    def work() -> None:
        try:
            frames = iter(source)
            count = 0
            while not stop.is_set() and (max_frames is None or count < max_frames):
                t0, c0 = time.perf_counter(), time.thread_time()
                frame = next(frames, None)
                if frame is None:
                    break
                t1, c1 = time.perf_counter(), time.thread_time()
                if fixed_hw is None and not within_token_limit(frame, source, input_size, max_tokens):
                    continue
                if stretch is not None:
                    stretch.check(frame.image.shape[:2])
                tensor = feed(frame.image)
                t2, c2 = time.perf_counter(), time.thread_time()
                captured = frame.captured if frame.captured is not None else t1  # the sensor's time, if known
                job = Job(frame, captured, tensor, {"read": (t1 - t0) * 1000, "preprocess": (t2 - t1) * 1000})
                job.cpu.update({"read": (c1 - c0) * 1000, "preprocess": (c2 - c1) * 1000})
                if not put_until_stopped(outbox, job, stop):
                    break
                count += 1
        finally:
            if not stop.is_set():  # when stopping, the next stage ends on the event itself
                put_until_stopped(outbox, STOP, stop)

    return work


def inference_stage(backend: Backend, feed: Feeder, inbox, outbox, stop: threading.Event) -> Callable[[], None]:
    def work() -> None:
        try:
            while True:
                job = get_until_stopped(inbox, stop)
                if job is STOP:
                    break
                start = time.perf_counter()
                job.network_depth = backend.infer(job.tensor)
                feed.give_back(job.tensor, job.network_depth)  # the next frames reuse its buffer
                job.tensor = None
                job.times["inference"] = (time.perf_counter() - start) * 1000
                if not put_until_stopped(outbox, job, stop):
                    break
        finally:
            if not stop.is_set():  # when stopping, the next stage ends on the event itself
                put_until_stopped(outbox, STOP, stop)

    return work


def run(
    source: Source,
    backend: Backend,
    plan: RunPlan,
    *,
    max_frames: int | None = None,
    on_tick: Callable[[LiveSnapshot], None] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> RunSummary:
    """Process `source` through `backend` as `plan` says; return the run's numbers.

    The plan (dav2.runtime.session.plan_run) carries every choice about the depth: the sinks,
    the input size and token limit, the preprocessing, the stabiliser, the depth transforms
    and the colour range. dav2-run, the web app and `dav2-bench --pipeline` pass theirs whole,
    so no front end can drop one of them on the way (dav2-batch runs its own Ray stages but
    makes its tensors with the same Feeder, through feed.FeedSpec).

    The source and the plan's sinks are closed either way; the backend is left open (its
    opener closes it). q/Esc in the window or `max_frames` end the run with the frames done
    so far kept; Ctrl-C and SIGTERM discard unfinished outputs and propagate (module docstring).
    `max_frames` counts processed frames (module docstring). `on_tick` gets a live snapshot
    every TICK_S seconds (dav2-run --json), as does every sink with a `tick` method (the live
    view, --serve, streams it); `on_frame` the count of frames written so far (dav2-run's
    progress lines).
    """
    sinks, color_range, transforms = plan.sinks, plan.color_range, plan.depth_transforms()
    stabilizer, max_tokens = plan.stabilizer, plan.max_tokens
    input_size = plan.input_size or backend.default_input_size
    tick_s = TICK_S
    meter = FpsMeter(live=source.live)
    windows = [sink for sink in sinks if isinstance(sink, WindowSink)]
    tickers = live_listeners(sinks) + ([on_tick] if on_tick is not None else [])
    stop = threading.Event()
    to_inference, to_output = new_channel(source.live), new_channel(source.live)
    feed = Feeder(backend, input_size, plan.preprocessing)
    read_limit = None if source.live else max_frames  # a live source's limit is counted at the output
    stages = [
        Stage("capture", capture_stage(source, feed, backend, to_inference, stop, read_limit, max_tokens)),
        Stage("inference", inference_stage(backend, feed, to_inference, to_output, stop)),
    ]
    success = False
    next_tick = time.perf_counter() + tick_s
    try:
        meter.start()
        for stage in stages:
            stage.start()
        while True:
            job = get_until_stopped(to_output, stop)
            if job is STOP:
                break
            t3, c3 = time.perf_counter(), time.thread_time()
            network_depth = job.network_depth if stabilizer is None else stabilizer(job.network_depth)
            depth = apply_transforms(transforms, processing.postprocess(network_depth, job.frame.image.shape[:2]))
            value_range = color_range.update(depth)
            t4, c4 = time.perf_counter(), time.thread_time()
            for window in windows:
                window.overlay = meter.live_text(
                    dropped=dropped_frames(to_inference, to_output) if source.live else None
                )
            for sink in sinks:
                sink.write(job.frame, depth, value_range)
            t5, c5 = time.perf_counter(), time.thread_time()
            job.times.update({"postprocess": (t4 - t3) * 1000, "write": (t5 - t4) * 1000})
            job.cpu.update({"postprocess": (c4 - c3) * 1000, "write": (c5 - c4) * 1000})
            meter.add(job.times, latency_ms=(t5 - job.captured) * 1000, cpu_ms=job.cpu)
            if on_frame is not None:
                on_frame(meter.frames)
            if tickers and t5 >= next_tick:
                snapshot = meter.snapshot(dropped=dropped_frames(to_inference, to_output))
                for tick in tickers:
                    tick(snapshot)
                next_tick = t5 + tick_s
            if any(window.quit for window in windows):
                break
            if max_frames is not None and meter.frames >= max_frames:
                break
        success = True
    finally:
        errors: list[BaseException] = []
        try:
            errors = stop_stages(stages, stop, source)
        finally:  # a second Ctrl-C while stopping still removes unfinished outputs
            close_sinks(sinks, success and not errors)
    if errors:
        raise errors[0]
    return meter.summary(dropped_frames=dropped_frames(to_inference, to_output))


def live_listeners(sinks: list[Sink]) -> list[Callable[[LiveSnapshot], None]]:
    """The `tick` of each sink that shows the live numbers (dav2.runtime.live.LiveView): the
    same snapshot --json prints, so the browser and the terminal agree."""
    return [sink.tick for sink in sinks if callable(getattr(sink, "tick", None))]


def stop_stages(stages: list[Stage], stop: threading.Event, source: Source) -> list[BaseException]:
    """Stop the stages and close the source; the errors that ended stages early.

    The source is closed first: that ends a stream's reconnect wait at once, and a capture
    blocked in a read is released by its own thread when the read returns (sources.py)."""
    stop.set()
    source.close()
    capture, *others = stages
    capture.join(timeout=CAPTURE_JOIN_S)
    for stage in others:
        stage.join(timeout=STAGE_JOIN_S)
    return [stage.error for stage in stages if stage.error is not None]


def close_sinks(sinks: list[Sink], success: bool) -> None:
    """Close every sink, even when one fails (a full disk); the first failure is raised after."""
    failure: BaseException | None = None
    for sink in sinks:
        try:
            sink.close(success)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the other sinks closed
            failure = failure or exc
            success = False
    if failure is not None:
        raise failure


def dropped_frames(*channels) -> int:
    return sum(getattr(channel, "dropped", 0) for channel in channels)
