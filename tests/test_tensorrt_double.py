"""dav2's TensorRT plumbing, run against a test double of tensorrt and the CUDA binding.

This does not run TensorRT (tests/tensorrt_double.py says what the double is): it checks what
dav2 itself does around it: shape profiles and the sizes the accuracy check runs at, the check
against the FP32 reference that travels with the graph, publishing, the engine's sidecar
(profile, true shape range, trtexec command), the engine-vs-sidecar check, every error path
(null builder, no driver, a driver older than the wheel's CUDA, a rejected timing cache), and
the CUDA context's lifetime (timing read inside it, released on close from another thread).
"""

import json
import sys
import threading

import numpy as np
import pytest
import tensorrt_double as double
from click.testing import CliRunner

from conftest import export
from dav2.cli import export_main
from dav2.export.reference import Reference, reference_path
from dav2.metadata import UINT8_INPUT, ArtifactMetadata, sidecar_path
from dav2.runtime.backends import open_backend
from dav2.runtime.backends import tensorrt as trt_backend

pytestmark = pytest.mark.slow  # exports of the precision-explicit graphs

SMALL = ["--dynamic", "--height", "196", "--width", "196"]


@pytest.fixture
def fake_gpu(monkeypatch):
    """tensorrt and cuda.bindings.driver replaced by the double, with a fresh state."""
    double.STATE.__init__()
    monkeypatch.setitem(sys.modules, "tensorrt", double.tensorrt_module())
    for name, module in double.cuda_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(trt_backend, "_LOGGER", None)
    return double.STATE


def run_export(*args) -> "CliRunner.Result":
    return CliRunner().invoke(export_main, [str(a) for a in args])


def last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def fp16_graph(fp16_graph_196):
    """The precision-explicit FP16 graph (196, dynamic) with its FP32 reference: the one graph
    `--trt fp16` builds its engine from (test_tensorrt checks that `--trt fp16` without TensorRT
    writes it and stops)."""
    assert reference_path(fp16_graph_196).is_file()  # the reference travels with the graph
    return fp16_graph_196


def test_the_reference_is_fp32_outputs_at_sizes_for_every_preset(fp16_graph):
    reference = Reference.read(reference_path(fp16_graph))
    sizes = [case.hw for case in reference.cases]
    assert sizes[0] == (196, 266) and (196, 196) in sizes  # the sample scene's own size, and the square
    assert reference.onnxruntime and all(c.expected.dtype == np.float32 for c in reference.cases)
    assert all(c.graph_abs_rel is not None and c.graph_abs_rel < 0.01 for c in reference.cases)


def test_from_builds_checks_and_publishes_the_engine(fake_gpu, fp16_graph, tmp_path):
    result = run_export("--trt", "fp16", "--from", fp16_graph, "--output", tmp_path)
    assert result.exit_code == 0, result.output
    engine = tmp_path / "depth_anything_v2_vits_dynamic_fp16.engine"
    assert result.stdout.strip() == str(engine)
    (build,) = fake_gpu.builds
    assert build["strongly_typed"] and build["profile"] == [[1, 3, 196, 196], [1, 3, 196, 266], [1, 3, 924, 924]]
    meta = ArtifactMetadata.read(engine)
    assert meta.tensorrt.profile == {"min": [1, 3, 196, 196], "opt": [1, 3, 196, 266], "max": [1, 3, 924, 924]}
    assert meta.dynamic_range == {"multiple_of": 14, "min": 196, "max": 924}  # the engine's, not the ONNX's
    assert meta.tensorrt.trtexec == (
        f"trtexec --onnx={fp16_graph.name} --stronglyTyped --minShapes=image:1x3x196x196 "
        "--optShapes=image:1x3x196x266 --maxShapes=image:1x3x924x924 --memPoolSize=workspace:4096M "
        "--timingCacheFile=tensorrt-10.3.0-orin-test-double.timing-cache --saveEngine=" + engine.name
    )
    assert meta.accuracy.abs_rel < 0.01 and meta.accuracy.graph_abs_rel is not None
    assert "FP32 reference outputs" in meta.accuracy.against
    assert (tmp_path / "tensorrt-10.3.0-orin-test-double.timing-cache").is_file()
    assert fake_gpu.retained == 0 and not fake_gpu.memory  # every context and buffer released


