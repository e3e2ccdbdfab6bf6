"""dav2-calibrate: a metric scale fitted once and stored in a derived artifact."""

import dataclasses
import json
from pathlib import Path

import click

from dav2 import console
from dav2.cli.common import CONTEXT, INPUT_SIZE_OPTION, JSON_OPTION, check_number, user_errors
from dav2.evaluation.groundtruth import FORMATS as DEPTH_FORMATS
from dav2.geometry.anchors import WARN_MEDIAN_REL


@click.command(context_settings=CONTEXT)
@click.option("--model", required=True, type=click.Path(dir_okay=False), help="The artifact to calibrate.")
@click.option(
    "--anchors",
    nargs=2,
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="IMAGE CSV",
    help="An image and a CSV of u,v,metres measured on it (tape measure, LiDAR); repeat for more images.",
)
@click.option(
    "--rgbd",
    type=click.Path(file_okay=False),
    default=None,
    help="A folder with rgb/ and depth/ (measured depth, paired with the images in sorted order).",
)
@click.option(
    "--depth-format",
    type=click.Choice(DEPTH_FORMATS),
    default="png-mm",
    help="How --rgbd's depth files encode metres (png-mm: uint16 millimetres, 0 invalid).",
)
@click.option(
    "--intrinsics",
    default=None,
    help="The camera (fx,fy,cx,cy[,width,height] or a calibration YAML), recorded with the calibration.",
)
@click.option("--min-depth", type=float, default=1e-3, help="Measured depth below this (metres) is ignored.")
@click.option("--max-depth", type=float, default=80.0, help="Measured depth above this (metres) is ignored.")
@INPUT_SIZE_OPTION
@click.option("--output", required=True, type=click.Path(file_okay=False), help="Folder for the calibrated artifact.")
@JSON_OPTION
@user_errors
def calibrate_main(model, anchors, rgbd, depth_format, intrinsics, min_depth, max_depth, input_size, output, as_json):
    """Fit an artifact's metric scale once (scale and shift of a relative model's disparity, a scale
    correction of a metric model) with a robust fit, check it on held-out images or points, and write a
    calibrated copy of the artifact whose sidecar carries it: dav2-run, dav2-app, dav2-bench, dav2-batch
    and dav2-ros2 then give metres from it without flags.

    \b
    Examples:
      dav2-calibrate --model m.onnx --rgbd my_camera_rgbd/ --output calibrated/
      dav2-calibrate --model m.onnx --anchors hall.jpg hall.csv --anchors lab.jpg lab.csv --output calibrated/
    """
    from dav2.evaluation.calibrate import Request, calibrate
    from dav2.geometry.intrinsics import parse_intrinsics

    check_number(min_depth, "--min-depth", 0, 1e5, low_open=True)
    check_number(max_depth, "--max-depth", 0, 1e5, low_open=True)
    request = Request(
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
    result = calibrate(request)
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
    else:
        before = "" if record.heldout_abs_rel_before is None else f"{record.heldout_abs_rel_before:.4f} -> "
        what = ", ".join(result.heldout_names) or "a third of the points"
        console.info(f"held out ({what}; {record.heldout_points} points): AbsRel {before}{record.heldout_abs_rel:.4f}")
    if as_json:
        click.echo(json.dumps({"artifact": str(result.artifact), "metric_calibration": dataclasses.asdict(record)}))
    click.echo(str(result.artifact))
