"""dav2-bench pick: judging candidates against a budget, installing the winner, the report.

The CLI runs here are real but tiny (56x56, ONNX Runtime and the PyTorch baseline, a fraction
of a second per candidate): the numbers judged are measured, never fixtures.
"""

import json

import pytest
from click.testing import CliRunner

from conftest import IMAGES
from dav2.benchmarks import runner
from dav2.benchmarks.discovery import Case, Machine
from dav2.benchmarks.pick import Budget, Verdict, choose, install, judge, judge_all
from dav2.cli import bench_main
from dav2.metadata import ArtifactMetadata


def row(backend: str, precision: str, median: float, abs_rel: float | None) -> dict:
    accuracy = None if abs_rel is None else {"abs_rel": abs_rel, "delta1": 1.0, "max_abs_diff": 0.0, "images": 2}
    return {
        "backend": backend,
        "precision": precision,
        "size": 518,
        "status": "ok",
        "latency_ms": {"median": median},
        "fps": 1000.0 / median,
        "accuracy": accuracy,
    }


def test_judging_names_what_each_candidate_misses():
    budget = Budget(0.01, max_ms=150.0, min_fps=5.0)
    assert judge(row("openvino", "fp16", 120.0, 0.008), budget).meets
    assert judge(row("openvino", "int8", 100.0, 0.04), budget).why == "AbsRel 0.0400 > 0.01"
    slow = judge(row("onnxruntime", "fp32", 300.0, 0.0), budget)
    assert not slow.meets and "300.0 ms > 150 ms" in slow.why and "3.33 FPS < 5 FPS" in slow.why
    assert judge(row("openvino", "fp32", 90.0, None), budget).why == "no accuracy measured"
    # the budget is inclusive, and a NaN AbsRel never passes
    assert judge(row("openvino", "fp16", 120.0, 0.01), budget).meets
    assert not judge(row("openvino", "fp16", 120.0, float("nan")), budget).meets


def test_the_fastest_artifact_within_the_budget_is_chosen():
    document = {
        "cases": [
            row("torch", "fp32", 600.0, 0.0),
            row("openvino", "int8", 100.0, 0.04),
            row("openvino", "fp16", 170.0, 0.008),
            row("onnxruntime", "fp32", 350.0, 0.0),
            {"backend": "tensorrt", "precision": "fp16", "size": 518, "status": "skipped", "reason": "no GPU"},
        ]
    }
    verdicts = judge_all(document, Budget(0.01))
    assert [v.median_ms for v in verdicts] == [100.0, 170.0, 350.0, 600.0]  # fastest first, skipped left out
    assert choose(verdicts).label == "openvino fp16 518"
    # the PyTorch baseline meets any budget but is a checkpoint, never installed
    only_torch = judge_all({"cases": [row("torch", "fp32", 600.0, 0.0)]}, Budget(0.01))
    assert choose(only_torch) is None


def test_the_pytorch_baseline_runs_whatever_the_precisions():
    """Without it nothing has an accuracy and every candidate would be rejected."""
    machine = Machine({"torch": "2.13.0", "onnxruntime": "1.32.0"}, [], [])
    cases = runner.with_baseline([Case("onnxruntime", "int8", 56), Case("onnxruntime", "int8", 98)], [56, 98], machine)
    assert cases[:2] == [Case("torch", "fp32", 56), Case("torch", "fp32", 98)] and len(cases) == 4
    assert runner.with_baseline(cases, [56, 98], machine) == cases  # planned once, not twice
    assert runner.with_baseline(cases[2:], [56], Machine({"torch": None}, [], [])) == cases[2:]


@pytest.fixture(scope="module")
def picked(vits_checkpoint, tmp_path_factory):
    """A real pick at 56x56 against the PyTorch baseline: ONNX Runtime FP32 and INT8, OpenVINO
    INT8 plain and with the head left in float, with a budget no INT8 meets (their AbsRel is
    about 0.01 here, FP32's about 1e-7)."""
    folder = tmp_path_factory.mktemp("pick")
    arguments = ["pick", "--checkpoint", str(vits_checkpoint), "--max-abs-rel", "1e-4", "--sizes", "56"]
    arguments += ["--backends", "onnxruntime,openvino", "--precisions", "fp32,int8", "--images", str(IMAGES)]
    arguments += ["--int8-float", "head", "--calib-count", "4"]
    arguments += ["--eval-images", "2", "--seconds", "0.5", "--json"]
    arguments += ["--output", str(folder / "out"), "--cache-dir", str(folder / "cache")]
    result = CliRunner().invoke(bench_main, arguments)
    return result, folder / "out"


