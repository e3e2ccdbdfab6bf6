"""What every dav2 command shares: error handling, option groups declared once, small parsers.

A command declares its options in groups (`OptionGroup`, after Polygraphy's argument groups):
each group is one decorator for a set of related options and one parser that turns their values
into a typed record (`InputLimits` here; RunOptions, BatchOptions, BenchSettings in the
commands), so a command function only parses, calls the library and prints. Defaults and
choices come from the library's own constants and signatures (`default_of`), never restated.

Errors a user can cause arrive as Dav2Error and end in one `error: ...` line on standard
error with exit status 1 (click's own usage errors keep click's convention: exit 2 with a
usage line). Standard output is kept for results and the --json line.
"""

import functools
import inspect
import math
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from dav2 import optional
from dav2.batch.options import MAX_THREADS
from dav2.calibration.dataset import DEFAULT_COUNT, DEFAULT_HOLDOUT, DEFAULT_SEED, DEFAULT_VALIDATION
from dav2.cli.startup import end_quiet_start
from dav2.errors import Dav2Error, one_line
from dav2.media import DEFAULT_MAX_ASPECT, DEFAULT_MAX_MEGAPIXELS, ImageLimits
from dav2.processing import DEFAULT_MAX_TOKENS, check_max_tokens
from dav2.vocabulary import DEFAULT_INPUT_SIZE, ENCODERS, ModelKind

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


class Terminated(KeyboardInterrupt):
    """SIGTERM (docker stop, systemd), raised like Ctrl-C's KeyboardInterrupt so that the same
    clean-up runs: temporary files removed, earlier outputs kept, the run's policy on partial
    results applied."""

    signal_name = "SIGTERM"  # what a run that keeps partial results records (KeyboardInterrupt: SIGINT)


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def user_errors(command: Callable) -> Callable:
    """Turn Dav2Error into one 'error: ...' line and exit 1, instead of a traceback.

    The message is printed as exactly one line (dav2.errors.one_line escapes a newline or an
    escape sequence that came in with a user's file name). Ctrl-C and SIGTERM end the command
    the same way: clean-up runs, one line says the run was interrupted, exit status 130 (SIGINT)
    or 143 (SIGTERM), as shells report signals.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        previous = None
        end_quiet_start()
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            return command(*args, **kwargs)
        except Dav2Error as exc:
            click.echo(f"error: {one_line(str(exc))}", err=True)  # a newline in a name cannot split it
            sys.exit(1)
        except Terminated:
            click.echo("error: terminated (SIGTERM); nothing half-written was kept", err=True)
            sys.exit(143)
        except KeyboardInterrupt:
            click.echo("error: interrupted (Ctrl-C); nothing half-written was kept", err=True)
            sys.exit(130)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper


def require_export_tools(command: str) -> None:
    """Commands that build artifacts need PyTorch and onnx: one line naming the extra if not."""
    optional.require("torch", command)
    optional.require("onnx", command)


class OptionGroup:
    """Related options declared once, with the parser that turns their values into one typed
    record: Polygraphy's argument groups, for click.

    Used as a decorator, the group adds its options to a command in the order written (a group
    may hold groups). `parse(values, **context)` takes the group's own values out of the
    command's keyword arguments and returns `parser(**those, **context)`; the parser checks them
    (a bad value is one `error:` line, so it runs inside `user_errors`, not as a click callback)
    and builds the record. A command function then reads: parse each group, call the library,
    print; its defaults and choices live with the options, taken from the library's constants.
    """

    def __init__(self, *options: Callable, parser: Callable[..., Any] | None = None):
        self.options = options
        self.parser = parser
        self.names = declared_names(options)

    def __call__(self, function: Callable) -> Callable:
        for option in reversed(self.options):
            function = option(function)
        return function

    def take(self, values: dict[str, Any]) -> dict[str, Any]:
        """This group's values, removed from `values` (a command's keyword arguments)."""
        return {name: values.pop(name) for name in self.names}

    def parse(self, values: dict[str, Any], **context: Any) -> Any:
        """The group's record, from its values in `values` (removed) and `context` (parsed before)."""
        if self.parser is None:
            raise TypeError("this option group has no parser; use take()")
        return self.parser(**self.take(values), **context)


