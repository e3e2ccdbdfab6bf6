"""dav2-run says true things: --max-frames counts processed (written) frames, latency is for
live sources only, a run that wrote nothing does not say "saved to", and every host stage's
CPU time stands beside its wall time (issue 19, part 7)."""

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import IMAGES, VIDEO
from dav2.cli import run_main
from dav2.runtime.fps import HOST_STAGES, FpsMeter, format_summary, overlay_text
from dav2.runtime.pipeline import run
from dav2.runtime.session import RunPlan
from dav2.runtime.sinks import MemorySink
from dav2.runtime.sources import CaptureSource

SYNTHETIC = "synthetic:30:64x48"  # a small live camera: host work far below a frame period


# dav2-run --json's record, as scripts read it (RunSummary.as_dict and RunReport.as_dict)
RUN_JSON_KEYS = [
    "frames", "timed_frames", "first_frame_ms", "first_frame_stage_ms", "first_frame_stage_cpu_ms", "wall_s",
    "end_to_end_fps", "live", "inference_fps", "latency_ms", "stages", "dropped_frames",
    "model", "backend", "source", "input_size",
]  # fmt: skip
LIVE_JSON_KEYS = [
    "frames", "end_to_end_fps", "latency_ms", "latency_p50_ms", "latency_p90_ms",
    "stage_ms", "stage_fps", "stage_cpu_ms", "dropped_frames",
]  # fmt: skip


def dav2_run(*args):
    return CliRunner().invoke(run_main, [str(a) for a in args])


def last_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_max_frames_on_a_live_source_counts_written_frames(dynamic_onnx, tmp_path):
    out = tmp_path / "live"
    result = dav2_run(
        "--model", dynamic_onnx, "--source", SYNTHETIC, "--input-size", 56,
        "--max-frames", 6, "--save", out, "--format", "npy", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = last_json(result)
    assert summary["frames"] == 6 and summary["live"] is True
    assert list(summary) == RUN_JSON_KEYS  # the typed RunSummary writes the keys scripts read, in order
    assert set(summary["stages"]["preprocess"]) == {"mean_ms", "p50_ms", "p90_ms", "fps", "cpu_mean_ms", "cpu_p50_ms"}
    assert set(summary["stages"]["inference"]) == {"mean_ms", "p50_ms", "p90_ms", "fps"}
    assert set(summary["latency_ms"]) == {"mean", "p50", "p90"}
    written = sorted(out.glob("*.npy"))
    assert len(written) == 6 and all(np.load(path).shape == (48, 64) for path in written)
    assert "6 frame(s)" in result.stderr and f"saved to {out}" in result.stderr
    assert "latency capture -> display" in result.stderr  # a live source states its latency


def test_max_frames_on_a_live_source_into_a_video(dynamic_onnx, tmp_path):
    out = tmp_path / "live.mp4"
    result = dav2_run(
        "--model", dynamic_onnx, "--source", SYNTHETIC, "--input-size", 56, "--max-frames", 3, "--save", out
    )
    assert result.exit_code == 0, result.output
    video = cv2.VideoCapture(str(out))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    video.release()


def test_a_folder_run_prints_no_latency(dynamic_onnx, tmp_path):
    result = dav2_run(
        "--model", dynamic_onnx, "--source", IMAGES, "--input-size", 56, "--max-frames", 3,
        "--save", tmp_path / "out", "--format", "npy", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "latency" not in result.stderr and "capture ->" not in result.stderr
    summary = last_json(result)
    assert summary["frames"] == 3 and summary["live"] is False and summary["latency_ms"] is None
    assert len(list((tmp_path / "out").glob("*.npy"))) == 3


def test_a_run_that_processed_nothing_saves_nothing_and_says_so(dynamic_onnx, tmp_path):
    photos = tmp_path / "wide"
    photos.mkdir()
    cv2.imwrite(str(photos / "w.png"), np.zeros((100, 1000, 3), np.uint8))  # 160 tokens at 56: skipped
    out = tmp_path / "out"
    result = dav2_run("--model", dynamic_onnx, "--source", photos, "--input-size", 56, "--max-tokens", 20,
                      "--save", out)  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert not [line for line in result.stderr.splitlines() if line.startswith("saved to")]
    assert result.stderr.strip().splitlines()[-1] == f"error: nothing saved to {out}: no frame was processed"
    assert not out.exists()


def test_help_lists_every_source_kind():
    text = " ".join(CliRunner().invoke(run_main, ["--help"]).output.split())
    for kind in ("cam:0", "rtsp://", "gst:PIPELINE", "synthetic:FPS[:WxH]", "'sample'"):
        assert kind in text


def test_summary_has_each_host_stages_cpu_time(dynamic_onnx):
    from dav2.runtime.backends import open_backend

    with open_backend(dynamic_onnx) as backend:
        source = CaptureSource(str(VIDEO), "video", VIDEO.name)
        summary = run(source, backend, RunPlan.for_sinks(backend, [MemorySink()], input_size=56), max_frames=4)
    assert summary.frames == 4
    stages = summary.stages
    for stage in HOST_STAGES:
        cpu, wall = stages[stage].cpu_mean_ms, stages[stage].mean_ms
        assert isinstance(cpu, float) and isinstance(stages[stage].cpu_p50_ms, float)
        # the thread's CPU time within a stage never exceeds the stage's wall time (rounding aside)
        assert 0.0 <= cpu <= wall + 0.002
    assert not stages["inference"].has_cpu  # a backend computes in its own threads
    assert "cpu_mean_ms" not in summary.as_dict()["stages"]["inference"]  # nor a key in the JSON
    assert set(summary.first_frame_stage_cpu_ms) == set(HOST_STAGES)
    text = format_summary(summary)
    assert text.count("ms cpu") == len(HOST_STAGES) + 1  # one per host stage, and the note


def test_meter_keeps_cpu_times_beside_wall_times():
    meter = FpsMeter(live=True)
    meter.start()
    meter.add({"preprocess": 50.0, "inference": 90.0}, latency_ms=100.0, cpu_ms={"preprocess": 40.0})
    for wall, cpu in ((10.0, 2.0), (20.0, 4.0), (30.0, 6.0)):
        meter.add({"preprocess": wall, "inference": 80.0}, latency_ms=90.0, cpu_ms={"preprocess": cpu})
    summary = meter.summary()
    assert summary.first_frame_stage_cpu_ms == {"preprocess": 40.0}
    assert summary.stages["preprocess"].mean_ms == pytest.approx(20.0)
    assert summary.stages["preprocess"].cpu_mean_ms == pytest.approx(4.0)
    assert summary.stages["preprocess"].cpu_p50_ms == pytest.approx(4.0)
    assert not summary.stages["inference"].has_cpu
    assert meter.snapshot().stage_cpu_ms == {"preprocess": pytest.approx(4.0)}
    assert list(meter.snapshot().as_dict()) == LIVE_JSON_KEYS  # the once-a-second --json line's keys
    assert meter.live_text(dropped=0).splitlines()[-1] == "host ms wall/cpu: prepr 20.0/4.0"
    assert overlay_text(10.0, [], None, {"inference": 80.0}).splitlines() == [
        "10.0 FPS end-to-end",
        "stage FPS: infer 12",
    ]


def test_a_summary_of_no_frames():
    meter = FpsMeter()
    meter.start()
    summary = meter.summary()
    assert summary.frames == 0 and summary.timed_frames == 0 and summary.end_to_end_fps is None
    assert format_summary(summary) == "0 frame(s)"
