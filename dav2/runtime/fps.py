"""Per-stage timing of a run, and the honest FPS numbers that come from it.

Stages: read (getting the frame from the source), preprocess, inference, postprocess, write
(sinks: files, video, window). The first frame includes one-time work (memory allocation,
kernel selection), so it is reported on its own and left out of the statistics; end-to-end
FPS is frames over wall-clock time for the remaining frames. The stages run in parallel
threads (runtime.pipeline), so end-to-end FPS can approach the slowest stage's FPS rather
than the sum of all stages.

Stage times are wall-clock. When inference holds every core (a CPU backend, a Jetson's
shared cores) a host stage's wall time grows with the waiting for a core, not with its own
work, so the host stages (HOST_STAGES) also record their CPU time: the thread CPU time
(time.thread_time) of the stage's own thread, beside the wall time in the summary, its
printed text, the live JSON lines and the overlay. It leaves out work a library hands to its
own thread pool (OpenCV's parallel resize); inference has no CPU time here, because a
backend computes in its own threads (or on an accelerator).

Live sources (cameras, streams, the synthetic camera) keep only the newest frame between
stages, so two numbers tell a user what they see: the capture-to-display latency (p50 and
p90: the typical and the bad case; a mean hides the tail) and how many frames the
latest-frame policy dropped. Both are in the summary, its printed text and the window overlay.
Latency is measured for live sources only: a file's frame waits in the queues behind the
frames read before it, so its capture-to-output time is queueing, not latency.

The numbers are records, not loose dicts: `FpsMeter.summary()` is a `RunSummary` (a
`StageStats` per stage, `LatencyStats`, the first frame's own numbers) and `snapshot()` a
`LiveSnapshot`; their `as_dict()` is the JSON dav2-run --json prints, so the app, the bench
and the CLI read fields a type checker knows while the written keys stay what scripts read.
"""

import time
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

STAGES = ("read", "preprocess", "inference", "postprocess", "write")
HOST_STAGES = ("read", "preprocess", "postprocess", "write")  # the stages with a CPU time


def rounded(value: float | None, digits: int = 3) -> float | None:
    return round(float(value), digits) if value is not None else None


@dataclass(frozen=True)
class StageStats:
    """One stage's times over the timed frames, in ms of wall clock; a host stage also carries
    its thread's CPU time (module docstring), which inference has not."""

    mean_ms: float
    p50_ms: float
    p90_ms: float
    fps: float | None  # 1000 / mean_ms (None when the mean is 0)
    cpu_mean_ms: float | None = None
    cpu_p50_ms: float | None = None

    @classmethod
    def of(cls, wall_ms: list[float], cpu_ms: list[float] | None = None) -> "StageStats":
        mean = float(np.mean(wall_ms))
        return cls(
            mean_ms=round(mean, 3),
            p50_ms=round(float(np.percentile(wall_ms, 50)), 3),
            p90_ms=round(float(np.percentile(wall_ms, 90)), 3),
            fps=round(1000.0 / mean, 3) if mean > 0 else None,
            cpu_mean_ms=rounded(np.mean(cpu_ms)) if cpu_ms else None,
            cpu_p50_ms=rounded(np.percentile(cpu_ms, 50)) if cpu_ms else None,
        )

    @property
    def has_cpu(self) -> bool:
        return self.cpu_mean_ms is not None

    def as_dict(self) -> dict:
        """The JSON shape: the CPU keys only for a stage that has a CPU time."""
        record = asdict(self)
        if not self.has_cpu:
            del record["cpu_mean_ms"], record["cpu_p50_ms"]
        return record


@dataclass(frozen=True)
class LatencyStats:
    """Capture-to-output latency (ms): p50 and p90, the typical and the bad case, and the mean."""

    mean: float
    p50: float
    p90: float

    @classmethod
    def of(cls, latency_ms: list[float]) -> "LatencyStats | None":
        """None without any latency (a file source, or no timed frame)."""
        if not latency_ms:
            return None
        return cls(
            mean=round(float(np.mean(latency_ms)), 3),
            p50=round(float(np.percentile(latency_ms, 50)), 3),
            p90=round(float(np.percentile(latency_ms, 90)), 3),
        )

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunSummary:
    """The numbers of one finished run (pipeline.run's result). The first frame carries one-time
    work, so it has its own fields and stays out of `stages`, `end_to_end_fps` and `latency_ms`."""

    frames: int  # processed, the warm-up frame included
    timed_frames: int  # the frames after the first: what the statistics cover
    first_frame_ms: float | None
    first_frame_stage_ms: dict[str, float]
    first_frame_stage_cpu_ms: dict[str, float]
    wall_s: float  # wall time of the timed frames
    end_to_end_fps: float | None
    live: bool  # a camera or stream: latency and drops are always stated
    latency_ms: LatencyStats | None  # live sources only (module docstring)
    stages: dict[str, StageStats] = field(default_factory=dict)
    dropped_frames: int = 0  # by the latest-frame policy (live sources)

    @property
    def inference_fps(self) -> float | None:
        stage = self.stages.get("inference")
        return stage.fps if stage is not None else None

    def as_dict(self) -> dict:
        """The JSON record dav2-run --json prints as its last line (the keys reports and scripts read)."""
        return {
            "frames": self.frames,
            "timed_frames": self.timed_frames,
            "first_frame_ms": self.first_frame_ms,
            "first_frame_stage_ms": dict(self.first_frame_stage_ms),
            "first_frame_stage_cpu_ms": dict(self.first_frame_stage_cpu_ms),
            "wall_s": self.wall_s,
            "end_to_end_fps": self.end_to_end_fps,
            "live": self.live,
            "inference_fps": self.inference_fps,
            "latency_ms": self.latency_ms.as_dict() if self.latency_ms is not None else None,
            "stages": {stage: stats.as_dict() for stage, stats in self.stages.items()},
            "dropped_frames": self.dropped_frames,
        }


@dataclass(frozen=True)
class LiveSnapshot:
    """The live numbers over the recent window of frames: one JSON line a second (dav2-run --json)."""

    frames: int
    end_to_end_fps: float | None
    latency_ms: float | None  # the mean; p50 and p90 beside it
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    stage_ms: dict[str, float]
    stage_fps: dict[str, float]
    stage_cpu_ms: dict[str, float]
    dropped_frames: int

    def as_dict(self) -> dict:
        return asdict(self)


class FpsMeter:
    """Stage times, end-to-end rate and latency of one run; `live` marks a camera or stream,
    whose summary always states latency percentiles and dropped frames (even none)."""

    def __init__(self, window: int = 30, live: bool = False):
        self.live = live
        self.samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
        self.cpu_samples: dict[str, list[float]] = {stage: [] for stage in HOST_STAGES}
        self.recent: deque[float] = deque(maxlen=window)  # end-to-end seconds per frame
        self.latency_ms: list[float] = []  # capture -> written/displayed, per frame
        self.first_frame_ms: float | None = None
        self.first_frame_stage_ms: dict[str, float] = {}  # a one-image run has only this frame
        self.first_frame_stage_cpu_ms: dict[str, float] = {}
        self.frames = 0
        self._started: float | None = None
        self._last_end: float | None = None

    def start(self) -> None:
        self._started = self._last_end = time.perf_counter()

    def add(
        self, stage_ms: dict[str, float], latency_ms: float | None = None, cpu_ms: dict[str, float] | None = None
    ) -> None:
        """Record one frame's stage times (wall-clock), its host stages' CPU times and, for a
        live source, its capture-to-output latency (all in milliseconds)."""
        now = time.perf_counter()
        self.frames += 1
        cpu_ms = cpu_ms or {}
        if self.frames == 1:
            self.first_frame_ms = sum(stage_ms.values())
            self.first_frame_stage_ms = dict(stage_ms)
            self.first_frame_stage_cpu_ms = dict(cpu_ms)
            self._started = now  # statistics start after the warm-up frame
        else:
            for stage, ms in stage_ms.items():
                self.samples[stage].append(ms)
            for stage, ms in cpu_ms.items():
                self.cpu_samples[stage].append(ms)
            if latency_ms is not None and self.live:
                self.latency_ms.append(latency_ms)
            self.recent.append(now - self._last_end)
        self._last_end = now

    def recent_stage_ms(self) -> dict[str, float]:
        """Mean time of each stage over the recent window of frames."""
        return recent_means(self.samples, len(self.recent))

    def recent_cpu_ms(self) -> dict[str, float]:
        """Mean CPU time of each host stage over the recent window of frames."""
        return recent_means(self.cpu_samples, len(self.recent))

    def recent_latency_ms(self) -> list[float]:
        """Latencies of the recent window of frames (the overlay's numbers follow the scene)."""
        return self.latency_ms[-len(self.recent) :] if self.recent else []

    def live_text(self, dropped: int | None = None) -> str:
        """Short lines for the window overlay (WindowSink.overlay): FPS, latency p50/p90 over
        the recent frames, frames dropped so far (when given) and each stage's own FPS."""
        if not self.recent:
            return "warming up"
        fps = len(self.recent) / sum(self.recent)
        stages = self.recent_stage_ms()
        return overlay_text(fps, self.recent_latency_ms(), dropped, stages, self.recent_cpu_ms())

    def snapshot(self, dropped: int = 0) -> LiveSnapshot:
        """The live numbers, for one JSON line a second."""
        fps = len(self.recent) / sum(self.recent) if self.recent else None
        recent = LatencyStats.of(self.recent_latency_ms())
        stages = self.recent_stage_ms()
        return LiveSnapshot(
            frames=self.frames,
            end_to_end_fps=round(fps, 3) if fps else None,
            latency_ms=recent.mean if recent else None,
            latency_p50_ms=recent.p50 if recent else None,
            latency_p90_ms=recent.p90 if recent else None,
            stage_ms={s: round(ms, 3) for s, ms in stages.items()},
            stage_fps={s: round(1000 / ms, 3) for s, ms in stages.items() if ms > 0},
            stage_cpu_ms={s: round(ms, 3) for s, ms in self.recent_cpu_ms().items()},
            dropped_frames=dropped,
        )

    def summary(self, dropped_frames: int = 0) -> RunSummary:
        """The run's numbers; `dropped_frames` is what the pipeline's latest-frame mailboxes
        counted (the meter sees only the frames that arrive)."""
        timed = max(self.frames - 1, 0)
        wall = (self._last_end - self._started) if timed > 0 else 0.0
        stages = {
            stage: StageStats.of(values, self.cpu_samples.get(stage))
            for stage, values in self.samples.items()
            if values
        }
        return RunSummary(
            frames=self.frames,
            timed_frames=timed,
            first_frame_ms=rounded(self.first_frame_ms),
            first_frame_stage_ms={stage: round(ms, 3) for stage, ms in self.first_frame_stage_ms.items()},
            first_frame_stage_cpu_ms={stage: round(ms, 3) for stage, ms in self.first_frame_stage_cpu_ms.items()},
            wall_s=round(wall, 4),
            end_to_end_fps=round(timed / wall, 3) if wall > 0 else None,
            live=self.live,
            latency_ms=LatencyStats.of(self.latency_ms),
            stages=stages,
            dropped_frames=dropped_frames,
        )


