"""The built-in sample scene (its depth is exact) and the FPS meter's arithmetic."""

import numpy as np
import pytest

from dav2.runtime.fps import FpsMeter, format_summary
from dav2.sample import render_sample


def test_sample_depth_is_the_true_geometry():
    image, depth = render_sample(480, 640)
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    # bottom-centre pixel is floor: z = camera height * focal / (row offset from the centre)
    assert depth[479, 320] == pytest.approx(1.5 * 500 / (479 - 240), rel=1e-5)
    # top rows see the back wall at 12 m
    assert np.all(depth[0] == pytest.approx(12.0))
    # the red sphere (centre z = 4 m, radius 0.8) is nearer than the wall behind it
    assert 3.1 < depth[int(240 + 0.7 / 4 * 500), int(320 - 1.6 / 4 * 500)] < 4.0
    assert depth.min() > 0


def test_sample_is_deterministic():
    a, da = render_sample()
    b, db = render_sample()
    assert np.array_equal(a, b) and np.array_equal(da, db)


def test_fps_meter_excludes_the_warm_up_frame():
    meter = FpsMeter()
    meter.start()
    meter.add({"preprocess": 500.0, "inference": 900.0})
    for ms in (10.0, 20.0, 30.0):
        meter.add({"preprocess": 1.0, "inference": ms})
    summary = meter.summary()
    assert summary.frames == 4 and summary.timed_frames == 3
    assert summary.first_frame_ms == pytest.approx(1400.0)
    assert summary.stages["inference"].mean_ms == pytest.approx(20.0)
    assert summary.stages["inference"].p50_ms == pytest.approx(20.0)
    assert summary.inference_fps == pytest.approx(50.0)
    assert summary.end_to_end_fps > 0
    assert "inference-only FPS 50.00" in format_summary(summary)


def test_fps_meter_with_one_frame_reports_no_rates():
    meter = FpsMeter()
    meter.start()
    meter.add({"inference": 5.0})
    summary = meter.summary()
    assert summary.end_to_end_fps is None and summary.inference_fps is None
    assert "one frame only" in format_summary(summary)
