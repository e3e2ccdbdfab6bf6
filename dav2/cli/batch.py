"""dav2-batch: depth for a whole corpus on Ray Data (an extra: pip install 'dav2[batch]').

Thin, like every command: parse, call dav2.batch, print. Ray is imported inside the command,
so `import dav2.cli` never needs it.
"""

import json

import click

from dav2 import console
from dav2.cli.common import CONTEXT, INPUT_SIZE_OPTION, JSON_OPTION, MODEL_OPTION, check_number, user_errors
from dav2.errors import Dav2Error
from dav2.media import DEFAULT_MAX_ASPECT, DEFAULT_MAX_MEGAPIXELS, ImageLimits
from dav2.processing import COLORMAPS, DEFAULT_MAX_TOKENS, check_max_tokens

FORMATS = ("png16", "npy", "color", "gray", "parquet")  # dav2.batch.options.FORMATS, without importing it
INSTALL_HINT = "dav2-batch needs Ray Data: pip install 'dav2[batch]'"


@click.command(context_settings=CONTEXT)
@MODEL_OPTION
@click.option(
    "--input",
    "input_spec",
    required=True,
    help="A folder (recursive), an image or video, a text file of paths or URIs (one a line), a glob "
    "('photos/**/*.jpg'), or a URI prefix (s3://bucket/images/, gs://...; videos at a URI: mount or download them).",
)
@click.option(
    "--output",
    required=True,
    type=click.Path(file_okay=False),  # a URI passes: it is not a local file
    help="Folder, or URI prefix (s3://bucket/depth/), for the depth and the manifest. URI options go in its query "
    "(?endpoint_override=host:9000&scheme=http); credentials come from the environment (AWS_*, ~/.aws, ...).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="png16",
    help="png16 (16-bit PNG with its scale), npy (float32), color/gray pictures: files that mirror the inputs' "
    "names, as dav2-run writes them; parquet: shards of depth arrays under OUTPUT/depth/.",
)
@click.option("--cmap", type=click.Choice(COLORMAPS), default="spectral", help="Colour map for --format color.")
@INPUT_SIZE_OPTION
@click.option("--actors", type=int, default=1, help="Inference actors, one opened artifact each (1 to 1024).")
@click.option(
    "--threads-per-actor", type=int, default=0, help="Inference threads per actor, 0 to 256 (0: the library's default)."
)
@click.option("--gpus-per-actor", type=float, default=0.0, help="GPUs per actor (1 for one TensorRT engine per GPU).")
@click.option("--batch-size", type=int, default=4, help="Images per stage call, 1 to 256.")
@click.option("--frame-stride", type=int, default=1, help="Videos: keep every n-th frame.")
@click.option("--device", default="cpu", help="torch: cpu or cuda; openvino: CPU, GPU, NPU or AUTO.")
@click.option("--resume", is_flag=True, help="Skip inputs whose output exists and whose manifest row is ok.")
@click.option("--overwrite", is_flag=True, help="Start again over an earlier job's manifest and outputs.")
@click.option(
    "--address",
    default=None,
    help="Ray cluster to join: 'auto' (this machine's cluster) or ray://HOST:10001. [default: start Ray here]",
)
@click.option(
    "--manifest", type=click.Path(dir_okay=False), default=None, help="File or URI. [default: OUTPUT/manifest.parquet]"
)
@click.option("--max-items", type=int, default=None, help="Process at most this many inputs (a trial run).")
@click.option("--max-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS, help="Refuse larger images.")
@click.option("--max-aspect", type=float, default=DEFAULT_MAX_ASPECT, help="Refuse images longer than this ratio.")
@click.option("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="Refuse larger network inputs (dynamic).")
@JSON_OPTION
@user_errors
def batch_main(
    model,
    input_spec,
    output,
    fmt,
    cmap,
    input_size,
    actors,
    threads_per_actor,
    gpus_per_actor,
    batch_size,
    frame_stride,
    device,
    resume,
    overwrite,
    address,
    manifest,
    max_items,
    max_megapixels,
    max_aspect,
    max_tokens,
    as_json,
):
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
    check_number(max_megapixels, "--max-megapixels", 0, 100_000, low_open=True)
    check_number(max_aspect, "--max-aspect", 1, 100_000)
    check_max_tokens(max_tokens)  # at most MAX_TOKENS_CEILING, before Ray starts
    require_ray()
    from pathlib import Path

    from dav2.batch import BatchOptions, run_batch
    from dav2.batch.storage import location

    options = BatchOptions(
        model=Path(model),
        input=input_spec,
        output=location(output),
        fmt=fmt,
        cmap=cmap,
        input_size=input_size,
        actors=actors,
        threads_per_actor=threads_per_actor,
        gpus_per_actor=gpus_per_actor,
        device=device,
        batch_size=batch_size,
        frame_stride=frame_stride,
        resume=resume,
        overwrite=overwrite,
        address=address,
        limits=ImageLimits(max_pixels=int(max_megapixels * 1_000_000), max_aspect=max_aspect),
        max_tokens=max_tokens,
        manifest=location(manifest) if manifest else None,
        max_items=max_items,
    )
    summary = run_batch(options)
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
