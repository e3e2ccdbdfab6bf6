"""The typed sidecar: one per artifact file, validated on load, one clear error when wrong."""

import json
import re

import pytest

from dav2.errors import Dav2Error
from dav2.metadata import (
    RECORDS,
    SCHEMA_VERSION,
    AccuracyError,
    AccuracyReport,
    ArtifactMetadata,
    GateRecord,
    OpenVinoRecord,
    ParityError,
    ParityReport,
    TensorRTRecord,
    sidecar_path,
)
from dav2.vocabulary import ArtifactFormat, ModelKind, Precision


def record(name: str = "m.onnx", **changes) -> ArtifactMetadata:
    values = dict(
        artifact=name,
        format=ArtifactFormat.ONNX,
        encoder="vits",
        kind=ModelKind.RELATIVE,
        precision=Precision.FP32,
        dynamic=False,
        input_shape=[1, 3, 518, 784],
    )
    values.update(changes)
    return ArtifactMetadata(**values)


def test_sidecar_is_named_after_the_full_file_name():
    assert sidecar_path("models/m.onnx").name == "m.onnx.json"
    assert sidecar_path("models/m.xml").name == "m.xml.json"
    # the same stem in two formats: two sidecars
    assert sidecar_path("m.onnx") != sidecar_path("m.xml") != sidecar_path("m.engine")


def test_round_trip_keeps_every_field(tmp_path):
    artifact = tmp_path / "m.engine"
    profile = {"min": [1, 3, 196, 196], "opt": [1, 3, 518, 518], "max": [1, 3, 1036, 1036]}
    written = record(
        "m.engine",
        format=ArtifactFormat.TENSORRT,
        kind=ModelKind.METRIC,
        max_depth=20.0,
        dynamic=True,
        input_shape=None,
        tensorrt=TensorRTRecord("10.3.0", "RTX 4090", "8.9", profile),
        accuracy=AccuracyReport(0.001, 0.99, 0.5, 2, "PyTorch FP32 (CPU)", gate=GateRecord(0.03, "default")),
    )
    written.write(artifact)
    artifact.write_bytes(b"engine")
    read = ArtifactMetadata.read(artifact)
    assert read == written
    assert read.tensorrt.profile["max"] == [1, 3, 1036, 1036]
    assert read.fixed_hw is None and read.kind == "metric"
    on_disk = json.loads(sidecar_path(artifact).read_text())
    assert on_disk["schema"] == SCHEMA_VERSION and on_disk["output"].startswith("metres")


def test_static_and_dynamic_shapes():
    assert record().fixed_hw == (518, 784) and record().shape_label == "518x784"
    dynamic = record(dynamic=True, input_shape=None, traced_hw=[364, 364])
    assert dynamic.fixed_hw is None and dynamic.default_input_size == 364


def test_two_formats_in_one_folder_keep_their_own_facts(tmp_path):
    record("m.onnx").write(tmp_path / "m.onnx")
    ov = record("m.xml", format=ArtifactFormat.OPENVINO, openvino=OpenVinoRecord("f32"))
    ov.write(tmp_path / "m.xml")
    assert ArtifactMetadata.read(tmp_path / "m.onnx").format == "onnx"
    assert ArtifactMetadata.read(tmp_path / "m.xml").openvino.inference_precision == "f32"


def test_a_missing_sidecar_is_none(tmp_path):
    assert ArtifactMetadata.read(tmp_path / "m.onnx") is None


def valid_dict() -> dict:
    return record().to_dict()


TRT = {"version": "10.3", "gpu": "RTX 4090", "compute_capability": "8.9", "profile": {"max": [1, 3, 518, 518]}}


def test_every_field_of_the_records_is_type_checked():
    """A field added to a record without a rule the check knows fails here, not on a user's sidecar."""
    from dav2.metadata import _check_types

    for kind in (ArtifactMetadata, *RECORDS.values(), GateRecord):
        _check_types({}, kind)  # get_type_hints resolves; nothing to check
    _check_types(valid_dict(), ArtifactMetadata)
    _check_types({**TRT, "cuda_driver": None, "workspace_gb": 4, "strongly_typed": True}, TensorRTRecord)


