"""End-to-end FPS of dav2-run's threaded pipeline on a real video (`dav2-bench --pipeline VIDEO`).

Why: a backend's standalone FPS (one forward on a ready tensor) is not what a user gets. Read,
preprocessing, postprocessing and writing run beside inference and, on a small CPU, compete
with it for the same cores; the gap between the two numbers is the host's cost. So each case
also runs the video through `dav2.runtime.pipeline.run` exactly as

    dav2-run --model ARTIFACT --source VIDEO --save depth.mp4

would (the same run plan: float32 preprocessing for videos, smoothed colour range, a colour
mp4 written under a temporary name), on the backend that was just timed, in the same child
process. The result records the end-to-end FPS (frames after the warm-up one over their wall
time), the inference FPS inside the pipeline, and the host milliseconds per frame of each
stage: read (decode), preprocess, postprocess, write (colour + encode). The ratio to the
standalone FPS is computed by the runner (`ratio_to_standalone`).
"""

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from dav2.runtime.fps import HOST_STAGES, LatencyStats, RunSummary
from dav2.runtime.pipeline import run
from dav2.runtime.session import RunOptions, plan_run
from dav2.runtime.sources import open_source

OUTPUTS = {  # --pipeline-output: what the write stage does, as dav2-run would be asked
    "video": "colour mp4 (dav2-run --save depth.mp4)",
    "none": "nothing kept (dav2-run without --save: depth computed and timed)",
}
DEFAULT_FRAMES = 300  # enough for a stable rate; the DAVIS clips have 59-70
MAX_FRAMES = 100_000


@dataclass
class PipelineResult:
    """One pipeline pass over a video, as stored in a case's `pipeline` field."""

    video: str
    frames: int  # processed, the warm-up frame included
    timed_frames: int
    end_to_end_fps: float | None
    inference_fps: float | None  # 1000 / mean inference-stage time inside the pipeline
    inference_ms: float | None
    host_ms: dict[str, float]  # mean per frame: read, preprocess, postprocess, write
    host_ms_per_frame: float  # their sum: the work that is not inference
    latency_ms: LatencyStats | None  # capture -> written, mean/p50/p90 (files queue: several inferences)
    preprocessing: str  # float32 or uint8 (an --input uint8 artifact)
    output: str = OUTPUTS["video"]
    ratio_to_standalone: float | None = None  # end_to_end_fps / the case's standalone FPS

    def as_dict(self) -> dict:
        return asdict(self)  # latency_ms becomes {"mean", "p50", "p90"}, as the run's JSON has it


def from_summary(video: str, summary: RunSummary, preprocessing: str, output: str = "video") -> PipelineResult:
    """The benchmark's record of one pipeline run, from the run's summary."""
    host = {stage: summary.stages[stage].mean_ms for stage in HOST_STAGES if stage in summary.stages}
    inference = summary.stages.get("inference")
    return PipelineResult(
        video=video,
        frames=summary.frames,
        timed_frames=summary.timed_frames,
        end_to_end_fps=summary.end_to_end_fps,
        inference_fps=inference.fps if inference is not None else None,
        inference_ms=inference.mean_ms if inference is not None else None,
        host_ms=host,
        host_ms_per_frame=round(sum(host.values()), 3),
        latency_ms=summary.latency_ms,
        preprocessing=preprocessing,
        output=OUTPUTS[output],
    )


def measure_pipeline(
    backend, video: str, max_frames: int | None = DEFAULT_FRAMES, output: str = "video"
) -> PipelineResult:
    """Run `video` through the pipeline on `backend` (left open: the case closes it); `output`
    is a key of OUTPUTS. The mp4 goes to a temporary folder, removed afterwards."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown pipeline output {output!r}")
    with tempfile.TemporaryDirectory(prefix="dav2-bench-pipeline-") as tmp:
        options = RunOptions(save=Path(tmp) / "depth.mp4" if output == "video" else None)
        with open_source(video) as source:
            plan = plan_run(backend, source, options)
            summary = run(source, backend, plan, max_frames=max_frames)
    preprocessing = "uint8" if backend.metadata.takes_uint8 else plan.preprocessing
    return from_summary(video, summary, preprocessing, output)


def ratio_to_standalone(row: dict) -> float | None:
    """Pipeline end-to-end FPS over the case's standalone (batch-1 inference) FPS."""
    measured = row.get("pipeline") or {}
    if not measured.get("end_to_end_fps") or not row.get("fps"):
        return None
    return measured["end_to_end_fps"] / row["fps"]
