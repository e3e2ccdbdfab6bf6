"""LiteRT, ExecuTorch and Core ML: converted from the seeded vits model at 56x56 and checked.

FP32 artifacts run in their dav2 backend and must match PyTorch FP32 and the FP32 ONNX graph
of the same size within 1e-3 of the output's scale; INT8 artifacts run and their AbsRel
against PyTorch FP32 is measured (dav2.accuracy) and held to the default INT8 budget; the
Core ML package is checked structurally (it runs on Apple devices only). The export targets
are built from a real ExportContext, as the pipeline will build them.

Each converter is an optional extra: a test skips, saying which, where its package is
missing. Conversions are slow on two cores (a minute or more each), so each artifact is made
once per session at the smallest size the model takes comfortably.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import IMAGES, seeded_state_dict
from dav2 import accuracy, optional, processing
from dav2.errors import Dav2Error
from dav2.export.gate import DEFAULT_MAX_ABS_REL
from dav2.metadata import ArtifactMetadata
from dav2.runtime.backends import open_backend
from dav2.vocabulary import Precision

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'dav2[export]')")

SIZE = 56
THREADS = 2
needs_litert = pytest.mark.skipif(
    not (optional.available("litert_torch") and optional.available("ai_edge_litert")),
    reason="LiteRT is not installed (pip install 'dav2[litert-export,litert]')",
)
needs_executorch = pytest.mark.skipif(
    not optional.available("executorch"), reason="ExecuTorch is not installed (pip install 'dav2[executorch]')"
)
needs_coreml = pytest.mark.skipif(
    not optional.available("coremltools"), reason="coremltools is not installed (pip install 'dav2[coreml]')"
)


@pytest.fixture(scope="module")
def model():
    from dav2.models.checkpoint import build_model

    return build_model(seeded_state_dict("vits"), "vits", False, 20.0, source="seeded vits").eval()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return cv2.imread(str(IMAGES / "demo08.jpg"))


@pytest.fixture(scope="module")
def tensor(image) -> np.ndarray:
    return processing.preprocess(image, fixed_hw=(SIZE, SIZE))


@pytest.fixture(scope="module")
def expected(model, tensor) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(tensor)).numpy()


@pytest.fixture(scope="module")
def calibration():
    from dav2.calibration.dataset import CalibrationSet

    return CalibrationSet(IMAGES, (SIZE, SIZE), count=4, holdout=1)


@pytest.fixture(scope="module")
def onnx_output(model, tensor, tmp_path_factory) -> np.ndarray:
    """The FP32 ONNX graph of the same fixed size, run in ONNX Runtime."""
    from dav2.export.context import GraphOptions
    from dav2.export.onnx import export_graph

    path = tmp_path_factory.mktemp("onnx") / "vits_56.onnx"
    export_graph(model, path, GraphOptions(SIZE, SIZE, dynamic=False))
    with open_backend(path) as backend:
        return backend.infer(tensor)


@pytest.fixture(scope="module")
def context(model, image, calibration, tmp_path_factory):
    """A real export context at 56x56 (static), as dav2-export makes one."""
    from dav2.export.context import ExportContext, ExportRequest, GraphOptions, Provenance

    request = ExportRequest(height=SIZE, width=SIZE)
    options = GraphOptions(SIZE, SIZE, dynamic=False)
    provenance = Provenance("seeded vits", "0" * 64, "Apache-2.0", "demo08.jpg")
    work = tmp_path_factory.mktemp("edge-export")
    return ExportContext(request, options, model, image, [("demo08.jpg", image)], calibration, provenance, work)


def relative_difference(actual: np.ndarray, reference: np.ndarray) -> float:
    """max |a - r| / max(1, max |r|): the parity measure every FP32 artifact is held to."""
    return float(np.abs(actual - reference).max()) / max(1.0, float(np.abs(reference).max()))


def built_artifact(target, context) -> Path:
    """Build one target and write its sidecar, as the pipeline's finish step does."""
    (built,) = target.build(context)
    built.metadata.write(built.path)
    return built.path


def int8_abs_rel(path: Path, tensor: np.ndarray, expected: np.ndarray) -> float:
    with open_backend(path, threads=THREADS) as backend:
        actual = backend.infer(tensor)
    assert actual.shape == expected.shape and np.isfinite(actual).all()
    return accuracy.compare(actual[0], expected[0])["abs_rel"]


# --- LiteRT -----------------------------------------------------------------------------------