def test_mean_and_std_are_no_longer_written_but_older_sidecars_with_imagenets_still_read():
    written = valid_dict()
    assert "mean" not in written and "std" not in written
    older = {**written, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert ArtifactMetadata.from_json(json.dumps(older)) == record()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: [d], "expected a JSON object, found list"),
        (lambda d: {**d, "schema": 1}, "schema version 1"),
        (lambda d: {k: v for k, v in d.items() if k != "kind"}, "missing field 'kind'"),
        (lambda d: {**d, "format": "caffe"}, "'caffe' is not a valid ArtifactFormat"),
        (lambda d: {**d, "encoder": "vitx"}, "unknown encoder 'vitx'"),
        (lambda d: {**d, "precision": "fp8"}, "'fp8' is not a valid Precision"),
        (lambda d: {**d, "input_shape": [1, 3, 100000, 518]}, "outside 1..7168"),
        (lambda d: {**d, "input_shape": [1, 3, 500, 518]}, "multiples of 14"),
        (lambda d: {**d, "input_shape": [1, 1, 518, 518]}, "3 colour channels"),
        (lambda d: {**d, "input_shape": "518x518"}, "list of 4 whole numbers"),
        (lambda d: {**d, "dynamic": "yes"}, "'dynamic' must be true or false"),
        (lambda d: {**d, "kind": "metric", "max_depth": None}, "a metric model needs max_depth"),
        (lambda d: {**d, "kind": "metric", "max_depth": -5}, "'max_depth' must be a positive number"),
        (lambda d: {**d, "tensorrt": {"version": "10.3"}}, "missing field 'tensorrt.gpu'"),
        # every field's type, named (issue 21: these were accepted)
        (lambda d: {**d, "mean": ["a", "b", "c"]}, "'mean' must be a list of three numbers"),
        (lambda d: {**d, "weights_file": 42}, "'weights_file' must be text or null, not 42"),
        (lambda d: {**d, "opset": "seventeen"}, "'opset' must be a whole number or null, not 'seventeen'"),
        (lambda d: {**d, "opset": True}, "'opset' must be a whole number or null"),
        (lambda d: {**d, "accuracy": "garbage"}, "'accuracy' must be an object or null, not 'garbage'"),
        (lambda d: {**d, "tools": {"onnx": 1}}, "'tools' must be an object"),
        (lambda d: {**d, "dynamic_range": {"min": "28"}}, "'dynamic_range' must be an object or null"),
        (lambda d: {**d, "input_name": None}, "'input_name' must be text"),
        (lambda d: {**d, "openvino": {"keep_head": "no"}}, "'openvino.keep_head' must be true or false or null"),
        (lambda d: {**d, "tensorrt": {**TRT, "workspace_gb": "4"}}, "'tensorrt.workspace_gb' must be a number"),
        (lambda d: {**d, "tensorrt": {**TRT, "profile": {"max": "big"}}}, "'tensorrt.profile' must be an object"),
        (lambda d: {**d, "openvino": "f32"}, "'openvino' must be an object or null"),
        # normalisation is not configurable: ImageNet's values (older sidecars) or nothing
        (lambda d: {**d, "mean": [0.5, 0.5, 0.5]}, "'mean' [0.5, 0.5, 0.5] is not ImageNet's"),
        (lambda d: {**d, "std": [0.229, 0.224]}, "'std' must be a list of three numbers"),
    ],
)
def test_bad_sidecars_are_one_clear_error(change, message):
    with pytest.raises(Dav2Error, match="not valid dav2 metadata") as caught:
        ArtifactMetadata.from_json(json.dumps(change(valid_dict())), "m.onnx.json")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_invalid_json_and_a_sidecar_of_another_artifact(tmp_path):
    with pytest.raises(Dav2Error, match="not valid JSON"):
        ArtifactMetadata.from_json("{", "m.onnx.json")
    record("other.onnx").write(tmp_path / "other.onnx")
    sidecar_path(tmp_path / "other.onnx").rename(sidecar_path(tmp_path / "m.onnx"))
    with pytest.raises(Dav2Error, match="describes other.onnx, not m.onnx"):
        ArtifactMetadata.read(tmp_path / "m.onnx")


