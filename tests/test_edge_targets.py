"""LiteRT, ExecuTorch and Core ML: converted from the seeded vits model at 56x56 and checked.

The targets are made from their rows of the format table (`dav2.export.formats.FORMATS`) with
a real ExportRequest, built in a real ExportContext and finished and published by the export
pipeline's own steps, as `dav2-export` does. FP32 artifacts run in their dav2 backend and
must match PyTorch FP32 and the FP32 ONNX graph of the same size within 1e-3 of the output's
scale; INT8 artifacts run and their AbsRel against PyTorch FP32 is held to the default INT8
budget; the Core ML package is checked structurally and its sidecar says it was not measured.

Each converter is an optional extra: a test skips, saying which, where its package is
missing. Conversions take tens of seconds each on two cores (marked slow), so each artifact
is made once per module at the smallest size the model takes comfortably.
"""

import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import IMAGES, SIZE_56, export, seeded_state_dict
from dav2 import accuracy, optional, processing
from dav2.errors import Dav2Error
from dav2.export import formats
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
ROWS = {row.key: row for row in formats.FORMATS}


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


def make_context(request, model, image, calibration, work: Path):
    """A real export context at 56x56 (static), as dav2-export makes one."""
    from dav2.export.context import ExportContext, GraphOptions, Provenance

    options = GraphOptions(SIZE, SIZE, dynamic=False)
    provenance = Provenance("seeded vits", "0" * 64, "Apache-2.0", "demo08.jpg")
    return ExportContext(request, options, model, image, [("demo08.jpg", image)], calibration, provenance, work)


def built_artifact(key: str, precision: Precision, model, image, calibration, tmp_path: Path, **options) -> Path:
    """Build one format's target from its table row, then finish (sidecar, accuracy report or
    the not-measured line) and publish it with the pipeline's own steps; return the artifact."""
    from dav2.export.context import ExportRequest
    from dav2.export.pipeline import finish, publish

    request = ExportRequest(height=SIZE, width=SIZE, **{key: precision.value}, **options)
    target = ROWS[key].target(precision, request)
    target.preflight(request)
    context = make_context(request, model, image, calibration, tmp_path / "work")
    context.work.mkdir()
    (built,) = target.build(context)
    return publish(finish(built, context), tmp_path / "out")


def relative_difference(actual: np.ndarray, reference: np.ndarray) -> float:
    """max |a - r| / max(1, max |r|): the parity measure every FP32 artifact is held to."""
    return float(np.abs(actual - reference).max()) / max(1.0, float(np.abs(reference).max()))


def check_fp32(path: Path, backend_name: str, tensor, expected, onnx_output) -> ArtifactMetadata:
    """The FP32 artifact's sidecar records torch.export and its parity; it runs in its backend
    and matches PyTorch and the ONNX graph of the same size."""
    metadata = ArtifactMetadata.read(path)
    assert metadata.input_shape == [1, 3, SIZE, SIZE] and metadata.precision == Precision.FP32
    assert (metadata.exporter, metadata.opset) == ("torch.export", None)
    assert metadata.parity.tolerance == 1e-3 and metadata.parity.worst < 1e-3
    with open_backend(path, threads=THREADS) as backend:
        assert backend.name == backend_name
        actual = backend.infer(tensor)
    assert relative_difference(actual, expected) < 1e-3
    assert relative_difference(actual, onnx_output) < 1e-3
    return metadata


def check_int8(path: Path, tensor, expected) -> ArtifactMetadata:
    """The INT8 artifact was measured by the pipeline and gated; it runs and stays in budget."""
    metadata = ArtifactMetadata.read(path)
    assert metadata.accuracy is not None and metadata.accuracy.gate.source == "default"
    assert metadata.quantization is not None
    with open_backend(path, threads=THREADS) as backend:
        actual = backend.infer(tensor)
    assert actual.shape == expected.shape and np.isfinite(actual).all()
    assert 0 < accuracy.compare(actual[0], expected[0])["abs_rel"] <= DEFAULT_MAX_ABS_REL[Precision.INT8]
    return metadata


