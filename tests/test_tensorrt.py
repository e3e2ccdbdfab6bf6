"""TensorRT: what needs no GPU is tested everywhere; building and running need TensorRT and a GPU.

This machine (and CI) has neither: the build/run test skips with the reason, and the
missing-library errors are tested for real.
"""

import importlib.util

import pytest
from click.testing import CliRunner

from conftest import IMAGES, export
from dav2.calibration.dataset import CalibrationSet
from dav2.calibration.tensorrt import cache_path
from dav2.cli import export_main, run_main
from dav2.errors import Dav2Error
from dav2.export.onnx import GraphOptions
from dav2.export.tensorrt import (
    PROFILE_PRESETS,
    engine_metadata,
    layers_to_keep_fp32,
    optimization_profile,
    parse_shape,
    timing_cache_path,
)
from dav2.metadata import read_metadata, write_metadata
from dav2.runtime.backends.tensorrt import check_engine_compatible, check_tensorrt_version, parse_version

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
GPU = {"gpu": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9", "cuda_driver": "12.4"}


def have_gpu() -> bool:
    try:
        import pycuda.driver as cuda

        cuda.init()
        return cuda.Device.count() > 0
    except Exception:
        return False


# -- shape profiles --------------------------------------------------------------------------


def test_static_graph_has_one_fixed_shape():
    profile = optimization_profile(GraphOptions(266, 364))
    assert profile.min == profile.opt == profile.max == (1, 3, 266, 364)
    with pytest.raises(Dav2Error, match="--dynamic"):
        optimization_profile(GraphOptions(266, 364), preset="batch")


def test_presets_and_overrides():
    dynamic = GraphOptions(dynamic=True)
    default = optimization_profile(dynamic)
    assert default.as_dict() == {"min": [1, 3, 196, 196], "opt": [1, 3, 518, 518], "max": [1, 3, 1036, 1036]}
    assert optimization_profile(dynamic, "batch").max == (8, 3, 518, 518)
    custom = optimization_profile(dynamic, "camera", max_shape="2x518x1288")
    assert custom.min == (1, 3, 364, 364) and custom.max == (2, 3, 518, 1288)
    for low, mid, high in PROFILE_PRESETS.values():
        assert all(side % 14 == 0 for shape in (low, mid, high) for side in shape[1:])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_shape": "1x500x500"}, "multiples of 14"),
        ({"opt_shape": "1x1064x1064"}, "min <= opt <= max"),
        ({"min_shape": "0x196x196"}, "at least 1"),
        ({"max_shape": "518x518"}, "BATCHxHEIGHTxWIDTH"),
        ({"preset": "huge"}, "unknown profile preset"),
    ],
)
def test_bad_profiles_are_explained(kwargs, message):
    with pytest.raises(Dav2Error, match=message):
        optimization_profile(GraphOptions(dynamic=True), **kwargs)


def test_parse_shape():
    assert parse_shape("4x518x686") == (4, 518, 686)
    assert parse_shape("1,308,308") == (1, 308, 308)


# -- layers kept in FP32 --------------------------------------------------------------------

LAYERS = [
    ("/blocks.0/norm1/LayerNormalization", "NORMALIZATION"),
    ("/blocks.0/attn/MatMul", "MATRIX_MULTIPLY"),
    ("/blocks.0/attn/Softmax", "SOFTMAX"),
    ("/norm/LayerNormalization", "NORMALIZATION"),
    ("/depth_head/refinenet1/out_conv/Conv", "CONVOLUTION"),
    ("/depth_head/output_conv2/output_conv2.0/Conv", "CONVOLUTION"),
]


def test_keep_fp32_groups_pick_their_layers():
    assert layers_to_keep_fp32(LAYERS, ["layernorm"]) == [0, 3]
    assert layers_to_keep_fp32(LAYERS, ["softmax", "head"]) == [2, 5]
    assert layers_to_keep_fp32(LAYERS, []) == []
    with pytest.raises(Dav2Error, match="unknown --keep-fp32"):
        layers_to_keep_fp32(LAYERS, ["attention"])


# -- metadata, versions, caches ------------------------------------------------------------


def test_engine_metadata_records_where_it_runs():
    profile = optimization_profile(GraphOptions(dynamic=True), "camera")
    meta = engine_metadata(profile, "fp16", ["layernorm"], "10.3.0", GPU, 4.0)
    assert meta["tensorrt"]["version"] == "10.3.0"
    assert meta["tensorrt"]["compute_capability"] == "8.9"
    assert meta["tensorrt"]["profile"]["opt"] == [1, 3, 518, 686]
    assert meta["tensorrt"]["keep_fp32"] == ["layernorm"]


