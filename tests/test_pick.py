"""dav2-bench pick: judging candidates against a budget, installing the winner, the report.

The CLI runs here are real but tiny (56x56, ONNX Runtime and the PyTorch baseline, a fraction
of a second per candidate): the numbers judged are measured, never fixtures.
"""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import IMAGES
from dav2.benchmarks import runner
from dav2.benchmarks.discovery import Case, Machine
from dav2.benchmarks.pick import (
    QUICK_ORT_FP16,
    Budget,
    Verdict,
    apply_quick,
    choose,
    decide,
    default_budget,
    install,
    judge,
    judge_all,
    report,
)
from dav2.cli import bench_main
from dav2.cli.common import Terminated
from dav2.export.gate import DEFAULT_MAX_ABS_REL
from dav2.metadata import ArtifactMetadata
from dav2.vocabulary import Precision


def row(backend: str, precision: str, median: float, abs_rel: float | None, spread: float = 0.0) -> dict:
    """A measured case; `spread`: p10 and p90 this far below and above the median."""
    accuracy = None if abs_rel is None else {"abs_rel": abs_rel, "delta1": 1.0, "max_abs_diff": 0.0, "images": 2}
    return {
        "backend": backend,
        "precision": precision,
        "size": 518,
        "status": "ok",
        "latency_ms": {"median": median, "p10": median - spread, "p90": median + spread},
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


def test_candidates_within_the_noise_of_the_fastest_are_a_tie_broken_by_accuracy():
    document = {
        "machine": {"command": "dav2-bench pick", "label": "here"},
        "cases": [
            row("openvino", "int8", 116.5, 0.0417, spread=4.0),  # misses the budget: never in the tie
            row("openvino", "int8", 115.9, 0.0090, spread=3.0),
            row("openvino", "fp16", 118.0, 0.0030, spread=2.5),  # p10 115.5 <= the fastest's p90 118.9
            row("onnxruntime", "fp32", 140.0, 0.0, spread=5.0),  # p10 135 > 118.9: slower, not a tie
        ],
    }
    verdicts = judge_all(document, Budget(0.01))
    decision = decide(verdicts)
    assert decision.fastest.label == "openvino int8 518" and decision.fastest.abs_rel == 0.0090
    assert [v.label for v in decision.tied] == ["openvino int8 518", "openvino fp16 518"]
    assert decision.chosen.label == "openvino fp16 518" and decision.is_tie
    text = report(document, verdicts, decision, Budget(0.01), Path("out"))
    assert "**Chosen: openvino fp16 518**, 118.0 ms (p10-p90 115.5-120.5" in text
    assert "Tie within noise: openvino int8 518 has the fastest median, but the p10-p90 latency range " \
           "of openvino fp16 518 overlaps its own (each within the budget)" in text  # fmt: skip
    assert "| openvino int8 518 | 115.9 | 112.9-118.9 |" in text
    assert "a tie within noise; less accurate (AbsRel 0.0090)" in text
    assert "within the noise of the fastest, the most accurate" in text
    # without spread the fastest median wins, as before
    no_spread = [row("openvino", "int8", 115.9, 0.009), row("openvino", "fp16", 118.0, 0.003)]
    assert choose(judge_all({"cases": no_spread}, Budget(0.01))).label == "openvino int8 518"


def test_without_max_abs_rel_each_precision_has_export_s_default_budget():
    budget = Budget()
    fp16, int8 = DEFAULT_MAX_ABS_REL[Precision.FP16], DEFAULT_MAX_ABS_REL[Precision.INT8]
    assert default_budget("fp16") == fp16 and default_budget("int8") == int8 and default_budget("fp32") is None
    assert judge(row("openvino", "int8", 100.0, int8 * 0.9), budget).meets
    assert judge(row("openvino", "int8", 100.0, int8 * 1.2), budget).why == f"AbsRel {int8 * 1.2:.4f} > {int8:g}"
    assert judge(row("openvino", "fp16", 100.0, fp16 * 1.5), budget).why == f"AbsRel {fp16 * 1.5:.4f} > {fp16:g}"
    assert judge(row("onnxruntime", "fp32", 100.0, 1e-7), budget).meets
    assert not judge(row("onnxruntime", "fp32", 100.0, float("nan")), budget).meets
    assert f"fp16 ≤ {fp16:g}, int8 ≤ {int8:g}" in budget.describe()
    # an explicit budget replaces the defaults, for every precision
    assert judge(row("openvino", "int8", 100.0, int8 * 1.2), Budget(int8 * 1.5)).meets
    assert Budget().record()["abs_rel"] == {"fp32": None, "fp16": fp16, "int8": int8}


def test_quick_mode_cuts_the_settings_and_says_what_it_left_out():
    settings = runner.BenchSettings(sizes=[308, 518], seconds=3.0, holdout=4, calib_count=16)
    settings.int8_recipes, settings.controlled_int8 = (("head",), ("patch_embed", "head")), 0.01
    left_out = apply_quick(settings, has_gpu=False)
    assert settings.sizes == [308] and settings.int8_recipes == () and settings.controlled_int8 is None
    assert (settings.seconds, settings.warmup, settings.holdout, settings.calib_count) == (1.0, 1, 2, 8)
    assert settings.details is False
    assert settings.left_out == (("onnxruntime", "fp16", QUICK_ORT_FP16),)
    assert left_out == [
        "ONNX Runtime FP16 without a GPU (on the CPU it runs no faster than FP32)",
        "sizes 518 (only the first of --sizes is tried)",
        "the OpenVINO INT8 mixed-precision candidates (float: head; patch_embed+head)",
        "OpenVINO INT8 with accuracy control",
        "timed seconds per candidate 3 cut to 1",
        "warm-up runs 3 cut to 1",
        "held-out images 4 cut to 2",
        "calibration images 16 cut to 8",
        "the split and throughput columns",
    ]
    small = runner.BenchSettings(sizes=[56], seconds=0.5, holdout=1, calib_count=4, warmup=1)
    assert apply_quick(small, has_gpu=True) == ["the split and throughput columns"]  # nothing raised to quick's
    assert small.left_out == ()
    # left-out cases are listed as skipped, with the reason; the PyTorch baseline always runs
    cases, skipped = runner.leave_out(
        [Case("torch", "fp32", 56), Case("onnxruntime", "fp32", 56), Case("onnxruntime", "fp16", 56)], [],
        settings.left_out,
    )  # fmt: skip
    assert cases == [Case("torch", "fp32", 56), Case("onnxruntime", "fp32", 56)]
    assert skipped == [(Case("onnxruntime", "fp16", 56), QUICK_ORT_FP16)]


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
    arguments += ["--holdout", "2", "--seconds", "0.5", "--json"]
    arguments += ["--output", str(folder / "out"), "--cache-dir", str(folder / "cache")]
    result = CliRunner().invoke(bench_main, arguments)
    return result, folder / "out"


@pytest.mark.slow  # a real pick: exports and benchmarks every candidate
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


@pytest.mark.slow  # a real pick: exports and benchmarks every candidate
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


@pytest.mark.slow  # a real pick: exports and benchmarks every candidate
def test_pick_draws_the_front_with_the_budget(picked):
    pytest.importorskip("matplotlib", reason="pick.png needs dav2[plot]")
    _, out = picked
    assert (out / "pick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def earlier_pick(picked, tmp_path) -> Path:
    """A copy of a successful pick's folder, to run a failing or interrupted pick into."""
    import shutil

    _, out = picked
    folder = tmp_path / "picked"
    shutil.copytree(out, folder)
    return folder


def pick_arguments(picked, output: Path, *extra: str) -> list[str]:
    """A pick at 56 that reuses the `picked` fixture's checkpoint and artifact cache."""
    result, out = picked
    saved = json.loads((out / "pick.json").read_text())
    checkpoint = saved["settings"]["checkpoint"]
    arguments = ["pick", "--checkpoint", checkpoint, "--sizes", "56", "--seconds", "0.5", "--output", str(output)]
    return [*arguments, "--cache-dir", str(out.parent / "cache"), *extra]


@pytest.mark.slow  # a real pick: exports and benchmarks every candidate
def test_no_candidate_within_the_budget_leaves_the_earlier_pick_as_it_was(picked, earlier_pick):
    before = snapshot(earlier_pick)
    arguments = pick_arguments(picked, earlier_pick, "--max-abs-rel", "0.05", "--max-ms", "0.001")
    result = CliRunner().invoke(bench_main, [*arguments, "--backends", "onnxruntime", "--precisions", "fp32"])
    assert result.exit_code == 1
    assert "error: no candidate meets AbsRel ≤ 0.05, median ≤ 0.001 ms: nothing installed; see " in result.output
    after = snapshot(earlier_pick)
    assert {name: after[name] for name in before} == before  # pick.json/md/png and the artifact: byte-identical
    assert set(after) - set(before) >= {"pick-failed.md", "pick-failed.json"}
    failed = json.loads(after["pick-failed.json"])
    assert failed["choice"] is None and failed["complete"] is True
    assert "**No candidate meets the budget**: nothing installed" in after["pick-failed.md"].decode()


@pytest.mark.slow  # a real pick: exports and benchmarks every candidate
@pytest.mark.parametrize(("stop", "status", "name"), [(KeyboardInterrupt, 130, "SIGINT"), (Terminated, 143, "SIGTERM")])
def test_an_interrupted_pick_reports_what_it_measured_and_installs_nothing(
    picked, earlier_pick, monkeypatch, stop, status, name
):
    """Stopped while measuring the third of three candidates (PyTorch, ONNX Runtime FP32, INT8)."""
    real_child = runner.run_child
    calls = []

    def stopped_at_the_third(spec, work):
        calls.append(spec.case.backend)
        if len(calls) == 3:
            raise stop()
        return real_child(spec, work)

    monkeypatch.setattr(runner, "run_child", stopped_at_the_third)
    before = snapshot(earlier_pick)
    arguments = pick_arguments(picked, earlier_pick, "--backends", "onnxruntime", "--precisions", "fp32,int8")
    result = CliRunner().invoke(bench_main, arguments)
    assert result.exit_code == status, result.output
    after = snapshot(earlier_pick)
    assert {name: after[name] for name in before} == before
    incomplete = json.loads(after["pick-incomplete.json"])
    assert incomplete["complete"] is False and incomplete["choice"] is None
    assert incomplete["interrupted_by"] == name and incomplete["planned"] == 3
    measured = [(c["backend"], c["precision"]) for c in incomplete["cases"] if c["status"] == "ok"]
    assert measured == [("torch", "fp32"), ("onnxruntime", "fp32")]
    text = after["pick-incomplete.md"].decode()
    assert f"**Incomplete**: interrupted ({name}) after 2 of 3 candidate(s); nothing installed" in text
    assert "Among those measured, the choice would be onnxruntime fp32 56 (not installed)." in text
    assert "| onnxruntime fp32 56 |" in text and "not installed" in text


@pytest.mark.slow  # a real pick: exports and benchmarks every candidate
def test_a_new_choice_clears_the_failed_and_incomplete_reports(picked, earlier_pick):
    for name in ("pick-failed.md", "pick-incomplete.json"):
        (earlier_pick / name).write_text("from an earlier run")
    arguments = pick_arguments(picked, earlier_pick, "--backends", "onnxruntime", "--precisions", "fp32", "--quick")
    result = CliRunner().invoke(bench_main, [*arguments, "--sizes", "56,98"])
    assert result.exit_code == 0, result.output
    names = {p.name for p in earlier_pick.iterdir()}
    assert not names & {"pick-failed.md", "pick-incomplete.json"}
    saved = json.loads((earlier_pick / "pick.json").read_text())
    assert {c["size"] for c in saved["cases"] if c["status"] == "ok"} == {56}  # --quick: the first size only
    assert saved["choice"]["backend"] == "onnxruntime" and saved["choice"]["p10_ms"] <= saved["choice"]["median_ms"]
    text = (earlier_pick / "pick.md").read_text()
    assert "Quick mode (--quick) left out: sizes 98 (only the first of --sizes is tried)" in text


def test_plots_say_that_abs_rel_below_the_floor_is_drawn_at_the_floor():
    pytest.importorskip("matplotlib", reason="the plots need dav2[plot]")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dav2.benchmarks.report import ABS_REL_FLOOR, draw_floor, plotted_abs_rel

    assert plotted_abs_rel(0.0) == (ABS_REL_FLOOR, True) and plotted_abs_rel(0.01) == (0.01, False)
    figure, axes = plt.subplots()
    assert not draw_floor(axes, [0.01, 0.02])
    assert draw_floor(axes, [0.0, 0.02])
    assert axes.get_legend_handles_labels()[1] == ["AbsRel below 1e-06 (0 included) drawn at 1e-06"]
    plt.close(figure)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-abs-rel", "0", "--max-abs-rel must be"),
        ("--max-abs-rel", "nan", "--max-abs-rel must be"),
        ("--max-ms", "-5", "--max-ms must be"),
        ("--seconds", "1e9", "--seconds must be"),
        ("--eval-images", "0", "--holdout must be"),
        ("--int8-float", "block30", "unknown --int8-float group(s) block30; choose from head"),
    ],
)
def test_bad_numbers_are_one_error_line(option, value, message, tmp_path):
    arguments = ["pick", "--max-abs-rel", "0.01", option, value, "--output", str(tmp_path)]
    result = CliRunner().invoke(bench_main, arguments)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []
