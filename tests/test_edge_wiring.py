"""The edge formats' wiring, without their converters: the format table's rows, dav2-export's
refusals (one `error:` line before any work), a folder artifact moved into place whole, the
stretch warning's advice for fixed-size-only formats, and dav2-bench's candidates.

None of these needs litert-torch, executorch or coremltools: they run in every environment
that has the export extra (the refusals come before a converter is imported).
"""

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from dav2.benchmarks.artifacts import cache_key, find_artifact
from dav2.benchmarks.discovery import Case, Machine, plan
from dav2.export import formats
from dav2.export.context import ExportRequest
from dav2.files import OutputError, move_into_place
from dav2.runtime.session import StretchWarning
from dav2.vocabulary import BackendName, Precision

ROWS = {row.key: row for row in formats.FORMATS}
FP32, FP16, INT8 = Precision.FP32, Precision.FP16, Precision.INT8


# --- the format table -------------------------------------------------------------------------


def test_edge_rows_name_their_artifacts_precisions_and_backends():
    litert, executorch, coreml = ROWS["litert"], ROWS["executorch"], ROWS["coreml"]
    assert (litert.suffix, litert.precisions, litert.backend) == (".tflite", (FP32, FP16, INT8), "litert")
    assert (executorch.suffix, executorch.precisions, executorch.backend) == (".pte", (FP32, INT8), "executorch")
    assert (coreml.suffix, coreml.precisions) == (".mlpackage", (FP16, FP32))
    assert not coreml.runs_here and litert.runs_here and executorch.runs_here
    assert all(row.fixed_size for row in (litert, executorch, coreml))
    # what dav2-bench asks with default options: LiteRT INT8 is dynamic (no images), ExecuTorch INT8 calibrates
    assert not litert.calibrates(INT8) and executorch.calibrates(INT8) and not ROWS["onnx"].calibrates(INT8)
    assert formats.for_backend(BackendName.LITERT) is litert and formats.for_artifact(Path("m.mlpackage")) is coreml


def test_litert_int8_mode_decides_calibration():
    from dav2.export.pipeline import requested_targets

    (dynamic,) = requested_targets(ExportRequest(litert="int8"))
    (static,) = requested_targets(ExportRequest(litert="int8", litert_int8="static"))
    assert not dynamic.needs_calibration(ExportRequest()) and static.needs_calibration(ExportRequest())


# --- dav2-export's refusals -------------------------------------------------------------------


def export_error(tmp_path: Path, *args: str) -> str:
    """dav2-export's output for a request it must refuse: exit 1, one `error:` line, nothing written."""
    from dav2.cli import export_main

    result = CliRunner().invoke(export_main, ["--encoder", "vits", "--output", str(tmp_path / "out"), *args])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    return lines[0]


@pytest.mark.parametrize("flag", [("--litert", "fp32"), ("--executorch", "fp32"), ("--coreml", "fp16")])
def test_a_dynamic_edge_request_says_to_pass_a_size(tmp_path, flag):
    assert "--height H --width W" in export_error(tmp_path, *flag)
    assert "--height H --width W" in export_error(tmp_path, *flag, "--height", "56", "--width", "56", "--dynamic")


def test_edge_requests_refuse_uint8_input_and_stray_options(tmp_path):
    size = ("--height", "56", "--width", "56")
    assert "--input uint8" in export_error(tmp_path, "--litert", "fp32", "--input", "uint8", *size)
    assert "add --litert int8" in export_error(tmp_path, "--litert", "fp32", "--litert-int8", "static", *size)
    assert "--calib-dir" in export_error(tmp_path, "--litert", "int8", "--litert-int8", "static", *size)
    assert "--calib-dir" in export_error(tmp_path, "--executorch", "int8", *size)


def test_unsupported_edge_precisions_are_click_choices():
    from dav2.cli import export_main

    result = CliRunner().invoke(export_main, ["--executorch", "fp16"])
    assert result.exit_code == 2 and "fp32" in result.output and "int8" in result.output


# --- a folder artifact moved into place -------------------------------------------------------


def package(folder: Path, marker: str) -> Path:
    """A folder shaped like a Core ML package (Manifest.json, Data/...)."""
    (folder / "Data" / "weights").mkdir(parents=True)
    (folder / "Manifest.json").write_text(marker)
    (folder / "Data" / "weights" / "weight.bin").write_text(marker)
    return folder


def test_a_folder_artifact_replaces_an_earlier_one_whole(tmp_path):
    output = package(tmp_path / "out" / "m.mlpackage", "old").parent
    (output / "m.mlpackage" / "Data" / "stale.bin").write_text("old")
    new = package(tmp_path / "scratch" / "m.mlpackage", "new")
    (placed,) = move_into_place([new], output)
    assert placed == output / "m.mlpackage" and (placed / "Manifest.json").read_text() == "new"
    assert not (placed / "Data" / "stale.bin").exists() and not new.exists()
    assert sorted(p.name for p in output.iterdir()) == ["m.mlpackage"]  # nothing left aside


