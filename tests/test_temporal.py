"""Temporal stabilisation (dav2-run --stabilize) and its measurement (dav2-eval temporal)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import VIDEO
from dav2.cli import eval_main, run_main
from dav2.evaluation.temporal import abs_rel, temporal_scores
from dav2.runtime.stabilize import Level, Stabilizer, fit_to_level


def breathing_sequence(count: int = 20, seed: int = 0) -> list[np.ndarray]:
    """One static disparity scene whose scale and shift change in every frame (a relative model's flicker)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:96].astype(np.float32)
    scene = 1.0 + xx / 96 + 0.5 * np.sin(yy / 9)
    return [scene * rng.uniform(0.7, 1.3) + rng.uniform(-0.3, 0.3) for _ in range(count)]


def test_a_frame_is_mapped_to_the_running_level_and_contrast():
    frame, target = Level(center=2.0, spread=4.0), Level(center=10.0, spread=2.0)
    fit = fit_to_level(frame, target)
    assert fit.scale == pytest.approx(0.5) and fit.shift == pytest.approx(9.0)
    sample = np.linspace(0.0, 8.0, 101)
    assert Level.of(fit.apply(sample)).spread == pytest.approx(0.5 * Level.of(sample).spread)


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


def test_abs_rel_is_after_alignment_so_an_affine_change_costs_nothing():
    raw = breathing_sequence(3)
    assert abs_rel([frame * 1.7 + 0.3 for frame in raw], raw) == pytest.approx(0.0, abs=1e-6)
    noisy = [frame + np.random.default_rng(0).normal(0, 0.05, frame.shape) for frame in raw]
    assert abs_rel(noisy, raw) > 0.01


def test_flattening_the_contrast_does_not_count_as_less_flicker():
    """A 'stabiliser' that squeezes every frame towards its mean must not score better."""
    frames = breathing_sequence()
    masks = [np.ones(frames[0].shape, bool)] * (len(frames) - 1)
    squeezed = [(f - f.mean()) * 0.1 + f.mean() for f in frames]
    assert temporal_scores(squeezed, masks).flicker >= temporal_scores(frames, masks).flicker


def test_the_stabilizer_keeps_the_contrast_of_a_moving_scene():
    """Least squares onto a smoothed reference would shrink each frame's contrast frame after frame."""
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:64, 0:96].astype(np.float32)
    frames = [
        1.0 + 0.5 * np.sin((xx + 3 * t) / 7) + 0.3 * np.cos(yy / 5) + rng.normal(0, 0.05, xx.shape) for t in range(60)
    ]
    stabilizer = Stabilizer()
    steady = [stabilizer(f) for f in frames]
    assert np.std(steady[-1]) == pytest.approx(np.std(frames[-1]), rel=0.15)


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
