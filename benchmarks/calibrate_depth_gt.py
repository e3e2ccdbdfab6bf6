"""dav2-calibrate on real RGB-D frames (../shared/depth-gt): AbsRel on a held-out frame, before and after.

    python benchmarks/calibrate_depth_gt.py --model METRIC.onnx --model RELATIVE.onnx \
        [--depth-gt ../shared/depth-gt] [--input-size 266] --out benchmarks/results/NAME

For each model and each folder of three frames of one camera (NYU Depth V2: Kinect, KITTI:
LiDAR), `dav2-calibrate --rgbd` as a user runs it (its own split: the third frame is held out;
the camera from the folder's test_annotations.json is recorded), then the calibrated artifact is
run by `dav2-run --format npy` on the held-out image (no flags: the sidecar's calibration gives
metres) and scored against that frame's measured depth. Columns:

- before: the model's own output as metres (metric models only; a relative model has none);
- after (recorded): the held-out AbsRel dav2-calibrate stored in the sidecar;
- after (dav2-run): AbsRel of dav2-run's output of the calibrated artifact (the round trip);
- per-frame bound: the same robust fit made on the held-out frame's own measured depth, the
  best any single calibration could do on it.

Writes NAME.json (machine, command, every number) and NAME.md.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dav2.benchmarks.machine import cpu_model  # noqa: E402
from dav2.cli import run_main  # noqa: E402
from dav2.cli.calibrate import calibrate_main  # noqa: E402
from dav2.errors import Dav2Error  # noqa: E402
from dav2.evaluation.calibrate import FIT_POINTS, rgbd_pairs  # noqa: E402
from dav2.evaluation.groundtruth import read_depth  # noqa: E402
from dav2.geometry.anchors import fit_samples  # noqa: E402
from dav2.metadata import ArtifactMetadata  # noqa: E402

FOLDERS = {"nyu_demo": "png-mm", "kitti_demo": "png-kitti"}  # metric3d/<folder>: its depth encoding
MIN_DEPTH, MAX_DEPTH = 1e-3, 80.0


def camera_of(folder: Path) -> str:
    """fx,fy,cx,cy of the folder's frames (Metric3D's test_annotations.json)."""
    entry = json.loads((folder / "test_annotations.json").read_text())["files"][0]
    return ",".join(f"{value:g}" for value in entry["cam_in"])


def abs_rel(predicted: np.ndarray, metres: np.ndarray) -> float:
    return float(np.mean(np.abs(np.clip(predicted, MIN_DEPTH, MAX_DEPTH) - metres) / metres))


def run_npy(model: Path, image: Path, out: Path, input_size: int) -> tuple[np.ndarray, str]:
    result = CliRunner().invoke(
        run_main, ["--model", str(model), "--source", str(image), "--input-size", str(input_size),
                   "--format", "npy", "--save", str(out)],
    )  # fmt: skip
    if result.exit_code != 0:
        raise RuntimeError(result.output)
    return np.load(out), result.stderr


def one_case(model: Path, folder: Path, depth_format: str, input_size: int, scratch: Path) -> dict:
    """Calibrate on the folder, then score the held-out frame through dav2-run."""
    out = scratch / f"{model.stem}-{folder.name}"
    args = ["--model", str(model), "--rgbd", str(folder), "--depth-format", depth_format, "--input-size",
            str(input_size), "--intrinsics", camera_of(folder), "--output", str(out)]  # fmt: skip
    started = time.perf_counter()
    result = CliRunner().invoke(calibrate_main, args)
    row = {"model": model.name, "folder": folder.name, "command": "dav2-calibrate " + " ".join(args)}
    if result.exit_code != 0:
        return {**row, "refused": result.stderr.strip().splitlines()[-1]}
    record = ArtifactMetadata.read(out / model.name).metric_calibration
    image, depth = rgbd_pairs(folder)[2]  # the frame dav2-calibrate held out
    gt, valid = read_depth(folder / "depth" / depth, depth_format)
    mask = valid & (gt > MIN_DEPTH) & (gt < MAX_DEPTH)
    calibrated, said = run_npy(out / model.name, folder / "rgb" / image, scratch / "calibrated.npy", input_size)
    raw, _ = run_npy(model, folder / "rgb" / image, scratch / "raw.npy", input_size)
    chosen = np.random.default_rng(0).choice(int(mask.sum()), FIT_POINTS, replace=False)
    try:
        own = fit_samples(raw[mask][chosen], gt[mask][chosen].astype(np.float64), ArtifactMetadata.read(model).kind)
        bound = abs_rel(own.metres(raw[mask]), gt[mask])
    except Dav2Error:  # the model orders this frame backwards: no calibration can help it
        bound = None
    return {
        **row,
        "fit_points": record.points,
        "fit_frames": record.frames,
        "fit_median_rel": record.residual_median_rel,
        "scale": record.scale,
        "shift": record.shift,
        "heldout_frame": image,
        "heldout_points": record.heldout_points,
        "abs_rel_before": record.heldout_abs_rel_before,
        "abs_rel_after_recorded": record.heldout_abs_rel,
        "abs_rel_after_dav2_run": abs_rel(calibrated[mask], gt[mask]),
        "abs_rel_per_frame_bound": bound,
        "dav2_run_said": next(line for line in said.splitlines() if "calibration stored" in line),
        "seconds": round(time.perf_counter() - started, 1),
    }


def number(value) -> str:
    return "" if value is None else f"{value:.3f}"


def markdown(report: dict) -> str:
    lines = [
        "# dav2-calibrate on RGB-D frames: held-out AbsRel before and after",
        "",
        f"Machine: {report['machine']}. Command: `{report['command']}`.",
        "",
        "| model | RGB-D folder | fit points on images (median rel. residual) | held-out frame (points) | before "
        "| after (recorded) | after (dav2-run) | per-frame bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        if "refused" in row:
            lines.append(f"| {row['model']} | {row['folder']} | refused: {row['refused']} | | | | | |")
            continue
        lines.append(
            f"| {row['model']} | {row['folder']} | {row['fit_points']} on {row['fit_frames']} "
            f"({100 * row['fit_median_rel']:.0f}%) | {row['heldout_frame']} ({row['heldout_points']}) "
            f"| {number(row['abs_rel_before'])} | {number(row['abs_rel_after_recorded'])} "
            f"| {number(row['abs_rel_after_dav2_run'])} | {number(row['abs_rel_per_frame_bound'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, type=Path)
    parser.add_argument("--depth-gt", type=Path, default=ROOT.parent / "shared" / "depth-gt")
    parser.add_argument("--input-size", type=int, default=266)
    parser.add_argument("--out", type=Path, required=True, help="NAME: writes NAME.json and NAME.md")
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for model in options.model:
            for name, fmt in FOLDERS.items():
                folder = options.depth_gt / "metric3d" / name
                rows.append(one_case(model, folder, fmt, options.input_size, Path(scratch)))
    import onnxruntime

    report = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores ({cpu_model()})",
        "tools": {"onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "rows": rows,
    }
    options.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    options.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
