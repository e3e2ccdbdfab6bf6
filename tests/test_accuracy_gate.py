"""The accuracy gate (issue 19, part 2): every FP16/INT8 export is held to a budget per
precision by default; over it the report is printed, one error line, exit 1, nothing written,
an earlier artifact of the same name left byte-identical. --max-abs-rel X overrides the
budget for every precision, --max-abs-rel off only reports.

The default is forced down with monkeypatch (the CLI runs in-process), so the refusal goes
through exactly the path an untouched default takes: no flag given."""

import dataclasses

import pytest
from click.testing import CliRunner

from dav2.cli import export_main
from dav2.export import gate
from dav2.export.gate import DEFAULT_MAX_ABS_REL, AccuracyGate
from dav2.metadata import ArtifactMetadata, GateRecord, sidecar_path
from dav2.vocabulary import Precision

pytestmark = pytest.mark.slow  # each case is an INT8 export

# ONNX Runtime dynamic INT8 at 56x56: the quickest reduced-precision artifact (no calibration)
INT8 = ("--onnx", "--int8", "--height", "56", "--width", "56")


def run_export(checkpoint, output, *args):
    return CliRunner().invoke(export_main, ["--checkpoint", str(checkpoint), "--output", str(output), *INT8, *args])


def snapshot(folder) -> dict:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_budgets_per_precision_and_their_overrides():
    assert AccuracyGate().budget(Precision.INT8) == DEFAULT_MAX_ABS_REL[Precision.INT8]
    assert AccuracyGate().budget("fp16") == DEFAULT_MAX_ABS_REL[Precision.FP16]
    assert AccuracyGate().budget(Precision.FP32) is None  # FP32 is held to parity instead
    assert AccuracyGate(max_abs_rel=0.5).budget("int8") == AccuracyGate(max_abs_rel=0.5).budget("fp16") == 0.5
    assert AccuracyGate(enabled=False, max_abs_rel=0.5).budget("int8") is None
    fp16, int8 = DEFAULT_MAX_ABS_REL[Precision.FP16], DEFAULT_MAX_ABS_REL[Precision.INT8]
    assert fp16 < int8 < 0.3  # 0.3: issue 19's broken INT8


def test_help_shows_the_defaults_and_the_off_switch():
    result = CliRunner().invoke(export_main, ["--help"])
    text = " ".join(result.output.split())
    assert result.exit_code == 0
    fp16, int8 = DEFAULT_MAX_ABS_REL[Precision.FP16], DEFAULT_MAX_ABS_REL[Precision.INT8]
    assert f"[default: fp16 {fp16:g}, int8 {int8:g}]" in text
    assert "'off' only reports" in text


def test_default_gate_refuses_prints_the_report_and_keeps_the_earlier_artifact(vits_checkpoint, tmp_path, monkeypatch):
    earlier = run_export(vits_checkpoint, tmp_path, "--max-abs-rel", "off")
    assert earlier.exit_code == 0, earlier.output
    before = snapshot(tmp_path)
    assert set(before) == {"depth_anything_v2_vits_56x56_int8.onnx", "depth_anything_v2_vits_56x56_int8.onnx.json"}

    monkeypatch.setitem(gate.DEFAULT_MAX_ABS_REL, Precision.INT8, 1e-9)
    result = run_export(vits_checkpoint, tmp_path)
    assert result.exit_code == 1
    assert "accuracy vs PyTorch FP32 (CPU) on" in result.output  # the report, printed before the refusal
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "exceeds the default INT8 budget 1e-09; nothing written" in errors[0]
    assert "Traceback" not in result.output
    assert snapshot(tmp_path) == before  # byte-identical, and no scratch folder left behind


def test_refused_export_writes_nothing_in_a_new_folder(vits_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(gate.DEFAULT_MAX_ABS_REL, Precision.INT8, 1e-9)
    output = tmp_path / "models"
    result = run_export(vits_checkpoint, output)
    assert result.exit_code == 1 and "nothing written" in result.output
    assert not output.exists() or list(output.iterdir()) == []


@pytest.mark.parametrize(
    ("option", "record"),
    [("1", {"max_abs_rel": 1.0, "source": "--max-abs-rel"}), ("off", {"max_abs_rel": None, "source": "off"})],
)
def test_override_and_off_publish_what_the_default_refuses(vits_checkpoint, tmp_path, monkeypatch, option, record):
    monkeypatch.setitem(gate.DEFAULT_MAX_ABS_REL, Precision.INT8, 1e-9)
    result = run_export(vits_checkpoint, tmp_path, "--max-abs-rel", option)
    assert result.exit_code == 0, result.output
    artifact = tmp_path / "depth_anything_v2_vits_56x56_int8.onnx"
    assert artifact.is_file() and sidecar_path(artifact).is_file()
    accuracy = ArtifactMetadata.read(artifact).accuracy
    assert dataclasses.asdict(accuracy.gate) == record and accuracy.abs_rel > 1e-9


def test_the_library_gates_by_default_and_records_the_budget(vits_checkpoint, tmp_path):
    """ExportRequest gates by default like the CLI; accuracy_gate=False measures without refusing
    (what the benchmark runner sets, so that pick judges every candidate)."""
    from dav2.export.pipeline import ExportRequest, export_artifacts

    request = ExportRequest(checkpoint=str(vits_checkpoint), output=tmp_path, onnx="int8", height=56, width=56)
    assert request.accuracy_gate is True and request.max_abs_rel is None
    artifact = export_artifacts(request)[0]
    gate_record = ArtifactMetadata.read(artifact).accuracy.gate
    assert gate_record == GateRecord(DEFAULT_MAX_ABS_REL[Precision.INT8], "default")


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "--max-abs-rel must be more than 0"), ("nan", "--max-abs-rel must be"), ("never", "neither a number")],
)
def test_bad_budgets_are_one_error(vits_checkpoint, tmp_path, value, message):
    result = run_export(vits_checkpoint, tmp_path, "--max-abs-rel", value)
    assert result.exit_code in (1, 2) and message in result.output
    assert "Traceback" not in result.output and not any(tmp_path.iterdir())
