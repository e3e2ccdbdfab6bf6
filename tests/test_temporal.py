"""Temporal stabilisation (dav2-run --stabilize) and its measurement (dav2-eval temporal)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import VIDEO
from dav2.cli import eval_main, run_main
from dav2.evaluation.temporal import abs_rel, temporal_scores
from dav2.runtime.stabilize import Stabilizer, fit_scale_shift


def breathing_sequence(count: int = 20, seed: int = 0) -> list[np.ndarray]:
    """One static disparity scene whose scale and shift change in every frame (a relative model's flicker)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:96].astype(np.float32)
    scene = 1.0 + xx / 96 + 0.5 * np.sin(yy / 9)
    return [scene * rng.uniform(0.7, 1.3) + rng.uniform(-0.3, 0.3) for _ in range(count)]


def test_fit_recovers_scale_and_shift_despite_outliers():
    rng = np.random.default_rng(1)
    source = rng.uniform(0.5, 3.0, 4000)
    target = 2.5 * source - 0.4
    target[:600] += rng.uniform(2, 5, 600)  # a moving object: 15 % of the pixels disagree
    fit = fit_scale_shift(source, target)
    assert fit.scale == pytest.approx(2.5, rel=0.02) and fit.shift == pytest.approx(-0.4, abs=0.05)


def test_stabilizer_at_least_halves_flicker_and_keeps_structure():
    frames = breathing_sequence()
    masks = [np.ones(frames[0].shape, bool)] * (len(frames) - 1)
    before = temporal_scores(frames, masks)
    stabilizer = Stabilizer()
    steady = [stabilizer(frame) for frame in frames]
    after = temporal_scores(steady, masks)
    assert after.flicker <= before.flicker / 2
    assert after.tae <= before.tae + 1e-3  # only scale and shift change: nothing alignment cannot undo
    assert len(stabilizer.fits) == len(frames)
    batched = Stabilizer()
    assert [batched(f[None]).shape for f in frames[:2]] == [(1, 64, 96)] * 2  # network output (1, H, W) too


def test_metric_models_are_not_aligned():
    frames = breathing_sequence(3)
    stabilizer = Stabilizer(kind="metric")
    assert all(stabilizer(frame) is frame for frame in frames)


def test_abs_rel_ignores_the_zero_background():
    raw = [np.array([[0.0, 1.0, 2.0]])]
    assert abs_rel([raw[0] * 1.1], raw) == pytest.approx(0.1)


def test_eval_temporal_reports_flicker_with_and_without_stabilisation(dynamic_onnx):
    args = ["temporal", "--model", str(dynamic_onnx), "--video", str(VIDEO), "--max-frames", "6", "--input-size", "112"]
    result = CliRunner().invoke(eval_main, [*args, "--stabilize", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["frames"] == 6 and report["stabilized"] is True
    assert {"flicker", "tae", "unstabilized", "flicker_reduction", "abs_rel_vs_unstabilized"} <= set(report)
    assert report["flicker"] <= report["unstabilized"]["flicker"]
    bad = CliRunner().invoke(eval_main, [*args[:5], "--max-frames", "1"])
    assert bad.exit_code != 0 and "--max-frames" in bad.output


def test_run_stabilize_on_a_video(dynamic_onnx, tmp_path):
    out = tmp_path / "depth.mp4"
    args = ["--model", str(dynamic_onnx), "--source", str(VIDEO), "--input-size", "112", "--max-frames", "5"]
    result = CliRunner().invoke(run_main, [*args, "--stabilize", "--save", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and json.loads(result.stdout.strip().splitlines()[-1])["frames"] == 5
