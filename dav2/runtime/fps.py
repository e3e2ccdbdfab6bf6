"""Per-stage timing of a run, and the honest FPS numbers that come from it.

Stages: read (getting the frame from the source), preprocess, inference, postprocess, write
(sinks: files, video, window). The first frame includes one-time work (memory allocation,
kernel selection), so it is reported on its own and left out of the statistics; end-to-end
FPS is frames over wall-clock time for the remaining frames. The stages run in parallel
threads (runtime.pipeline), so end-to-end FPS can approach the slowest stage's FPS rather
than the sum of all stages; latency is the time from capture to written/displayed output.

Live sources (cameras, streams, the synthetic camera) keep only the newest frame between
stages, so two numbers tell a user what they see: the capture-to-display latency (p50 and
p90: the typical and the bad case; a mean hides the tail) and how many frames the
latest-frame policy dropped. Both are in the summary, its printed text and the window overlay.
"""

import time
from collections import deque

import numpy as np

STAGES = ("read", "preprocess", "inference", "postprocess", "write")


class FpsMeter:
    """Stage times, end-to-end rate and latency of one run; `live` marks a camera or stream,
    whose summary always states latency percentiles and dropped frames (even none)."""

    def __init__(self, window: int = 30, live: bool = False):
        self.live = live
        self.samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
        self.recent: deque[float] = deque(maxlen=window)  # end-to-end seconds per frame
        self.latency_ms: list[float] = []  # capture -> written/displayed, per frame
        self.first_frame_ms: float | None = None
        self.first_frame_stage_ms: dict[str, float] = {}  # a one-image run has only this frame
        self.frames = 0
        self._started: float | None = None
        self._last_end: float | None = None

    def start(self) -> None:
        self._started = self._last_end = time.perf_counter()

    def add(self, stage_ms: dict[str, float], latency_ms: float | None = None) -> None:
        """Record one frame's stage times and its capture-to-output latency (milliseconds)."""
        now = time.perf_counter()
        self.frames += 1
        if self.frames == 1:
            self.first_frame_ms = sum(stage_ms.values())
            self.first_frame_stage_ms = dict(stage_ms)
            self._started = now  # statistics start after the warm-up frame
        else:
            for stage, ms in stage_ms.items():
                self.samples[stage].append(ms)
            if latency_ms is not None:
                self.latency_ms.append(latency_ms)
            self.recent.append(now - self._last_end)
        self._last_end = now

    def recent_stage_ms(self) -> dict[str, float]:
        """Mean time of each stage over the recent window of frames."""
        count = len(self.recent)
        return {stage: float(np.mean(v[-count:])) for stage, v in self.samples.items() if v and count}

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
        return overlay_text(fps, self.recent_latency_ms(), dropped, stages)

    def snapshot(self, dropped: int = 0) -> dict:
        """The live numbers, for one JSON line a second."""
        fps = len(self.recent) / sum(self.recent) if self.recent else None
        recent = latency_stats(self.recent_latency_ms())
        stages = self.recent_stage_ms()
        return {
            "frames": self.frames,
            "end_to_end_fps": round(fps, 3) if fps else None,
            "latency_ms": recent["mean"] if recent else None,
            "latency_p50_ms": recent["p50"] if recent else None,
            "latency_p90_ms": recent["p90"] if recent else None,
            "stage_ms": {s: round(ms, 3) for s, ms in stages.items()},
            "stage_fps": {s: round(1000 / ms, 3) for s, ms in stages.items() if ms > 0},
            "dropped_frames": dropped,
        }

    def summary(self) -> dict:
        timed = self.frames - 1
        wall = (self._last_end - self._started) if timed > 0 else 0.0
        stages = {}
        for stage, values in self.samples.items():
            if values:
                mean = float(np.mean(values))
                stages[stage] = {
                    "mean_ms": round(mean, 3),
                    "p50_ms": round(float(np.percentile(values, 50)), 3),
                    "p90_ms": round(float(np.percentile(values, 90)), 3),
                    "fps": round(1000.0 / mean, 3) if mean > 0 else None,
                }
        return {
            "frames": self.frames,
            "timed_frames": timed,
            "first_frame_ms": round(self.first_frame_ms, 3) if self.first_frame_ms is not None else None,
            "first_frame_stage_ms": {stage: round(ms, 3) for stage, ms in self.first_frame_stage_ms.items()},
            "wall_s": round(wall, 4),
            "end_to_end_fps": round(timed / wall, 3) if wall > 0 else None,
            "live": self.live,
            "inference_fps": stages.get("inference", {}).get("fps"),
            "latency_ms": latency_stats(self.latency_ms),
            "stages": stages,
        }


def latency_stats(latency_ms: list[float]) -> dict[str, float] | None:
    """mean, p50 and p90 of the capture-to-output latencies (ms), or None without any."""
    if not latency_ms:
        return None
    return {
        "mean": round(float(np.mean(latency_ms)), 3),
        "p50": round(float(np.percentile(latency_ms, 50)), 3),
        "p90": round(float(np.percentile(latency_ms, 90)), 3),
    }


def overlay_text(fps: float, latency_ms: list[float], dropped: int | None, stage_ms: dict[str, float]) -> str:
    """The window overlay's lines, from plain numbers (so any front end can draw the same):

    14.2 FPS end-to-end
    latency p50 96 ms  p90 118 ms
    dropped 37 (latest frame kept)
    stage FPS: prepr 410  infer 15  postp 380  write 900
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
    return "\n".join(lines)


def latency_line(summary: dict) -> str | None:
    """The summary's latency line: p50/p90 (and mean), named capture -> display for live sources."""
    latency = summary.get("latency_ms")
    if not latency:
        return None
    what = "capture -> display" if summary.get("live") else "capture -> output"
    return f"  latency {what} {latency['p50']:.1f} ms p50, {latency['p90']:.1f} ms p90 ({latency['mean']:.1f} ms mean)"


def dropped_line(summary: dict) -> str | None:
    """Frames the latest-frame policy dropped: always said for live sources, else only if any."""
    dropped = summary.get("dropped_frames") or 0
    if not (summary.get("live") or dropped):
        return None
    captured = summary["frames"] + dropped
    return f"  {dropped} of {captured} captured frame(s) dropped by the latest-frame policy (newest frame kept)"


def format_summary(summary: dict) -> str:
    """Human-readable summary printed at the end of a run."""
    lines = [f"{summary['frames']} frame(s)"]
    if summary["first_frame_ms"] is not None:
        lines[0] += f"; first frame {summary['first_frame_ms']:.1f} ms (warm-up, not in the statistics)"
    if summary["timed_frames"] > 0:
        for stage, stats in summary["stages"].items():
            lines.append(
                f"  {stage:<12} {stats['mean_ms']:9.2f} ms mean  {stats['p50_ms']:9.2f} ms p50  "
                f"{stats['p90_ms']:9.2f} ms p90"
            )
        lines.append(
            f"  inference-only FPS {summary['inference_fps']:.2f}, end-to-end FPS {summary['end_to_end_fps']:.2f}"
        )
        lines += [line for line in (latency_line(summary), dropped_line(summary)) if line]
    else:
        lines.append("  (one frame only: run more frames for FPS statistics)")
    return "\n".join(lines)