def test_pick_installs_the_winner_with_its_sidecar_and_report(picked):
    result, out = picked
    assert result.exit_code == 0, result.output
    choice = json.loads(result.stdout.strip().splitlines()[-1])
    assert choice["precision"] == "fp32" and choice["size"] == 56 and choice["abs_rel"] <= 1e-4
    assert choice["speedup"] == pytest.approx(choice["baseline_ms"] / choice["median_ms"], rel=1e-9)
    assert "dav2's DepthAnythingV2" in choice["baseline"]
    artifact = out / ("depth_anything_v2_vits_56x56" + {"onnxruntime": ".onnx", "openvino": ".xml"}[choice["backend"]])
    assert choice["artifact"] == str(artifact) and artifact.is_file()
    metadata = ArtifactMetadata.read(artifact)
    assert metadata.precision == "fp32" and metadata.input_shape == [1, 3, 56, 56]
    saved = json.loads((out / "pick.json").read_text())
    measured = {(c["backend"], c["precision"], c.get("recipe")) for c in saved["cases"] if c["status"] == "ok"}
    assert measured == {
        ("torch", "fp32", None),
        ("onnxruntime", "fp32", None),
        ("onnxruntime", "int8", None),
        ("openvino", "fp32", None),
        ("openvino", "int8", None),
        ("openvino", "int8", "float: head"),
    }
    assert saved["choice"] == choice
    report = (out / "pick.md").read_text()
    assert f"**Chosen: {choice['backend']} fp32 56**" in report
    assert "on 2 held-out image(s), never calibrated on." in report
    for label in ("onnxruntime int8 56", "openvino int8 56", "openvino int8 56 (float: head)"):
        line = next(line for line in report.splitlines() if line.startswith(f"| {label} |"))
        assert "AbsRel" in line and "> 0.0001" in line  # why it was not taken
    assert "the baseline (a checkpoint, not an artifact)" in report


def test_a_new_choice_replaces_the_earlier_one_in_the_folder(picked, tmp_path):
    """The output folder holds one choice: installing another removes the earlier artifact."""
    import shutil

    _, out = picked
    folder = tmp_path / "picked"
    shutil.copytree(out, folder)
    before = json.loads((folder / "pick.json").read_text())
    other = next(c for c in before["cases"] if c["status"] == "ok" and c["backend"] == "openvino" and c.get("recipe"))
    artifact = install(Verdict(other, True, ""), folder)
    names = sorted(p.name for p in folder.iterdir())
    stem = "depth_anything_v2_vits_56x56_int8"
    assert artifact == folder / f"{stem}.xml"
    assert names == sorted([f"{stem}.xml", f"{stem}.xml.json", f"{stem}.bin", "pick.json", "pick.md", "pick.png"])


def test_ctrl_c_installs_nothing_and_exits_130(vits_checkpoint, tmp_path, monkeypatch):
    def interrupted(spec, work):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_child", interrupted)
    arguments = ["pick", "--checkpoint", str(vits_checkpoint), "--max-abs-rel", "0.05", "--sizes", "56"]
    arguments += ["--backends", "onnxruntime", "--precisions", "fp32", "--output", str(tmp_path / "out")]
    result = CliRunner().invoke(bench_main, [*arguments, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 130 and "nothing installed" in result.output
    assert not (tmp_path / "out").exists()


def test_pick_draws_the_front_with_the_budget(picked):
    pytest.importorskip("matplotlib", reason="pick.png needs dav2[plot]")
    _, out = picked
    assert (out / "pick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_candidate_within_the_budget_is_an_error_and_installs_nothing(vits_checkpoint, tmp_path):
    arguments = ["pick", "--checkpoint", str(vits_checkpoint), "--max-abs-rel", "0.05", "--max-ms", "0.001"]
    arguments += ["--sizes", "56", "--backends", "onnxruntime", "--precisions", "fp32", "--seconds", "0.5"]
    arguments += ["--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(bench_main, arguments)
    assert result.exit_code == 1
    assert "error: no candidate meets AbsRel ≤ 0.05, median ≤ 0.001 ms" in result.output
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert written <= {"pick.json", "pick.md", "pick.png"} and "pick.md" in written  # the report, no artifact


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-abs-rel", "0", "--max-abs-rel must be"),
        ("--max-abs-rel", "nan", "--max-abs-rel must be"),
        ("--max-ms", "-5", "--max-ms must be"),
        ("--seconds", "1e9", "--seconds must be"),
        ("--eval-images", "0", "--eval-images must be"),
        ("--int8-float", "block30", "unknown --int8-float group(s) block30; choose from head"),
    ],
)
def test_bad_numbers_are_one_error_line(option, value, message, tmp_path):
    arguments = ["pick", "--max-abs-rel", "0.01", option, value, "--output", str(tmp_path)]
    result = CliRunner().invoke(bench_main, arguments)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
