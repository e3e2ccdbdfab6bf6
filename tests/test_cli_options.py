"""The commands' option groups: each group takes its own values and parses them into one record,
and the defaults and choices the help shows are the library's own constants."""

import click
import pytest
from click.testing import CliRunner

from dav2.batch.options import MAX_ACTORS, BatchOptions
from dav2.benchmarks.pick import QUICK
from dav2.calibration.dataset import DEFAULT_COUNT
from dav2.cli import bench_main, run_main
from dav2.cli.common import LIMIT_OPTIONS, MAX_CALIB_COUNT, OptionGroup, default_of
from dav2.cli.run import RunRequest
from dav2.errors import Dav2Error
from dav2.export.gate import defaults_text
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