def recent_means(samples: dict[str, list[float]], count: int) -> dict[str, float]:
    """Each stage's mean over its last `count` values (none when count is 0)."""
    return {stage: float(np.mean(values[-count:])) for stage, values in samples.items() if values and count}


def overlay_text(
    fps: float,
    latency_ms: list[float],
    dropped: int | None,
    stage_ms: dict[str, float],
    cpu_ms: dict[str, float] | None = None,
) -> str:
    """The window overlay's lines, from plain numbers (so any front end can draw the same):

    14.2 FPS end-to-end
    latency p50 96 ms  p90 118 ms
    dropped 37 (latest frame kept)
    stage FPS: prepr 410  infer 15  postp 380  write 900
    host ms wall/cpu: prepr 2.4/1.1  postp 2.6/1.3  write 1.1/0.9
    """
    lines = [f"{fps:.1f} FPS end-to-end"]
    if latency_ms:
        p50, p90 = np.percentile(latency_ms, [50, 90])
        lines.append(f"latency p50 {p50:.0f} ms  p90 {p90:.0f} ms")
    if dropped is not None:
        lines.append(f"dropped {dropped} (latest frame kept)")
    per_stage = "  ".join(f"{s[:5]} {1000 / ms:.0f}" for s, ms in stage_ms.items() if ms > 0 and s != "read")
    if per_stage:
        lines.append(f"stage FPS: {per_stage}")
    host = "  ".join(
        f"{s[:5]} {stage_ms[s]:.1f}/{ms:.1f}" for s, ms in (cpu_ms or {}).items() if s in stage_ms and s != "read"
    )
    if host:
        lines.append(f"host ms wall/cpu: {host}")
    return "\n".join(lines)


def latency_line(summary: RunSummary) -> str | None:
    """The summary's latency line: p50/p90 (and mean) from capture to display, for live sources
    only (a file's capture-to-output time is queueing)."""
    latency = summary.latency_ms
    if latency is None or not summary.live:
        return None
    return (
        f"  latency capture -> display {latency.p50:.1f} ms p50, {latency.p90:.1f} ms p90 ({latency.mean:.1f} ms mean)"
    )


def dropped_line(summary: RunSummary) -> str | None:
    """Frames the latest-frame policy dropped: always said for live sources, else only if any."""
    dropped = summary.dropped_frames
    if not (summary.live or dropped):
        return None
    captured = summary.frames + dropped
    return f"  {dropped} of {captured} captured frame(s) dropped by the latest-frame policy (newest frame kept)"


def format_summary(summary: RunSummary) -> str:
    """Human-readable summary printed at the end of a run."""
    lines = [f"{summary.frames} frame(s)"]
    if summary.first_frame_ms is not None:
        lines[0] += f"; first frame {summary.first_frame_ms:.1f} ms (warm-up, not in the statistics)"
    if summary.timed_frames > 0:
        for stage, stats in summary.stages.items():
            line = f"  {stage:<12} {stats.mean_ms:9.2f} ms mean  {stats.p50_ms:9.2f} ms p50  {stats.p90_ms:9.2f} ms p90"
            if stats.has_cpu:
                line += f"  {stats.cpu_mean_ms:9.2f} ms cpu"
            lines.append(line)
        if any(stats.has_cpu for stats in summary.stages.values()):
            lines.append("  (ms cpu: the stage thread's own CPU time; wall time also counts waiting for a core)")
        lines.append(f"  inference-only FPS {summary.inference_fps:.2f}, end-to-end FPS {summary.end_to_end_fps:.2f}")
        lines += [line for line in (latency_line(summary), dropped_line(summary)) if line]
    elif summary.frames == 1:
        lines.append("  (one frame only: run more frames for FPS statistics)")
    return "\n".join(lines)
