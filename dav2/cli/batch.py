"""dav2-batch: depth for a whole corpus on Ray Data (an extra: pip install 'dav2[batch]').

Thin, like every command: parse, call dav2.batch, print. The options come in groups (the job's
inputs and outputs, the scale of the Ray job, the limits shared with dav2-run), parsed into one
`dav2.batch.BatchOptions`, whose fields and ceilings are the options' defaults and ranges. Ray is
imported inside the command, so `import dav2.cli` never needs it.
"""

import json
from pathlib import Path

import click

from dav2 import console
from dav2.batch.options import FORMATS, MAX_ACTORS, MAX_BATCH_SIZE, MAX_THREADS, BatchOptions
from dav2.cli.common import (
    CONTEXT,
    INPUT_SIZE_OPTION,
    JSON_OPTION,
    LIMIT_OPTIONS,
    MODEL_OPTION,
    InputLimits,
    OptionGroup,
    user_errors,
)
from dav2.errors import Dav2Error
from dav2.processing import COLORMAPS

INSTALL_HINT = "dav2-batch needs Ray Data: pip install 'dav2[batch]'"


def job_paths(input: str, output: str, manifest: str | None, **choices) -> dict:
    """The job's places as BatchOptions takes them: local paths or URIs (dav2.batch.storage)."""
    from dav2.batch.storage import location

    return {
        "input": input,
        "output": location(output),
        "manifest": location(manifest) if manifest else None,
        **choices,
    }


JOB_OPTIONS = OptionGroup(
    click.option(
        "--input",
        required=True,
        help="A folder (recursive), an image or video, a text file of paths or URIs (one a line), a glob "
        "('photos/**/*.jpg'), or a URI prefix (s3://bucket/images/, gs://...; videos at a URI: mount or download "
        "them).",
    ),
    click.option(
        "--output",
        required=True,
        type=click.Path(file_okay=False),  # a URI passes: it is not a local file
        help="Folder, or URI prefix (s3://bucket/depth/), for the depth and the manifest. URI options go in its "
        "query (?endpoint_override=host:9000&scheme=http); credentials come from the environment (AWS_*, ~/.aws, "
        "...).",
    ),
    click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=BatchOptions.fmt,
        help="png16 (16-bit PNG with its scale), npy (float32), color/gray pictures: files that mirror the inputs' "
        "names, as dav2-run writes them; parquet: shards of depth arrays under OUTPUT/depth/.",
    ),
    click.option(
        "--cmap", type=click.Choice(COLORMAPS), default=BatchOptions.cmap, help="Colour map for --format color."
    ),
    click.option("--resume", is_flag=True, help="Skip inputs whose output exists and whose manifest row is ok."),
    click.option("--overwrite", is_flag=True, help="Start again over an earlier job's manifest and outputs."),
    click.option(
        "--manifest",
        type=click.Path(dir_okay=False),
        default=None,
        help="File or URI. [default: OUTPUT/manifest.parquet]",
    ),
    click.option("--max-items", type=int, default=None, help="Process at most this many inputs (a trial run)."),
    parser=job_paths,
)
SCALE_OPTIONS = OptionGroup(
    click.option(
        "--actors",
        type=int,
        default=BatchOptions.actors,
        help=f"Inference actors, one opened artifact each (1 to {MAX_ACTORS}).",
    ),
    click.option(
        "--threads-per-actor",
        type=int,
        default=BatchOptions.threads_per_actor,
        help=f"Inference threads per actor, 0 to {MAX_THREADS} (0: the library's default).",
    ),
    click.option(
        "--gpus-per-actor",
        type=float,
        default=BatchOptions.gpus_per_actor,
        help="GPUs per actor (1 for one TensorRT engine per GPU).",
    ),
    click.option(
        "--batch-size", type=int, default=BatchOptions.batch_size, help=f"Images per stage call, 1 to {MAX_BATCH_SIZE}."
    ),
    click.option("--frame-stride", type=int, default=BatchOptions.frame_stride, help="Videos: keep every n-th frame."),
    click.option("--device", default=BatchOptions.device, help="torch: cpu or cuda; openvino: CPU, GPU, NPU or AUTO."),
    click.option(
        "--address",
        default=None,
        help="Ray cluster to join: 'auto' (this machine's cluster) or ray://HOST:10001. [default: start Ray here]",
    ),
)


def batch_options(values: dict, limits: InputLimits) -> BatchOptions:
    """The job the options describe (BatchOptions checks every value when made)."""
    return BatchOptions(
        model=Path(values.pop("model")),
        input_size=values.pop("input_size"),
        limits=limits.images,
        max_tokens=limits.max_tokens,
        **JOB_OPTIONS.parse(values),
        **SCALE_OPTIONS.take(values),
    )


@click.command(context_settings=CONTEXT)
@MODEL_OPTION
@JOB_OPTIONS
@INPUT_SIZE_OPTION
@SCALE_OPTIONS
@LIMIT_OPTIONS
@JSON_OPTION
@user_errors
def batch_main(as_json, **values):
    """Depth for a whole corpus on Ray Data: resumable, with a manifest of every input.

    \b
    Examples:
      dav2-batch --model m_518x518.xml --input photos/ --output depth/ --format png16
      dav2-batch --model m.onnx --input list.txt --output out/ --actors 2 --threads-per-actor 1
      dav2-batch --model m.onnx --input s3://bucket/images/ --output s3://bucket/depth/
      dav2-batch --model m.engine --input videos/ --output out/ --frame-stride 5 --gpus-per-actor 1 --address auto
      dav2-batch ... --resume        # after a crash or Ctrl-C: only what is missing

    Without --address, Ray starts in this process and stops at the end. Every output is
    written atomically; a corrupt input becomes a `failed` row of the manifest
    (OUTPUT/manifest.parquet), never the end of the job. Ctrl-C writes the manifest of
    what is done; --resume does the rest.
    """
    limits = LIMIT_OPTIONS.parse(values)  # before Ray starts
    require_ray()
    from dav2.batch import run_batch

    summary = run_batch(batch_options(values, limits))
    for line in summary.lines():
        console.info(line)
    if as_json:
        click.echo(json.dumps(summary.to_dict()))


def require_ray() -> None:
    """Ray Data and pyarrow, or one line naming the extra (not optional.py's generic hint)."""
    from dav2 import optional
    from dav2.batch.cluster import quiet_ray

    quiet_ray()  # before Ray is first imported
    try:
        optional.require("ray.data", "dav2-batch")
        optional.require("pyarrow", "dav2-batch")
    except Dav2Error:
        raise Dav2Error(INSTALL_HINT) from None