def declared_names(options: tuple[Callable, ...]) -> tuple[str, ...]:
    """The parameter names `options` give a command, in order (click keeps the parameters it
    declares on the function it decorates, until the command is made)."""

    def probe() -> None: ...

    for option in reversed(options):
        probe = option(probe)
    return tuple(param.name for param in reversed(getattr(probe, "__click_params__", [])))


def default_of(owner: Callable, name: str) -> Any:
    """The default of parameter `name` of a function or a dataclass: an option's default is the
    library's own, written once where the library declares it."""
    return inspect.signature(owner).parameters[name].default


# --- the option groups ------------------------------------------------------------------------

ENCODER_HELP = "ViT size: Small (24.8M parameters, Apache-2.0), Base, Large, Giant (CC-BY-NC-4.0)."
CHECKPOINT_HELP = (
    "Local .pth/.safetensors file, a fine-tune ({'model'}/{'state_dict'}, module.), a transformers model folder "
    "or a Hugging Face repo id (…-hf). Default: $DAV2_CHECKPOINT, else download the official file from Hugging Face."
)
KIND_HELP = "relative: disparity (larger = nearer); metric: metres."


def encoder_option(default: str | None = "vits", note: str = "") -> Callable:
    """--encoder; dav2-export defaults it to None (the checkpoint decides), other commands to vits."""
    return click.option("--encoder", type=click.Choice(ENCODERS), default=default, help=ENCODER_HELP + note)


def kind_option(default: str | None = ModelKind.RELATIVE.value, note: str = "") -> Callable:
    """--kind; dav2-export defaults it to None (a transformers config.json decides), others to relative."""
    return click.option("--kind", type=click.Choice(ModelKind.values()), default=default, help=KIND_HELP + note)


ENCODER_OPTION = encoder_option()
# str, not click.Path: a transformers model folder or a hub repo id is a checkpoint too
CHECKPOINT_OPTION = click.option("--checkpoint", type=str, default=None, help=CHECKPOINT_HELP)
ENCODER_AND_CHECKPOINT = OptionGroup(ENCODER_OPTION, CHECKPOINT_OPTION)

MODEL_OPTION = click.option(
    "--model",
    required=True,
    type=click.Path(),
    help="Artifact to run: .onnx (ONNX Runtime), .xml (OpenVINO), .engine (TensorRT) or .pth (PyTorch reference).",
)
INPUT_SIZE_OPTION = click.option(
    "--input-size",
    type=int,
    default=None,
    help="Short side fed to dynamic models, as upstream's input_size. "
    f"[default: the artifact's own, else {DEFAULT_INPUT_SIZE}]",
)
THREADS_OPTION = click.option(
    "--threads", type=int, default=0, help=f"Inference threads, 0 to {MAX_THREADS} (0: the library's default)."
)

MAX_CALIB_COUNT = 10_000  # calibration images one INT8 build may take
CALIBRATION = OptionGroup(
    click.option(
        "--calib-dir",
        type=click.Path(exists=True),
        default=None,
        help="INT8 calibration: a folder of real images (searched recursively) or a video.",
    ),
    click.option(
        "--calib-count",
        type=click.IntRange(1, MAX_CALIB_COUNT),
        default=DEFAULT_COUNT,
        help="Calibration images to use.",
    ),
    click.option("--calib-seed", type=int, default=DEFAULT_SEED, help="Seed for shuffling the calibration images."),
    click.option(
        "--holdout",
        type=click.IntRange(0, 1000),
        default=DEFAULT_HOLDOUT,
        help="Images of --calib-dir kept out of calibration for the accuracy report.",
    ),
    click.option(
        "--validation-count",
        "validation",
        type=click.IntRange(1, 256),
        default=DEFAULT_VALIDATION,
        show_default=True,
        help="With --accuracy-control: images of --calib-dir (apart from the calibration and held-out ones) "
        "that NNCF's accuracy control measures AbsRel on while it chooses the layers to keep in float.",
    ),
)


class BudgetType(click.ParamType):
    """--max-abs-rel: a number, or `off` (gate.OFF); the number is checked by the command
    (check_number), so a bad one is one `error:` line like every other number."""

    name = "NUMBER|off"

    def convert(self, value, param, ctx):
        from dav2.export.gate import OFF

        if isinstance(value, float) or str(value).strip().lower() == OFF:
            return value if isinstance(value, float) else OFF
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is neither a number nor '{OFF}'", param, ctx)