# what dav2 wrote before the four records were typed (schema 2): each shape it had
V2_RECORDS = {
    "parity": {
        "max_abs_diff_relative": {"518x518": 1e-6},
        "tolerance": 1e-3,
        "against": "PyTorch FP32 (CPU)",
        "uint8_input": {"max_abs_diff_relative": 2e-6, "tolerance": 1e-3, "against": "m.onnx"},
    },
    "accuracy": {
        "abs_rel": 0.01, "delta1": 0.99, "max_abs_diff": 0.2, "images": 1, "against": "PyTorch FP32 (CPU)",
        "alignment": "after scale-and-shift alignment", "held_out": ["a.jpg"],
        "gate": {"max_abs_rel": 0.1, "source": "default"},
    },
    "calibration": {
        "source": "photos", "kind": "folder", "count": 2, "seed": 0, "input_hw": [518, 518], "files": ["b.jpg"],
        "held_out": ["a.jpg"], "validation": [], "sha256": "0" * 64,
    },
    "quantization": {
        "tool": "nncf quantize_with_accuracy_control", "mode": "int8-mixed", "max_abs_rel": 0.05,
        "validation_images": 2, "validation_abs_rel": 0.01, "int8_ops": 3, "float_ops": ["x"], "seconds": 1.5,
        "why_float": "...", "float_groups": ["head"], "float_nodes": [],
    },
}  # fmt: skip
V2_RECIPES = [
    {"tool": "onnxruntime.quantization", "mode": "dynamic", "ops": ["MatMul"]},
    {"tool": "nncf quantize", "preset": "transformer", "float_groups": ["head"], "float_nodes": ["n"]},
    {"tool": "nvidia-modelopt AutoCast", "mode": "autocast-fp16", "kept_fp32": ["layernorm"], "op_types": ["X"],
     "excluded_nodes": ["/a"], "high_precision": "fp32"},
]  # fmt: skip


def test_a_schema_2_sidecar_reads_into_the_typed_records():
    meta = ArtifactMetadata.from_json(json.dumps({**valid_dict(), "schema": 2, **V2_RECORDS}))
    assert meta.parity == ParityReport({"518x518": 1e-6}, 1e-3, "PyTorch FP32 (CPU)")
    assert meta.input_parity.worst == 2e-6 and meta.input_parity.against == "m.onnx"
    assert meta.accuracy.inputs == ["a.jpg"] and meta.accuracy.gate == GateRecord(0.1, "default")
    assert meta.calibration.holdout == ["a.jpg"] and meta.calibration.files == ["b.jpg"]
    assert meta.quantization.control.int8_ops == 3 and meta.quantization.float_groups == ["head"]
    recipes = [
        ArtifactMetadata.from_json(json.dumps({**valid_dict(), "schema": 2, "quantization": r})).quantization
        for r in V2_RECIPES
    ]
    assert [r.mode for r in recipes] == ["dynamic", "int8", "autocast-fp16"]
    assert recipes[0].op_types == ["MatMul"] and recipes[2].float_groups == ["layernorm"]
    assert recipes[2].float_nodes == ["/a"] and recipes[1].preset == "transformer"
    # written again, it is a schema-3 sidecar that reads back the same
    assert ArtifactMetadata.from_json(json.dumps(meta.to_dict())) == meta


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: {**d, "accuracy": "garbage"}, "'accuracy' must be an object or null"),
        (lambda d: {**d, "parity": {"tolerance": 1e-3, "against": "x"}}, "missing field 'parity.max_abs_diff_"),
        (lambda d: {**d, "parity": {**V2_RECORDS["parity"], "tolerance": "tiny"}}, "'parity.tolerance' must be a"),
        (lambda d: {**d, "quantization": {"tool": "t", "mode": "m", "control": {**V2_RECORDS["quantization"],
         "int8_ops": "3"}}}, "'quantization.control.int8_ops' must be a whole number"),
        (lambda d: {**d, "calibration": {**V2_RECORDS["calibration"], "files": [1]}}, "'calibration.files' must be"),
        (lambda d: {**d, "accuracy": {**V2_RECORDS["accuracy"], "gate": {"source": 3}}}, "accuracy.gate"),
    ],
)  # fmt: skip
def test_the_typed_records_refuse_wrong_types(change, message):
    with pytest.raises(Dav2Error, match=re.escape(message)):
        ArtifactMetadata.from_json(json.dumps(change(valid_dict())), "m.onnx.json")


def test_parity_and_accuracy_reports_validate_with_typed_errors():
    report = ParityReport({"518x518": 2e-3, "364x364": 1e-4}, 1e-3, "PyTorch FP32 (CPU)")
    with pytest.raises(
        ParityError, match=r"^the graph differs from PyTorch FP32 \(CPU\) by 2.00e-03 \(tolerance 1e-03\)"
    ):
        report.validate("the graph")
    assert ParityReport({"a": 1e-4}, 1e-3, "x").validate("g").worst == 1e-4
    with pytest.raises(ParityError):
        ParityReport({"a": float("nan")}, 1e-3, "x").validate("g")
    accuracy = AccuracyReport(0.2, 0.9, 1.0, 1, "x")
    with pytest.raises(AccuracyError, match="AbsRel 0.2000 exceeds --max-abs-rel 0.1; nothing written"):
        accuracy.validate(GateRecord(0.1, "--max-abs-rel"), "try FP16")
    assert accuracy.validate(GateRecord(None, "off"), "").gate.source == "off"  # off: recorded, never refused