def test_batch_and_camera_profiles_check_at_a_size_inside_them(fake_gpu, fp16_graph, tmp_path):
    """Issue 20 part 3: the batch preset (1-8 x 196x196 here) used to reject the check image at
    its own aspect ratio after the build; the check now runs on a reference inside the profile."""
    result = run_export("--trt", "fp16", "--from", fp16_graph, "--profile", "batch", "--output", tmp_path)
    assert result.exit_code == 0, result.output
    meta = ArtifactMetadata.read(tmp_path / "depth_anything_v2_vits_dynamic_fp16.engine")
    assert meta.tensorrt.profile["max"] == [8, 3, 196, 196] and meta.accuracy.inputs == ["1x3x196x196"]
    with open_backend(tmp_path / "depth_anything_v2_vits_dynamic_fp16.engine") as engine:
        assert engine.fixed_hw == (196, 196)  # one size: photos are stretched to it, as for static graphs
        depth = engine.predict(np.zeros((480, 640, 3), np.uint8))
    assert depth.shape == (480, 640)


def test_a_profile_that_cannot_hold_the_check_is_refused_before_building(fake_gpu, fp16_graph, tmp_path):
    portrait = ["--profile", "camera", "--camera-size", "720x1280"]  # no reference at 350x196
    result = run_export("--trt", "fp16", "--from", fp16_graph, *portrait, "--output", tmp_path)
    assert result.exit_code == 1
    assert "cannot hold the accuracy check" in last_line(result) and "--min-shape/--max-shape" in last_line(result)
    assert fake_gpu.builds == [] and list(tmp_path.iterdir()) == []
    small = ["--opt-shape", "1x196x196", "--max-shape", "1x196x224"]  # the 196x266 reference is outside
    result = run_export("--trt", "fp16", "--from", fp16_graph, *small, "--output", tmp_path)
    assert result.exit_code == 0, result.output  # the 196x196 reference fits
    result = run_export("--trt", "fp16", "--from", fp16_graph, "--max-shape", "1x224x224", "--output", tmp_path)
    assert result.exit_code == 1 and "min <= opt <= max does not hold" in last_line(result)
    assert "--opt-shape" in last_line(result)


def test_an_engine_worse_than_its_graph_is_refused_and_nothing_is_written(fake_gpu, fp16_graph, tmp_path):
    fake_gpu.output_noise = 0.2
    result = run_export("--trt", "fp16", "--from", fp16_graph, "--output", tmp_path)
    assert result.exit_code == 1 and "exceeds" in last_line(result) and "nothing written" in last_line(result)
    assert not list(tmp_path.glob("*.engine")) and fake_gpu.retained == 0


def test_a_rejected_timing_cache_does_not_lose_the_engine(fake_gpu, fp16_graph, tmp_path):
    (tmp_path / "tensorrt-10.3.0-orin-test-double.timing-cache").write_bytes(b"from another version")
    fake_gpu.reject_timing_cache = True
    result = run_export("--trt", "fp16", "--from", fp16_graph, "--output", tmp_path)
    assert result.exit_code == 0, result.output
    assert "rejected the timing cache" in result.stderr
    fake_gpu.no_timing_cache = True  # get_timing_cache() may return None
    result = run_export("--trt", "fp16", "--from", fp16_graph, "--output", tmp_path / "again")
    assert result.exit_code == 0 and "no timing cache" in result.stderr


@pytest.mark.parametrize(
    "setup, message",
    [
        ("builder_fails", "TensorRT could not create its builder"),
        ("no_driver", "no NVIDIA driver here: cuda-bindings could not load libcuda"),
        ("old_driver", "built for CUDA 13 (tensorrt-cu13), but the NVIDIA driver supports CUDA 12.6"),
    ],
)
def test_tensorrt_that_cannot_start_is_one_line(fake_gpu, fp16_graph, tmp_path, monkeypatch, setup, message):
    if setup == "old_driver":
        monkeypatch.setattr(trt_backend, "tensorrt_cuda_major", lambda: 13)
    else:
        setattr(fake_gpu, setup, True)
    result = run_export("--trt", "fp16", "--from", fp16_graph, "--output", tmp_path)
    assert result.exit_code == 1 and result.stderr.strip().count("\n") == result.stderr.count("\n") - 1
    assert message in last_line(result) and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == [] and fake_gpu.retained == 0