def test_a_folder_artifact_never_replaces_a_users_other_folder(tmp_path):
    other = tmp_path / "out" / "m.mlpackage"
    other.mkdir(parents=True)
    (other / "notes.txt").write_text("mine")
    new = package(tmp_path / "scratch" / "m.mlpackage", "new")
    with pytest.raises(OutputError, match="not an earlier .mlpackage output"):
        move_into_place([new], other.parent)
    assert (other / "notes.txt").read_text() == "mine" and not (other / "Manifest.json").exists()


def test_publish_gives_a_folder_artifact_folder_permissions(tmp_path):
    from dav2.export.context import Built
    from dav2.export.pipeline import publish
    from dav2.metadata import ArtifactMetadata, sidecar_path

    new = package(tmp_path / "scratch" / "m.mlpackage", "new")
    os.chmod(new / "Manifest.json", 0o600)
    sidecar_path(new).write_text("{}")
    metadata = ArtifactMetadata("m.mlpackage", "coreml", "vits", "relative", FP16, False, [1, 3, 56, 56])
    placed = publish(Built(new, metadata), tmp_path / "out")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(placed.stat().st_mode) == 0o777 & ~umask  # enterable, not 0o666
    assert stat.S_IMODE((placed / "Data" / "weights").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((placed / "Manifest.json").stat().st_mode) == 0o666 & ~umask


# --- dav2-run's advice for a fixed-size-only format -------------------------------------------


def test_stretch_warning_advises_a_size_of_the_frames_shape_for_fixed_only_formats(capsys):
    StretchWarning("m.tflite", (518, 518), fixed_only=True).check((720, 1280))
    warning = capsys.readouterr().err
    assert "--height 518 --width 924" in warning and "without --height" not in warning
    StretchWarning("m.onnx", (518, 518)).check((720, 1280))
    assert "without --height/--width" in capsys.readouterr().err


# --- dav2-bench's candidates ------------------------------------------------------------------


def machine(**libraries) -> Machine:
    return Machine({"torch": "2", "onnxruntime": "1", **libraries}, [], [])


EDGE = {"ai-edge-litert": "2.3", "litert-torch": "0.10", "executorch": "1.5"}


def test_bench_plans_edge_cases_when_their_runtime_and_converter_are_installed():
    cases, skipped = plan(machine(**EDGE), ["litert", "executorch"], ["fp32", "fp16", "int8"], [56], False)
    assert [c.label for c in cases] == ["litert fp32 56", "litert fp16 56", "litert int8 56", "executorch fp32 56"]
    assert [(c.label, reason) for c, reason in skipped] == [
        (
            "litert int8 56 (full integer)",
            "litert int8 56 (full integer) is calibrated on real images: pass --images DIR",
        ),
        ("executorch int8 56", "executorch int8 is calibrated on real images: pass --images DIR"),
    ]
    cases, _ = plan(machine(**EDGE), ["litert", "executorch"], ["int8"], [56], True)
    assert [c.label for c in cases] == ["litert int8 56", "litert int8 56 (full integer)", "executorch int8 56"]


def test_bench_skips_edge_cases_without_their_packages_saying_which():
    _, skipped = plan(machine(**{"ai-edge-litert": "2.3"}), ["litert", "executorch"], ["fp32"], [56], True)
    reasons = [reason for _, reason in skipped]
    assert "litert-torch is not installed" in reasons[0] and "executorch is not installed" in reasons[1]


def key(case: Case, libraries: dict) -> str:
    return cache_key(case, "0" * 64, "vits", machine(**libraries), None)


def test_edge_cache_keys_name_their_converters(tmp_path):
    case = Case("litert", "fp32", 56)
    assert key(case, EDGE) != key(case, {**EDGE, "litert-torch": "0.11"})
    onnx = Case("onnxruntime", "fp32", 56)  # the other backends' keys do not move with edge tools
    assert key(onnx, {}) == key(onnx, EDGE)
    assert key(Case("litert", "int8", 56), EDGE) != key(Case("litert", "int8", 56, full_integer=True), EDGE)
    (tmp_path / "build.json").write_text("{}")
    (tmp_path / "m.tflite").write_bytes(b"")
    assert find_artifact(tmp_path, case) == tmp_path / "m.tflite" and find_artifact(tmp_path, onnx) is None


def test_bench_tables_name_the_recipe_beside_the_precision():
    from dav2.benchmarks.report import case_cells

    static = {"backend": "litert", "precision": "int8", "size": 56, "status": "skipped", "reason": "r"}
    assert case_cells(static)[1] == "int8"
    assert case_cells({**static, "recipe": "full integer"})[1] == "int8 (full integer)"