def _max_abs_rel_help() -> str:
    from dav2.export.gate import defaults_text

    return (
        "Accuracy gate: the AbsRel vs PyTorch FP32 (held-out images) every FP16/INT8 artifact must meet; over it "
        "the export fails and writes nothing (the report is printed either way). A number applies to every "
        f"precision; 'off' only reports. [default: {defaults_text()}]"
    )


MAX_ABS_REL_OPTION = click.option(
    "--max-abs-rel", type=BudgetType(), default=None, show_default=False, help=_max_abs_rel_help()
)

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Also print the result as one JSON line (the last).")


# bounds of the image limits: far past any camera or photo, so only a typo meets them
MAX_MEGAPIXELS = 100_000
MAX_ASPECT = 100_000


@dataclass(frozen=True)
class InputLimits:
    """--max-megapixels, --max-aspect and --max-tokens: what one image or frame may cost."""

    images: ImageLimits
    max_tokens: int


def parse_limits(max_megapixels: float, max_aspect: float, max_tokens: int) -> InputLimits:
    """The limits, each checked (nan and inf refused) before anything opens."""
    check_number(max_megapixels, "--max-megapixels", 0, MAX_MEGAPIXELS, low_open=True)
    check_number(max_aspect, "--max-aspect", 1, MAX_ASPECT)
    check_max_tokens(max_tokens)  # at most MAX_TOKENS_CEILING: attention memory grows with tokens²
    return InputLimits(ImageLimits(max_pixels=int(max_megapixels * 1_000_000), max_aspect=max_aspect), max_tokens)


LIMIT_OPTIONS = OptionGroup(
    click.option(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_MEGAPIXELS,
        help="Refuse images and frames larger than this (checked from the file header before decoding).",
    ),
    click.option(
        "--max-aspect",
        type=float,
        default=DEFAULT_MAX_ASPECT,
        help="Refuse images whose long side is more than this many times the short side.",
    ),
    click.option(
        "--max-tokens",
        type=int,
        default=DEFAULT_MAX_TOKENS,
        help="Refuse network inputs of more than this many 14x14 patches (dynamic models; memory grows with its "
        "square).",
    ),
    parser=parse_limits,
)


# --- parsers ---------------------------------------------------------------------------------


def parse_pair(text: str | None, separator: str, kind: type, option: str):
    """'1280x720' -> (1280, 720); '0,8' -> (0.0, 8.0); None stays None."""
    if text is None:
        return None
    parts = text.lower().split(separator)
    try:
        if len(parts) != 2:
            raise ValueError
        return kind(parts[0]), kind(parts[1])
    except ValueError:
        raise Dav2Error(f"{option} expects two numbers separated by '{separator}', not {text!r}") from None


def check_number(
    value: float | int | None,
    option: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
) -> float | int | None:
    """`value` itself when it is finite and within [low, high] ((low, high] with low_open);
    else a Dav2Error naming the option and the range, so a bad number is one line and exit 1.
    None (an option not given) passes."""
    if value is None:
        return None
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and value > high
    if (isinstance(value, float) and not math.isfinite(value)) or below or above:
        raise Dav2Error(f"{option} must be {_range_text(low, high, low_open)}, not {value}")
    return value


def _range_text(low: float | None, high: float | None, low_open: bool) -> str:
    if low is not None and high is not None:
        return f"{'more than' if low_open else 'from'} {low:g} {'and at most' if low_open else 'to'} {high:g}"
    if low is not None:
        return f"{'more than' if low_open else 'at least'} {low:g}"
    if high is not None:
        return f"at most {high:g}"
    return "a finite number"


def csv_option(kind: type, choices: tuple[str, ...] | None = None) -> Callable:
    """A click callback: 'a,b,c' -> [kind(a), kind(b), kind(c)], checked against `choices`."""

    def parse(ctx, param, value):
        items = [v.strip() for v in value.split(",") if v.strip()]
        if choices:
            bad = [v for v in items if v not in choices]
            if bad:
                raise click.BadParameter(f"{', '.join(bad)} (choose from {', '.join(choices)})")
        try:
            return [kind(v) for v in items]
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc

    return parse
