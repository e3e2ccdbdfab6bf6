"""ONNX Runtime INT8: the dynamic recipe (default) and static QDQ from the calibration set.

Thresholds from measurement on vits with the seeded weights (benchmarks/results/amd-epyc-2-cores-vits.md): dynamic
AbsRel 0.004-0.006, δ1 0.999; static QDQ (MatMul, per-channel) AbsRel 0.023.
"""

import onnx
import pytest
from click.testing import CliRunner

from conftest import IMAGES, export
from dav2.cli import run_main
from dav2.metadata import ArtifactMetadata

pytestmark = pytest.mark.slow  # INT8 exports with calibration

SHAPE = ("--height", "266", "--width", "364")


def op_types(path):
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_dynamic_int8_is_accurate_and_needs_no_images(vits_checkpoint, tmp_path):
    artifact = export(vits_checkpoint, tmp_path, "--onnx", "--int8", *SHAPE)
    assert artifact.name == "depth_anything_v2_vits_266x364_int8.onnx"
    meta = ArtifactMetadata.read(artifact).to_dict()
    assert meta["precision"] == "int8" and meta["calibration"] is None
    assert meta["quantization"]["mode"] == "dynamic"
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & op_types(artifact)
    assert meta["accuracy"]["abs_rel"] <= 0.02 and meta["accuracy"]["delta1"] >= 0.98
    out = tmp_path / "d.png"
    result = CliRunner().invoke(
        run_main, ["--model", str(artifact), "--source", str(IMAGES / "demo02.jpg"), "--save", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0


def test_static_int8_records_its_calibration(vits_checkpoint, tmp_path):
    args = ("--onnx", "--int8", "--ort-int8", "static", "--calib-dir", str(IMAGES), "--calib-count", "4")
    artifact = export(vits_checkpoint, tmp_path, *args, "--holdout", "2", *SHAPE)
    meta = ArtifactMetadata.read(artifact).to_dict()
    assert meta["quantization"]["mode"] == "static"
    assert meta["calibration"]["count"] == 4 and len(meta["calibration"]["files"]) == 4
    assert "QuantizeLinear" in op_types(artifact) and "DequantizeLinear" in op_types(artifact)
    assert meta["accuracy"]["images"] == 2
    assert meta["accuracy"]["abs_rel"] <= 0.08 and meta["accuracy"]["delta1"] >= 0.95


def test_fp16_and_int8_together_is_an_error(vits_checkpoint, tmp_path, monkeypatch):
    from dav2.cli import export_main

    work = tmp_path / "work"
    out = tmp_path / "out"
    work.mkdir()
    monkeypatch.chdir(work)  # a mistake must not leave anything in the working directory either
    result = CliRunner().invoke(
        export_main, ["--checkpoint", str(vits_checkpoint), "--output", str(out), "--fp16", "--int8"]
    )
    assert result.exit_code == 1 and "choose one" in result.output
    assert "Traceback" not in result.output
    assert list(work.iterdir()) == [] and not out.exists()
