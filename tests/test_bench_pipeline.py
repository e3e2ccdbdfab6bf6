"""dav2-bench --pipeline VIDEO, GPU discovery without torch, and no Unix-only imports.

The pipeline run here is real and small: a static 56x56 ONNX artifact, 12 frames of the test
video through dav2-run's threaded pipeline, an mp4 written and removed.
"""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import VIDEO
from dav2.benchmarks import report, runner
from dav2.benchmarks.pipeline import HOST_STAGES, OUTPUTS, from_summary, ratio_to_standalone
from dav2.cli import bench_main
from dav2.runtime.fps import LatencyStats, RunSummary, StageStats


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-cache")


@pytest.fixture(scope="module")
def pipeline_run(vits_checkpoint, cache_dir):
    settings = runner.BenchSettings(
        checkpoint=str(vits_checkpoint),
        sizes=[56],
        backends=["onnxruntime"],
        precisions=["fp32"],
        seconds=0.2,
        min_runs=3,
        max_runs=6,
        warmup=1,
        cache_dir=cache_dir,
        pipeline=str(VIDEO),
        pipeline_frames=12,
    )
    return runner.run_bench(settings)


def case(document, backend):
    (row,) = [c for c in document["cases"] if c["backend"] == backend]
    return row


@pytest.mark.slow  # a real bench run beside a pipeline run
def test_pipeline_stands_next_to_the_standalone_fps(pipeline_run):
    report.validate(pipeline_run)
    row = case(pipeline_run, "onnxruntime")
    measured = row["pipeline"]
    assert measured["video"] == str(VIDEO) and measured["frames"] == 12 and measured["timed_frames"] == 11
    assert set(measured["host_ms"]) == set(HOST_STAGES) and all(ms >= 0 for ms in measured["host_ms"].values())
    assert measured["host_ms"]["write"] > 0 and measured["output"] == OUTPUTS["video"]
    assert measured["host_ms_per_frame"] == pytest.approx(sum(measured["host_ms"].values()), abs=1e-2)
    assert 0 < measured["end_to_end_fps"] < 10_000 and 0 < measured["inference_fps"] < 10_000
    assert measured["ratio_to_standalone"] == pytest.approx(measured["end_to_end_fps"] / row["fps"])
    assert ratio_to_standalone(row) == pytest.approx(measured["ratio_to_standalone"])
    assert measured["preprocessing"] == "float32"  # what dav2-run uses for videos
    assert "pipeline" not in case(pipeline_run, "torch")  # the implicit baseline was not asked for


def test_pipeline_table_in_markdown_and_json(pipeline_run, tmp_path):
    markdown = report.to_markdown(pipeline_run)
    assert f"## Pipeline on `{VIDEO}`" in markdown
    (line,) = [x for x in markdown.splitlines() if x.startswith("| onnxruntime | fp32 | 56 |") and "%" in x]
    assert f"{100 * case(pipeline_run, 'onnxruntime')['pipeline']['ratio_to_standalone']:.1f}%" in line
    saved = [p for p in report.save(pipeline_run, tmp_path) if p.suffix == ".json"][0]
    assert report.load(saved)["cases"] == json.loads(json.dumps(pipeline_run["cases"]))
    assert "pipeline" in runner.summary_line(case(pipeline_run, "onnxruntime"))


def test_an_existing_artifact_as_it_is(pipeline_run, cache_dir, tmp_path):
    """--model: the artifact built above, measured on its own input, no baseline, no accuracy."""
    (artifact,) = cache_dir.glob("*/*.onnx")
    args = ["--model", str(artifact), "--pipeline", str(VIDEO), "--pipeline-frames", "6", "--pipeline-output", "none"]
    args += ["--seconds", "0.2", "--min-runs", "3", "--max-runs", "4", "--warmup", "1", "--save", str(tmp_path)]
    result = CliRunner().invoke(bench_main, args)
    assert result.exit_code == 0, result.output
    document = report.load(next(tmp_path.glob("*.json")))
    (row,) = document["cases"]
    assert (row["backend"], row["precision"], row["size"], row["status"]) == ("onnxruntime", "fp32", 56, "ok")
    assert row["accuracy"] is None and row["artifact"] == artifact.name and "speedup" not in row
    assert row["pipeline"]["frames"] == 6 and row["pipeline"]["output"] == OUTPUTS["none"]
    assert row["pipeline"]["host_ms"]["write"] < 1.0  # nothing written
    assert "## Pipeline on" in result.output
    missing = tmp_path / "no-sidecar.onnx"
    missing.write_bytes(artifact.read_bytes())
    result = CliRunner().invoke(bench_main, ["--model", str(missing)])
    assert result.exit_code == 1 and "has no dav2 sidecar" in result.output


def test_summary_to_record_arithmetic():
    stage_ms = {"read": 1.0, "preprocess": 2.0, "inference": 90.0, "postprocess": 3.0, "write": 4.0}
    summary = RunSummary(
        frames=5,
        timed_frames=4,
        first_frame_ms=400.0,
        first_frame_stage_ms={},
        first_frame_stage_cpu_ms={},
        wall_s=0.4,
        end_to_end_fps=10.0,
        live=False,
        latency_ms=LatencyStats(mean=150.0, p50=140.0, p90=190.0),
        stages={stage: StageStats(ms, ms, ms, 1000 / ms) for stage, ms in stage_ms.items()},
    )
    record = from_summary("clip.mp4", summary, "uint8", "none")
    assert record.host_ms_per_frame == 10.0 and record.inference_ms == 90.0 and record.output == OUTPUTS["none"]
    assert record.as_dict()["latency_ms"] == {"mean": 150.0, "p50": 140.0, "p90": 190.0}  # the JSON keeps its keys
    assert ratio_to_standalone({"fps": 12.5, "pipeline": record.as_dict()}) == pytest.approx(0.8)
    assert ratio_to_standalone({"fps": 12.5}) is None


def test_pipeline_options_are_checked_before_any_work(tmp_path):
    image = tmp_path / "photo.png"
    image.write_bytes(b"not read")
    for args, message in (
        (["--pipeline", str(image)], "needs a video file"),
        (["--pipeline", str(VIDEO), "--pipeline-frames", "0"], "--pipeline-frames must be from 1"),
        (["--pipeline", str(VIDEO), "--pipeline-output", "gif"], "Invalid value"),
    ):
        result = CliRunner().invoke(bench_main, args)
        assert result.exit_code != 0 and message in result.output, result.output


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_gpu_discovery_without_a_cuda_binding_never_imports_torch():
    """cuda_gpus() asks the CUDA driver first; with no binding (cuda-bindings, pycuda) and torch
    blocked it answers [] and leaves torch unimported (a TensorRT box without torch must not need it)."""
    out = run_python(
        "import sys\n"
        "for name in ('pycuda', 'cuda', 'torch'):\n"
        "    sys.modules[name] = None\n"
        "from dav2.benchmarks.discovery import cuda_gpus, driver_gpus\n"
        "assert driver_gpus() is None\n"
        "print(cuda_gpus())\n"
        "assert sys.modules['torch'] is None and not [m for m in sys.modules if m.startswith('torch.')]\n"
    )
    assert out == "[]"


def test_case_module_does_not_need_the_unix_resource_module():
    """Windows has no `resource`: the case module imports it only for its fallback."""
    out = run_python(
        "import sys\nsys.modules['resource'] = None\nfrom dav2.benchmarks import case\nprint(case.peak_host_mb() > 0)\n"
    )
    assert out == "True"