@needs_litert
def test_litert_fp32_target_matches_pytorch_and_onnx(context, tensor, expected, onnx_output):
    from dav2.export.litert import LiteRtTarget

    path = built_artifact(LiteRtTarget(Precision.FP32), context)
    metadata = ArtifactMetadata.read(path)
    assert path.suffix == ".tflite" and metadata.format == "litert" and metadata.input_shape == [1, 3, SIZE, SIZE]
    assert metadata.parity["tolerance"] == 1e-3 and "litert-torch" in metadata.tools
    with open_backend(path, threads=THREADS) as backend:
        assert backend.name == "litert" and backend.metadata.encoder == "vits"
        actual = backend.infer(tensor)
    assert relative_difference(actual, expected) < 1e-3
    assert relative_difference(actual, onnx_output) < 1e-3


@needs_litert
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_litert_int8_runs_and_is_measured(model, calibration, tensor, expected, tmp_path, mode):
    from dav2.export.litert import convert_litert

    path = convert_litert(
        model, tmp_path / f"int8_{mode}.tflite", SIZE, SIZE, Precision.INT8, calibration.batches(1), mode
    )
    assert path.stat().st_size < 40e6  # int8 weights: about a quarter of the FP32 file
    abs_rel = int8_abs_rel(path, tensor, expected)
    assert 0 < abs_rel <= DEFAULT_MAX_ABS_REL[Precision.INT8]


@needs_litert
def test_litert_backend_refuses_another_size(context, tmp_path):
    from dav2.export.litert import convert_litert

    path = next(context.work.glob("litert-fp32/*.tflite"), None)
    if path is None:
        path = convert_litert(context.model, tmp_path / "m.tflite", SIZE, SIZE)
    with open_backend(path) as backend, pytest.raises(Dav2Error, match="fixed-size"):
        backend.infer(np.zeros((1, 3, SIZE + 14, SIZE), np.float32))


# --- ExecuTorch -------------------------------------------------------------------------------


@needs_executorch
def test_executorch_fp32_target_matches_pytorch_and_onnx(context, tensor, expected, onnx_output):
    from dav2.export.executorch import ExecuTorchTarget

    path = built_artifact(ExecuTorchTarget(Precision.FP32), context)
    metadata = ArtifactMetadata.read(path)
    assert path.suffix == ".pte" and metadata.format == "executorch" and metadata.parity["tolerance"] == 1e-3
    with open_backend(path, threads=THREADS) as backend:
        assert backend.name == "executorch"
        actual = backend.infer(tensor)
    assert relative_difference(actual, expected) < 1e-3
    assert relative_difference(actual, onnx_output) < 1e-3


@needs_executorch
def test_executorch_int8_runs_and_is_measured(model, calibration, tensor, expected, tmp_path):
    from dav2.export.executorch import convert_executorch

    path = convert_executorch(model, tmp_path / "int8.pte", SIZE, SIZE, Precision.INT8, calibration.batches(1))
    assert path.stat().st_size < 40e6
    abs_rel = int8_abs_rel(path, tensor, expected)
    assert 0 < abs_rel <= DEFAULT_MAX_ABS_REL[Precision.INT8]


# --- Core ML ----------------------------------------------------------------------------------


@needs_coreml
def test_coreml_package_declares_dav2_tensors(context):
    from dav2.export.coreml import CoreMlTarget, package_facts

    path = built_artifact(CoreMlTarget(Precision.FP16), context)
    assert path.is_dir() and path.suffix == ".mlpackage"
    facts = package_facts(path)
    metadata = ArtifactMetadata.read(path)
    assert (facts.input_name, list(facts.input_shape)) == (metadata.input_name, metadata.input_shape)
    assert facts.output_name == metadata.output_name == "depth"
    assert metadata.quantization["compute_precision"] == "float16"
    with pytest.raises(Dav2Error, match="Apple devices"):
        open_backend(path)


# --- preflight (no conversion) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "module, cls",
    [
        pytest.param("litert", "LiteRtTarget", marks=needs_litert),
        pytest.param("executorch", "ExecuTorchTarget", marks=needs_executorch),
        pytest.param("coreml", "CoreMlTarget", marks=needs_coreml),
    ],
)
def test_edge_targets_refuse_dynamic_graphs(module, cls):
    import importlib

    from dav2.export.context import ExportRequest

    target = getattr(importlib.import_module(f"dav2.export.{module}"), cls)(Precision.FP32)
    with pytest.raises(Dav2Error, match="fixed-size"):
        target.preflight(ExportRequest())  # no --height/--width: a dynamic graph
    with pytest.raises(Dav2Error, match="uint8"):
        target.preflight(ExportRequest(height=SIZE, width=SIZE, input="uint8"))
