"""Issue #12 on the host: the float32 preprocessing path and its reused buffers, the feeder
that picks the backend's input, uint8 artifacts, and the live latency accounting."""

import numpy as np
import pytest

from conftest import IMAGES
from dav2 import processing
from dav2.media import read_image
from dav2.runtime.feed import BufferPool, Feeder
from dav2.runtime.pipeline import run
from dav2.runtime.session import RunPlan
from dav2.runtime.sinks import MemorySink
from dav2.runtime.sources import SampleSource


class Plain:
    """A float-input backend stand-in without metadata (as older callers and tests have)."""

    fixed_hw, default_input_size, kind, name = None, 56, "relative", "plain"

    def infer(self, batch):
        return batch[:, 0].copy()


def photo() -> np.ndarray:
    return read_image(sorted(IMAGES.glob("*.jpg"))[0])


def test_float32_preprocessing_is_close_to_the_exact_path_and_reuses_buffers():
    image = photo()
    fast = processing.FastPreprocessor()
    exact = processing.preprocess(image, 518)
    out = fast(image, 518)
    assert out.shape == exact.shape and out.dtype == np.float32
    assert np.abs(out - exact).max() <= 5e-4  # normalised units (values span about -2.1..2.6)
    again = fast(image, 518, out=out)
    assert again is out  # written into the buffer it was given
    assert fast(image, fixed_hw=(518, 518)).shape == (1, 3, 518, 518)
    np.testing.assert_allclose(processing.preprocess_fast(image, 518), out, atol=1e-6)


def test_buffer_pool_hands_back_only_matching_shapes_and_stays_bounded():
    pool = BufferPool(size=2)
    a, b, c = (np.empty((1, 3, 28, 28), np.float32) for _ in range(3))
    for buffer in (a, b, c):
        pool.give(buffer)
    assert pool.take((1, 3, 14, 14)) is None
    assert pool.take((1, 3, 28, 28)) is a and pool.take((1, 3, 28, 28)) is b and pool.take((1, 3, 28, 28)) is None


def test_feeder_modes_and_views_kept_out_of_the_pool():
    image = photo()
    exact = Feeder(Plain(), 56, "exact")
    np.testing.assert_array_equal(exact(image), processing.preprocess(image, 56))
    fast = Feeder(Plain(), 56)
    tensor = fast(image)
    fast.give_back(tensor, tensor[:, 0])  # a view of it: not reused
    assert fast.pool.take(tensor.shape) is None
    fast.give_back(tensor, np.zeros(1))
    assert fast(image) is tensor  # the next frame reuses it
    with pytest.raises(Exception, match="unknown preprocessing"):
        Feeder(Plain(), 56, "float16")


def test_pipeline_float32_path_matches_the_exact_one_within_tolerance():
    results = {}
    for mode in ("exact", "float32"):
        sink = MemorySink()
        run(SampleSource(), Plain(), RunPlan.for_sinks(Plain(), [sink], preprocessing=mode))
        results[mode] = sink.depth
    scale = np.abs(results["exact"]).max()
    assert np.abs(results["float32"] - results["exact"]).max() <= 1e-3 * scale
