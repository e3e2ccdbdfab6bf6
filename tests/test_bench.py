"""dav2-bench: statistics, discovery and skipping, the artifact cache, the schema, compare.

The runs here are real but tiny (56x56 inputs, a fraction of a second per case): numbers come
from actually timing ONNX Runtime and PyTorch, never from fixtures.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from dav2.benchmarks import report, runner
from dav2.benchmarks.artifacts import cache_key
from dav2.benchmarks.discovery import Case, Machine, plan, skip_reason
from dav2.benchmarks.spec import CaseSpec, PipelineRequest
from dav2.benchmarks.stats import fps, latency_stats, runs_for
from dav2.cli import bench_main
from dav2.errors import Dav2Error

# -- statistics ------------------------------------------------------------------------------


def test_latency_statistics():
    stats = latency_stats([10.0, 12.0, 11.0, 13.0, 30.0])
    assert stats["median"] == 12.0
    assert stats["mean"] == pytest.approx(15.2)
    assert stats["stdev"] == pytest.approx(float(np.std([10, 12, 11, 13, 30], ddof=1)))
    assert stats["p10"] == pytest.approx(10.4)  # linear interpolation between 10 and 11
    assert stats["p90"] == pytest.approx(23.2)  # linear interpolation between 13 and 30
    assert stats["p99"] == pytest.approx(29.32)
    assert stats["min"] == 10.0 and stats["runs"] == 5
    assert latency_stats([5.0])["stdev"] == 0.0
    with pytest.raises(ValueError):
        latency_stats([])


def test_fps_and_run_counts():
    assert fps(20.0) == 50.0 and fps(20.0, batch=4) == 200.0
    assert runs_for(100.0, seconds=5, min_runs=5, max_runs=200) == 50
    assert runs_for(2000.0, seconds=5, min_runs=5, max_runs=200) == 5
    assert runs_for(0.5, seconds=5, min_runs=5, max_runs=200) == 200


# -- discovery and skipping -----------------------------------------------------------------

CPU_BOX = Machine({"torch": "2.13.0", "onnxruntime": "1.32.0", "openvino": None, "tensorrt": None}, [], [])
GPU_BOX = Machine(
    {"torch": "2.5.0", "onnxruntime": "1.20.0", "openvino": "2025.0", "tensorrt": "10.3.0", "cuda-bindings": "12.9.0"},
    ["NVIDIA H100"],
    ["CPU"],
)


def test_skips_say_why():
    assert "openvino is not installed" in skip_reason(CPU_BOX, "openvino", "fp32", True)
    assert "dav2[trt-cu1" in skip_reason(CPU_BOX, "tensorrt", "fp16", True)
    no_binding = Machine({**GPU_BOX.libraries, "cuda-bindings": None}, GPU_BOX.gpus, GPU_BOX.openvino_devices)
    assert "no CUDA binding" in skip_reason(no_binding, "tensorrt", "fp16", True)
    with_pycuda = Machine({**no_binding.libraries, "pycuda": "2024.1"}, GPU_BOX.gpus, GPU_BOX.openvino_devices)
    assert skip_reason(with_pycuda, "tensorrt", "fp16", True) is None
    assert "CUDA only" in skip_reason(CPU_BOX, "torch", "fp16", True)
    assert skip_reason(GPU_BOX, "torch", "fp16", True) is None
    assert skip_reason(GPU_BOX, "tensorrt", "fp16", False) is None
    assert "--images" in skip_reason(GPU_BOX, "openvino", "int8", False)
    assert skip_reason(CPU_BOX, "onnxruntime", "int8", False) is None  # dynamic INT8 needs no images


def test_plan_orders_cases_and_lists_skips():
    cases, skipped = plan(CPU_BOX, ["onnxruntime", "torch", "openvino"], ["fp32", "int8"], [308, 518], False)
    assert cases[0] == Case("torch", "fp32", 308)
    assert [c.label for c in cases] == [
        "torch fp32 308", "onnxruntime fp32 308", "onnxruntime int8 308",
        "torch fp32 518", "onnxruntime fp32 518", "onnxruntime int8 518",
    ]  # fmt: skip
    assert {c.label for c, _ in skipped} == {
        "openvino fp32 308",
        "openvino int8 308",
        "openvino fp32 518",
        "openvino int8 518",
    }


def test_machine_here_finds_this_machines_libraries():
    machine = Machine.here()
    assert machine.has("onnxruntime")
    assert machine.libraries["numpy"] == np.__version__


def test_the_case_spec_goes_to_the_child_and_back_unchanged(tmp_path):
    """The parent writes the typed Case and how to measure it; the child reads the same record."""
    settings = runner.BenchSettings(threads=2, pipeline="clip.mp4", backends=["openvino"], details=False)
    case = Case("openvino", "int8", 308, ("patch_embed", "head"), 0.02)
    spec = runner.case_spec(case, settings, tmp_path / "m.xml", "cpu", "sample", tmp_path, False)
    read = CaseSpec.read(spec.write(tmp_path))
    assert read == spec and read.case == case and read.pipeline == PipelineRequest("clip.mp4", 300, "video")
    assert read.case.recipe == "float: patch_embed+head, accuracy control ≤ 0.02"
    assert (
        runner.case_spec(Case("torch", "fp32", 308), settings, tmp_path, "cpu", "sample", tmp_path, True).pipeline
        is None
    )
    broken = json.loads(spec.to_json()) | {"seconds": "five"}
    with pytest.raises(TypeError, match="seconds"):
        CaseSpec.from_json(json.dumps(broken))


def test_cache_key_follows_what_changes_the_artifact():
    base = cache_key(Case("openvino", "int8", 518), "a" * 64, "vits", CPU_BOX, "c1")
    assert base == cache_key(Case("openvino", "int8", 518), "a" * 64, "vits", CPU_BOX, "c1")
    assert base != cache_key(Case("openvino", "int8", 364), "a" * 64, "vits", CPU_BOX, "c1")
    assert base != cache_key(Case("openvino", "fp16", 518), "a" * 64, "vits", CPU_BOX, "c1")
    assert base != cache_key(Case("openvino", "int8", 518), "b" * 64, "vits", CPU_BOX, "c1")
    assert base != cache_key(Case("openvino", "int8", 518), "a" * 64, "vits", CPU_BOX, "c2")
    assert base != cache_key(Case("openvino", "int8", 518), "a" * 64, "vits", GPU_BOX, "c1")


# -- real tiny runs --------------------------------------------------------------------------


def tiny_settings(checkpoint, cache_dir, **changes):
    settings = runner.BenchSettings(
        checkpoint=str(checkpoint),
        sizes=[56],
        backends=["onnxruntime"],
        precisions=["fp32", "int8"],
        seconds=0.2,
        min_runs=3,
        max_runs=6,
        warmup=1,
        cache_dir=cache_dir,
    )
    for key, value in changes.items():
        setattr(settings, key, value)
    return settings


@pytest.fixture(scope="session")
def tiny_runs(vits_checkpoint, tmp_path_factory):
    cache = tmp_path_factory.mktemp("bench-cache")
    first = runner.run_bench(tiny_settings(vits_checkpoint, cache))
    second = runner.run_bench(tiny_settings(vits_checkpoint, cache, label="second run"))
    return first, second


def measured(document, backend, precision):
    (row,) = [c for c in document["cases"] if c["backend"] == backend and c["precision"] == precision]
    return row


@pytest.mark.slow  # real benchmark runs, a child process per case
def test_tiny_run_measures_and_compares_with_torch(tiny_runs):
    first, _ = tiny_runs
    report.validate(first)
    assert first["complete"]
    rows = [
        measured(first, "torch", "fp32"),
        measured(first, "onnxruntime", "fp32"),
        measured(first, "onnxruntime", "int8"),
    ]
    torch_row, onnx_row, int8_row = rows
    baseline = torch_row["latency_ms"]["median"]
    for row in rows:
        assert row["status"] == "ok" and row["size"] == 56
        latency = row["latency_ms"]
        assert 3 <= latency["runs"] <= 6
        assert 0 < latency["min"] <= latency["p10"] <= latency["median"] <= latency["p90"] <= latency["p99"] < 10_000
        assert latency["mean"] > 0 and latency["stdev"] >= 0
        assert row["fps"] == pytest.approx(1000.0 / latency["median"], rel=1e-9)
        assert row["speedup"] == pytest.approx(baseline / latency["median"], rel=1e-9)
        assert set(row["split_ms"]) >= {"preprocess", "infer", "postprocess"}
        assert all(ms > 0 for ms in row["split_ms"].values())
        assert row["peak_host_mb"] > 50
        accuracy = row["accuracy"]
        assert accuracy["images"] >= 1 and 0 <= accuracy["abs_rel"] and 0 <= accuracy["delta1"] <= 1
    # PyTorch FP32 is the reference itself (AbsRel only rounds in the scale-and-shift fit);
    # ONNX Runtime FP32 reproduces it to float rounding
    assert (
        torch_row["accuracy"]["abs_rel"] < 1e-9 and torch_row["accuracy"]["max_abs_diff"] == 0.0
    )  # alignment rounding
    assert onnx_row["accuracy"]["abs_rel"] < 1e-4 and onnx_row["accuracy"]["delta1"] == 1.0
    assert onnx_row["accuracy"]["max_abs_diff"] < 1e-3
    # INT8 costs measurable accuracy and shrinks the weights (about 4x for the MatMuls)
    assert 1e-4 < int8_row["accuracy"]["abs_rel"] < 0.05 and int8_row["accuracy"]["delta1"] >= 0.9
    assert 0 < int8_row["artifact_mb"] < 0.5 * onnx_row["artifact_mb"]
    assert 80 < onnx_row["artifact_mb"] < 120  # 24.8M float32 parameters
    assert first["machine"]["libraries"]["onnxruntime"] and first["machine"]["cores"] >= 1


@pytest.mark.slow  # the same two real benchmark runs (tiny_runs)
def test_second_run_reuses_the_artifacts(tiny_runs):
    first, second = tiny_runs
    for precision in ("fp32", "int8"):
        assert measured(first, "onnxruntime", precision)["artifact_reused"] is False
        reused = measured(second, "onnxruntime", precision)
        assert reused["artifact_reused"] is True
        assert reused["build_s"] == measured(first, "onnxruntime", precision)["build_s"]


@pytest.mark.slow  # the same two real benchmark runs (tiny_runs)
def test_saved_results_and_compare(tiny_runs, tmp_path):
    first, second = tiny_runs
    written = report.save(first, tmp_path / "a") + report.save(second, tmp_path / "b")
    json_files = [p for p in written if p.suffix == ".json"]
    assert report.load(json_files[0])["cases"] == json.loads(json.dumps(first["cases"]))
    markdown = next(p for p in written if p.suffix == ".md").read_text()
    assert "| onnxruntime | int8 | 56 |" in markdown and "Command: `" in markdown
    result = CliRunner().invoke(bench_main, ["compare", *map(str, json_files)])
    assert result.exit_code == 0, result.output
    assert "second run" in result.stdout and first["machine"]["label"] in result.stdout
    assert result.stdout.count("| vits | onnxruntime | int8 | 56 |") == 2


@pytest.mark.slow  # real benchmark runs, a child process per case
def test_ctrl_c_keeps_the_cases_already_measured(vits_checkpoint, tmp_path, monkeypatch):
    real_child = runner.run_child
    calls = []

    def interrupted_after_one(spec, work):
        calls.append(spec.case.backend)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_child(spec, work)

    monkeypatch.setattr(runner, "run_child", interrupted_after_one)
    document = runner.run_bench(tiny_settings(vits_checkpoint, tmp_path, precisions=["fp32"]))
    assert document["complete"] is False
    ok = [c for c in document["cases"] if c["status"] == "ok"]
    assert [(c["backend"], c["precision"]) for c in ok] == [("torch", "fp32")]
    assert "Interrupted" in report.to_markdown(document)


def test_bad_result_files_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": 1, "machine": {}, "settings": {}, "cases": [{"backend": "torch"}]}))
    with pytest.raises(Dav2Error, match="lacks"):
        report.load(bad)
    result = CliRunner().invoke(bench_main, ["compare", str(bad)])
    assert result.exit_code == 1 and "error:" in result.output
    (tmp_path / "x.json").write_text("not json")
    with pytest.raises(Dav2Error, match="not valid JSON"):
        report.load(tmp_path / "x.json")
