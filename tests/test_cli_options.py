"""The commands' option groups: each group takes its own values and parses them into one record,
and the defaults and choices the help shows are the library's own constants."""

import re

import click
import pytest
from click.testing import CliRunner

from conftest import IMAGES
from dav2.batch.options import MAX_ACTORS, BatchOptions
from dav2.benchmarks.pick import QUICK
from dav2.calibration.dataset import DEFAULT_COUNT
from dav2.cli import bench_main, run_main
from dav2.cli.common import LIMIT_OPTIONS, MAX_CALIB_COUNT, OptionGroup, default_of
from dav2.cli.run import RunRequest
from dav2.errors import Dav2Error
from dav2.export import formats
from dav2.export.context import EXPORTERS, ExportRequest
from dav2.export.explicit import DEFAULT_FP32_GROUPS
from dav2.export.formats import OPTION_FLAGS
from dav2.export.gate import defaults_text
from dav2.export.onnx_int8 import ORT_MODES
from dav2.export.tensorrt import DEFAULT_PRESET, PROFILE_PRESETS
from dav2.metadata import DEFAULT_WORKSPACE_GB
from dav2.runtime.session import PREPROCESS_CHOICES


def help_text(command, *args) -> str:
    result = CliRunner().invoke(command, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_a_group_takes_its_own_values_and_parses_them():
    group = OptionGroup(
        click.option("--first", type=int, default=1),
        OptionGroup(click.option("--second-one", "second", default="b")),  # groups nest
        parser=lambda first, second: (first, second),
    )
    assert group.names == ("first", "second")
    values = {"first": 3, "second": "x", "other": True}
    assert group.parse(values) == (3, "x")
    assert values == {"other": True}  # what is left belongs to the other groups

    @click.command()
    @group
    def command(**values):
        click.echo(sorted(values))

    assert CliRunner().invoke(command, []).output.strip() == "['first', 'second']"


def test_limits_are_checked_when_parsed():
    limits = LIMIT_OPTIONS.parse({"max_megapixels": 2.0, "max_aspect": 3.0, "max_tokens": 500})
    assert limits.images.max_pixels == 2_000_000 and limits.images.max_aspect == 3.0 and limits.max_tokens == 500
    with pytest.raises(Dav2Error, match="--max-megapixels"):
        LIMIT_OPTIONS.parse({"max_megapixels": float("nan"), "max_aspect": 3.0, "max_tokens": 500})


def test_dav2_run_parses_every_option_into_its_request():
    """Every value the command receives is taken by a group (none left over, none missing)."""
    context = run_main.make_context("dav2-run", ["--model", "m.onnx", "--camera-size", "640x480", "--range", "0,5"])
    values = dict(context.params)
    request = RunRequest.parse(values)
    assert values == {}
    assert request.source.camera_size == (640, 480) and request.options.color_range == (0.0, 5.0)
    assert request.backend.model == "m.onnx" and request.keeps_nothing


def test_defaults_and_choices_come_from_the_library():
    pick = help_text(bench_main, "pick")
    assert f"[default: dav2-export's default for each candidate's precision: {defaults_text()}, fp32 none]" in pick
    assert f"INT8 calibration images (1-{MAX_CALIB_COUNT}). [default: {DEFAULT_COUNT}]" in pick
    assert f"{QUICK.seconds:g} timed second, {QUICK.warmup} warm-up run" in pick
    run = help_text(run_main)
    assert f"--preprocess [{'|'.join(PREPROCESS_CHOICES)}]" in run
    assert default_of(BatchOptions, "actors") == BatchOptions.actors == 1
    from dav2.cli import batch_main

    assert f"(1 to {MAX_ACTORS})" in help_text(batch_main)


def test_dav2_export_parses_every_option_into_its_request():
    from dav2.cli import export_main
    from dav2.cli.export import parse_request

    args = ["--openvino", "int8", "--keep-head", "--int8-float", "fc2", "--calib-dir", str(IMAGES)]
    context = export_main.make_context("dav2-export", [*args, "--max-abs-rel", "off", "--height", "520"])
    values = dict(context.params)
    values.pop("from_onnx")
    request = parse_request(values)
    assert values == {}  # every value was taken by a group
    assert request.openvino == "int8" and request.onnx is None and request.trt is None
    assert request.int8_float == ["fc2", "head"]  # --keep-head is --int8-float head
    assert request.accuracy_gate is False and request.max_abs_rel is None and request.height == 518


def test_dav2_export_defaults_and_choices_come_from_the_library():
    from dav2.cli import export_main

    text = help_text(export_main)
    assert f"--profile [{'|'.join(PROFILE_PRESETS)}]" in text and f"[default: {DEFAULT_PRESET}]" in text
    assert f"--exporter [{'|'.join(EXPORTERS)}]" in text and f"--ort-int8 [{'|'.join(ORT_MODES)}]" in text
    assert f"[default: {DEFAULT_WORKSPACE_GB}" in text and f"[default: {','.join(DEFAULT_FP32_GROUPS)}]" in text
    assert f"Calibration images to use. [default: {DEFAULT_COUNT}" in text
    for row in formats.FORMATS:  # one flag per row, its precisions the choices
        assert row.flag in text
    # which format an option applies to is the table's answer, shown in the help
    assert f"[for {formats.takers('keep_fp32')}]" in text and "[for --openvino int8]" in text


@pytest.mark.parametrize("option", sorted(OPTION_FLAGS))
def test_an_option_for_no_requested_format_is_refused_from_the_table(option):
    """Each option of the table: refused with only formats that do not take it, accepted with one that does."""
    given = {"input": "uint8", "accuracy_control": True, "ort_int8": "static", "workspace_gb": 2.0}
    value = given.get(option, ["head"] if option in ("int8_float", "keep_fp32") else "x")
    taking = [(row, p) for row in formats.FORMATS for p in row.precisions if row.takes(option, p)]
    refusing = [(row, p) for row in formats.FORMATS for p in row.precisions if not row.takes(option, p)]
    assert taking and refusing
    for row, precision in refusing:
        request = ExportRequest(**{row.key: precision.value, option: value})
        with pytest.raises(Dav2Error, match=re.escape(OPTION_FLAGS[option])):
            formats.check_options(request)
    row, precision = taking[0]
    formats.check_options(ExportRequest(**{row.key: precision.value, option: value}))


def test_two_precisions_of_one_format_are_refused():
    from dav2.cli import export_main

    result = CliRunner().invoke(export_main, ["--fp16", "--int8"])
    assert result.exit_code == 1 and result.output.strip().splitlines()[-1] == (
        "error: --fp16 and --int8 are two ONNX precisions; choose one"
    )


def test_the_targets_come_from_the_table_in_its_order():
    from dav2.export.pipeline import requested_targets

    targets = requested_targets(ExportRequest(trt="fp16", onnx="int8", ort_int8="qdq", openvino="fp32"))
    assert [(t.format.key, t.precision) for t in targets] == [("onnx", "int8"), ("openvino", "fp32"), ("trt", "fp16")]
    assert targets[0].mode == "qdq" and targets[0].needs_calibration(ExportRequest())
    assert [(t.format.key, t.precision) for t in requested_targets(ExportRequest())] == [("onnx", "fp32")]
