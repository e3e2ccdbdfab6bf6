"""dav2-calibrate: a metric scale fitted once and stored in a derived artifact."""

import dataclasses
import json
from pathlib import Path

import click

from dav2 import console
from dav2.cli.common import CONTEXT, INPUT_SIZE_OPTION, JSON_OPTION, OptionGroup, check_number, default_of, user_errors
from dav2.evaluation.calibrate import Request, Result, calibrate
from dav2.evaluation.groundtruth import FORMATS as DEPTH_FORMATS
from dav2.geometry.anchors import WARN_MEDIAN_REL


def parse_request(
    model: str, output: str, anchors: tuple, rgbd: str | None, depth_format: str, intrinsics: str | None,
    min_depth: float, max_depth: float, input_size: int | None,
) -> Request:  # fmt: skip
    """The options as the library's `Request` (which checks that exactly one of --anchors and --rgbd
    is given and that the depth range is ordered)."""
    from dav2.geometry.intrinsics import parse_intrinsics

    check_number(min_depth, "--min-depth", 0, MAX_METRES, low_open=True)
    check_number(max_depth, "--max-depth", 0, MAX_METRES, low_open=True)
    return Request(
        model=Path(model),
        output=Path(output),
        anchors=tuple((Path(image), Path(csv)) for image, csv in anchors),
        rgbd=Path(rgbd) if rgbd is not None else None,
        depth_format=depth_format,
        intrinsics=parse_intrinsics(intrinsics) if intrinsics is not None else None,
        input_size=input_size,
        min_depth=min_depth,
        max_depth=max_depth,
    )


MAX_METRES = 1e5
REQUEST_OPTIONS = OptionGroup(
    click.option("--model", required=True, type=click.Path(dir_okay=False), help="The artifact to calibrate."),
    click.option(
        "--anchors",
        nargs=2,
        multiple=True,
        type=click.Path(dir_okay=False),
        metavar="IMAGE CSV",
        help="An image and a CSV of u,v,metres measured on it (tape measure, LiDAR); repeat for more images.",
    ),
    click.option(
        "--rgbd",
        type=click.Path(file_okay=False),
        default=None,
        help="A folder with rgb/ and depth/ (measured depth, paired with the images in sorted order).",
    ),
    click.option(
        "--depth-format",
        type=click.Choice(DEPTH_FORMATS),
        default=default_of(Request, "depth_format"),
        show_default=True,
        help="How --rgbd's depth files encode metres (png-mm: uint16 millimetres, 0 invalid).",
    ),
    click.option(
        "--intrinsics",
        default=None,
        help="The camera (fx,fy,cx,cy[,width,height] or a calibration YAML), recorded with the calibration.",
    ),
    click.option(
        "--min-depth",
        type=float,
        default=default_of(Request, "min_depth"),
        show_default=True,
        help="Measured depth below this (metres) is ignored.",
    ),  # fmt: skip
    click.option(
        "--max-depth",
        type=float,
        default=default_of(Request, "max_depth"),
        show_default=True,
        help="Measured depth above this (metres) is ignored.",
    ),  # fmt: skip
    INPUT_SIZE_OPTION,
    click.option(
        "--output", required=True, type=click.Path(file_okay=False), help="Folder for the calibrated artifact."
    ),
    parser=parse_request,
)


@click.command(context_settings=CONTEXT)
@REQUEST_OPTIONS
@JSON_OPTION
@user_errors
def calibrate_main(as_json: bool, **values) -> None:
    """Fit an artifact's metric scale once (scale and shift of a relative model's disparity, a scale
    correction of a metric model) with a robust fit, check it on held-out images or points, and write a
    calibrated copy of the artifact whose sidecar carries it: dav2-run, dav2-app, dav2-bench, dav2-batch
    and dav2-ros2 then give metres from it without flags.

    \b
    Examples:
      dav2-calibrate --model m.onnx --rgbd my_camera_rgbd/ --output calibrated/
      dav2-calibrate --model m.onnx --anchors hall.jpg hall.csv --anchors lab.jpg lab.csv --output calibrated/
    """
    result = calibrate(REQUEST_OPTIONS.parse(values))
    report(result)
    if as_json:
        record = {"artifact": str(result.artifact), "metric_calibration": dataclasses.asdict(result.calibration)}
        click.echo(json.dumps(record))
    click.echo(str(result.artifact))


def report(result: Result) -> None:
    """The fit, its warnings and the held-out check, one line each (stderr)."""
    record = result.calibration
    console.info(result.fit.describe().replace("anchors: ", "fit: ", 1) + f" ({record.frames} image(s))")
    if result.fit.median_rel > WARN_MEDIAN_REL:
        console.warn(
            f"the fit misses its own measured points by a median {100 * result.fit.median_rel:.3g}% (RMS "
            f"{result.fit.rms_m:.3g} m), above {100 * WARN_MEDIAN_REL:.0f}%: the model's depth does not follow the "
            "scene's shape closely, so these metres are rough"
        )
    if record.heldout_abs_rel is None:
        console.warn("too few measured points to hold any out: the fit is not checked on unseen data")
        return
    before = "" if record.heldout_abs_rel_before is None else f"{record.heldout_abs_rel_before:.4f} -> "
    what = ", ".join(result.heldout_names) or "a third of the points"
    console.info(f"held out ({what}; {record.heldout_points} points): AbsRel {before}{record.heldout_abs_rel:.4f}")