def test_engine_from_another_version_or_gpu_is_refused_with_the_reason():
    profile = optimization_profile(GraphOptions())
    meta = engine_metadata(profile, "fp16", [], "10.3.0", GPU, 4.0)
    check_engine_compatible(meta, "10.3.0", GPU)
    with pytest.raises(Dav2Error, match=r"built with TensorRT 10\.3\.0, but TensorRT 10\.7\.0"):
        check_engine_compatible(meta, "10.7.0", GPU)
    orin = {"gpu": "Orin", "compute_capability": "8.7"}
    with pytest.raises(Dav2Error, match=r"built for NVIDIA GeForce RTX 4090 \(compute capability 8\.9\).*Orin"):
        check_engine_compatible(meta, "10.3.0", orin)


def test_version_checks():
    assert parse_version("10.3.0.26") == (10, 3, 0)
    assert parse_version("8.6.2.post1") == (8, 6, 2)
    check_tensorrt_version("8.6.1")
    check_tensorrt_version("10.0.1")
    with pytest.raises(Dav2Error, match="too old"):
        check_tensorrt_version("8.5.3")


def test_cache_names(tmp_path):
    assert timing_cache_path(tmp_path, GPU, "10.3.0").name == "tensorrt-10.3.0-nvidia-geforce-rtx-4090.timing-cache"
    first = CalibrationSet(IMAGES, (266, 364), count=4, holdout=0, seed=0)
    again = CalibrationSet(IMAGES, (266, 364), count=4, holdout=0, seed=0)
    second = CalibrationSet(IMAGES, (266, 364), count=4, holdout=0, seed=1)
    assert len(first) == 4 and [p.name for p in first.pictures] != [p.name for p in second.pictures]
    name = cache_path(tmp_path, "m_int8", first)
    assert name.parent == tmp_path and name.name.startswith("m_int8.") and name.suffix == ".calib"
    assert name == cache_path(tmp_path, "m_int8", again)  # the same images reuse the cache
    assert name != cache_path(tmp_path, "m_int8", second)  # other images do not
    assert name != cache_path(tmp_path, "m_int7", first)


# -- without TensorRT or a GPU --------------------------------------------------------------


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
@pytest.mark.parametrize("args", [["--trt"], ["--trt", "fp16"]])  # --trt alone means FP16
def test_export_without_tensorrt_names_what_is_missing(tmp_path, args):
    result = CliRunner().invoke(export_main, [*args, "--output", str(tmp_path)])
    assert result.exit_code == 1
    assert "TensorRT is not installed" in result.output and "dav2[tensorrt]" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_running_an_engine_without_tensorrt_is_one_error(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 64)
    profile = optimization_profile(GraphOptions())
    write_metadata(engine, {"input_shape": [1, 3, 518, 518], **engine_metadata(profile, "fp16", [], "10.3.0", GPU, 4)})
    result = CliRunner().invoke(run_main, ["--model", str(engine)])
    assert result.exit_code == 1 and "TensorRT is not installed" in result.output


@pytest.mark.skipif(not HAVE_TENSORRT, reason="TensorRT is not installed (no wheel installs on this machine)")
@pytest.mark.skipif(not have_gpu(), reason="no CUDA GPU")
def test_fp16_engine_builds_and_matches_pytorch(vits_checkpoint, tmp_path):
    import numpy as np

    from dav2.runtime.backends import open_backend

    engine = export(vits_checkpoint, tmp_path, "--trt", "fp16", "--height", "266", "--width", "364")
    meta = read_metadata(engine)
    assert meta["format"] == "tensorrt" and meta["accuracy"]["delta1"] >= 0.98
    tensor = np.random.default_rng(0).standard_normal((1, 3, 266, 364)).astype(np.float32)
    backend = open_backend(engine)
    depth = backend.infer(tensor)
    expected = open_backend(vits_checkpoint).infer(tensor)
    assert depth.shape == (1, 266, 364)
    assert np.abs(depth - expected).max() / max(1.0, np.abs(expected).max()) < 5e-2
    assert set(backend.last_timing) >= {"h2d_ms", "infer_ms", "d2h_ms"}