# --- LiteRT -----------------------------------------------------------------------------------


@pytest.mark.slow
@needs_litert
def test_litert_fp32_matches_pytorch_and_onnx(model, image, calibration, tensor, expected, onnx_output, tmp_path):
    path = built_artifact("litert", Precision.FP32, model, image, calibration, tmp_path)
    metadata = check_fp32(path, "litert", tensor, expected, onnx_output)
    assert path.suffix == ".tflite" and metadata.format == "litert" and "litert-torch" in metadata.tools
    with open_backend(path) as backend, pytest.raises(Dav2Error, match="fixed-size"):
        backend.infer(np.zeros((1, 3, SIZE + 14, SIZE), np.float32))


@pytest.mark.slow
@needs_litert
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_litert_int8_is_measured_and_gated(model, image, calibration, tensor, expected, tmp_path, mode):
    path = built_artifact("litert", Precision.INT8, model, image, calibration, tmp_path, litert_int8=mode)
    metadata = check_int8(path, tensor, expected)
    assert metadata.quantization.mode == mode
    assert (metadata.calibration is not None) == (mode == "static")  # only static INT8 reads the images


# --- ExecuTorch -------------------------------------------------------------------------------


@pytest.mark.slow
@needs_executorch
def test_executorch_fp32_matches_pytorch_and_onnx(model, image, calibration, tensor, expected, onnx_output, tmp_path):
    path = built_artifact("executorch", Precision.FP32, model, image, calibration, tmp_path)
    metadata = check_fp32(path, "executorch", tensor, expected, onnx_output)
    assert path.suffix == ".pte" and metadata.format == "executorch" and "executorch" in metadata.tools


@pytest.mark.slow
@needs_executorch
def test_executorch_int8_is_measured_and_gated(model, image, calibration, tensor, expected, tmp_path):
    path = built_artifact("executorch", Precision.INT8, model, image, calibration, tmp_path)
    metadata = check_int8(path, tensor, expected)
    assert metadata.calibration is not None and metadata.calibration.count == len(calibration)


# --- Core ML ----------------------------------------------------------------------------------


@pytest.mark.slow
@needs_coreml
def test_coreml_package_is_checked_and_said_not_measured(model, image, calibration, tmp_path, capfd):
    from dav2.export.coreml import package_facts

    path = built_artifact("coreml", Precision.FP16, model, image, calibration, tmp_path)
    assert path.is_dir() and path.suffix == ".mlpackage" and path.parent == tmp_path / "out"
    facts = package_facts(path)
    metadata = ArtifactMetadata.read(path)
    assert (facts.input_name, list(facts.input_shape)) == (metadata.input_name, metadata.input_shape)
    assert facts.output_name == metadata.output_name == "depth"
    assert metadata.coreml.compute_precision == "float16" and metadata.coreml.spec_version == facts.spec_version
    assert "not run here" in metadata.coreml.run and metadata.quantization is None
    assert metadata.accuracy is None and "docs/coreml.md" in metadata.accuracy_not_measured
    assert "checked structurally only" in capfd.readouterr().err
    umask = os.umask(0)
    os.umask(umask)
    for folder in [path, *(p for p in path.rglob("*") if p.is_dir())]:  # folders stay enterable
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    with pytest.raises(Dav2Error, match="Apple devices"):
        open_backend(path)


# --- dav2-export as a user runs it ------------------------------------------------------------


@pytest.mark.slow
@needs_litert
def test_dav2_export_litert_end_to_end(vits_checkpoint, tmp_path):
    """`dav2-export --encoder vits --litert fp32 --height H --width W` prints the .tflite it wrote."""
    path = export(vits_checkpoint, tmp_path, "--encoder", "vits", "--litert", "fp32", *SIZE_56)
    assert path.suffix == ".tflite" and path.is_file() and ArtifactMetadata.read(path).parity.worst < 1e-3
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".json"]