def test_no_cuda_binding_is_one_line_naming_cuda_bindings(fake_gpu, fp16_graph, tmp_path, monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.driver"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError: as if not installed
    monkeypatch.setattr("dav2.runtime.cuda.BINDINGS", (("dav2_no_such_binding.driver", None),))
    result = run_export("--trt", "fp16", "--from", fp16_graph, "--output", tmp_path)
    assert result.exit_code == 1 and "pip install 'cuda-bindings" in last_line(result)


@pytest.fixture
def engine(fake_gpu, fp16_graph, tmp_path):
    result = run_export("--trt", "fp16", "--from", fp16_graph, "--output", tmp_path)
    assert result.exit_code == 0, result.output
    return tmp_path / "depth_anything_v2_vits_dynamic_fp16.engine"


def test_the_engine_runs_like_its_graph_and_closes_from_another_thread(engine, fp16_graph, fake_gpu):
    tensor = np.random.default_rng(0).standard_normal((1, 3, 196, 280)).astype(np.float32)
    backend = open_backend(engine)
    with open_backend(fp16_graph) as graph:
        expected = graph.infer(tensor)
    results = []
    thread = threading.Thread(target=lambda: results.append(backend.infer(tensor)))  # a pipeline thread
    thread.start()
    thread.join()
    np.testing.assert_allclose(results[0], expected, rtol=1e-5, atol=1e-5)
    assert backend.last_timing["infer_ms"] == 0.25  # read while the context was current
    with pytest.raises(Exception, match="outside this engine's shape profile"):
        backend.infer(np.zeros((1, 3, 196, 938), np.float32))
    assert fake_gpu.retained == 1
    closer = threading.Thread(target=backend.close)
    closer.start()
    closer.join()
    assert fake_gpu.retained == 0 and not fake_gpu.memory
    backend.close()  # twice is fine


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"input_name": "pixels"}, "it names the input 'pixels'"),
        ({"tensorrt.profile.max": [1, 3, 1036, 1036]}, "the engine's is [1, 3, 924, 924]"),
    ],
)
def test_an_engine_that_contradicts_its_sidecar_is_refused(engine, fake_gpu, edit, message):
    data = json.loads(sidecar_path(engine).read_text())
    for key, value in edit.items():
        target = data
        *path, last = key.split(".")
        for part in path:
            target = target[part]
        target[last] = value
    sidecar_path(engine).write_text(json.dumps(data))
    with pytest.raises(Exception, match="does not describe") as failure:
        open_backend(engine)
    assert message in str(failure.value) and fake_gpu.retained == 0


def test_from_refuses_a_uint8_graph(fake_gpu, fp16_graph, tmp_path):
    copy = tmp_path / "in" / fp16_graph.name
    copy.parent.mkdir()
    copy.write_bytes(fp16_graph.read_bytes())
    reference_path(copy).write_bytes(reference_path(fp16_graph).read_bytes())
    data = json.loads(sidecar_path(fp16_graph).read_text())
    sidecar_path(copy).write_text(json.dumps({**data, "input_format": UINT8_INPUT}))
    result = run_export("--trt", "fp16", "--from", copy, "--output", tmp_path / "out")
    assert result.exit_code == 1 and "takes uint8 camera frames" in last_line(result)


def test_from_without_the_reference_names_the_file(fake_gpu, fp16_graph, tmp_path):
    copy = tmp_path / fp16_graph.name
    copy.write_bytes(fp16_graph.read_bytes())
    sidecar_path(copy).write_bytes(sidecar_path(fp16_graph).read_bytes())
    result = run_export("--trt", "fp16", "--from", copy, "--output", tmp_path / "out")
    assert result.exit_code == 1 and f"no FP32 reference beside it ({copy.name}.reference.npz)" in last_line(result)


def test_fp32_engine_in_one_export_is_checked_and_tf32_is_off(fake_gpu, vits_checkpoint, tmp_path):
    engine = export(vits_checkpoint, tmp_path, "--trt", "fp32", *SMALL)
    assert engine.suffix == ".engine" and fake_gpu.tf32_cleared
    meta = ArtifactMetadata.read(engine)
    assert meta.accuracy.abs_rel < 1e-4 and meta.precision == "fp32"
    assert "--noTF32" in meta.tensorrt.trtexec
    assert reference_path(engine.with_suffix(".onnx")).is_file()
