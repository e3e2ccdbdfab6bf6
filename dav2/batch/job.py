"""One dav2-batch job: inputs -> Ray Data stages -> outputs and manifest -> summary.

The driver (this process) lists the inputs, decides what --resume skips, builds the Ray Data
plan (stages.py), and turns the rows that come back into the manifest (manifest.py). It never
touches pixels. Ray Data does the scheduling: streaming execution with backpressure, an actor
pool for inference, retries of lost tasks; dav2 adds no scheduler of its own.

Stopping: Ctrl-C or SIGTERM (a KeyboardInterrupt here) stops reading results; the manifest
is merged and written with every row received so far, Ray is shut down (when this job started
it), and the interruption goes on to the CLI (exit 130/143). Outputs are whole files or absent.
"""

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dav2 import console
from dav2.batch import manifest, storage
from dav2.batch.cluster import RaySession, cluster_cpus, connect
from dav2.batch.inputs import InputItem, collect_items
from dav2.batch.options import BatchOptions
from dav2.batch.outputs import output_path, sweep_temporary_files
from dav2.batch.stages import (
    BATCH_PREPROCESSING,
    DecodeSettings,
    InferenceActor,
    WriteSettings,
    decode_batch,
    write_batch,
)
from dav2.batch.storage import Remote
from dav2.batch.summary import BatchSummary
from dav2.errors import Dav2Error, quote
from dav2.files import check_output_file, check_output_folder
from dav2.metadata import ArtifactMetadata, MetricCalibration
from dav2.runtime.feed import FeedSpec
from dav2.runtime.session import StoredCalibration, input_size_for
from dav2.vocabulary import output_unit

CPU_TASK_CPUS = 0.5  # what one decode or write task reserves (they are light next to inference)
MAX_BLOCKS = 20_000  # input blocks handed to Ray Data (more rows per block past that)
PROGRESS_S = 15.0


@dataclass(frozen=True)
class ModelFacts:
    """What the driver needs to know about the artifact before the actors open it."""

    path: Path
    sha256: str
    kind: str
    feed: FeedSpec  # how dav2-run's feeder makes this artifact's input, at the job's input size
    described: str
    calibration: MetricCalibration | None = None  # dav2-calibrate's scale: the job writes metres


def model_facts(options: BatchOptions) -> ModelFacts:
    """The artifact checked once here (one clear line if it cannot run), before Ray starts."""
    from dav2.runtime.backends import open_backend

    path = Path(options.model)
    if not path.is_file():
        raise Dav2Error(f"model file not found: {path}")
    metadata = ArtifactMetadata.read(path)
    with open_backend(path, threads=1, device=options.device) as backend:
        return ModelFacts(
            path.resolve(),
            manifest.model_sha256(path, metadata),
            str(backend.kind),
            FeedSpec.of(backend, input_size_for(backend, options.input_size), BATCH_PREPROCESSING),
            backend.describe(),
            backend.metadata.metric_calibration,
        )


def resolved(where: Path | Remote) -> Path | Remote:
    return where if isinstance(where, Remote) else where.resolve()


def check_outputs(items: list[InputItem], options: BatchOptions) -> None:
    """No output, and not the manifest, may replace an input; a bucket to write to must exist."""
    sources = {item.source for item in items}
    if str(resolved(options.manifest_path)) in sources:
        raise Dav2Error(f"the manifest {options.manifest_path} would overwrite an input; choose another --output")
    for item in items:
        path = output_path(resolved(options.output), item.name, options.fmt)
        if path is not None and str(path) in sources:
            raise Dav2Error(f"--output would overwrite the input {item.source}; write somewhere else")
    for where in (options.output, options.manifest_path):
        if isinstance(where, Remote) and not storage.is_dir(Remote(where.root, "", where.filesystem)):
            raise Dav2Error(f"cannot write to {where}: {where.root} does not exist (create the bucket first)")


def items_to_do(items: list[InputItem], options: BatchOptions, sha256: str) -> list[InputItem]:
    """The items this run processes: all, or (--resume) those not done before for this model."""
    path = options.manifest_path
    if manifest.exists(path) and not (options.resume or options.overwrite):
        raise Dav2Error(f"{path} records an earlier job: add --resume to finish it, or --overwrite to start again")
    if not (options.resume or options.overwrite):
        return items
    if not isinstance(options.output, Remote):  # objects are written whole: none to sweep
        sweep_temporary_files(options.output)
    if options.overwrite:
        manifest.remove_manifest(path)
        return items
    done = manifest.DoneSet.from_manifest(manifest.read_manifest(path), sha256, output_check(options.output))
    return [item for item in items if item.key not in done.keys]


def output_check(output: Path | Remote):
    """Whether a manifest's `output` is in place: a file test, or (at a URI) one listing of the prefix."""
    if not isinstance(output, Remote):
        return os.path.isfile
    return {remote.uri for remote in storage.list_files(output)}.__contains__


def filesystems(items: list[InputItem]) -> tuple[tuple[str, str], ...]:
    """(root, filesystem URI) of the URI inputs, for the decode tasks (one filesystem per root)."""
    found: dict[str, str] = {}
    for item in items:
        if item.filesystem:
            root = storage.root_of(item.source)
            if found.setdefault(root, item.filesystem) != item.filesystem:
                raise Dav2Error(f"{root} is named with two sets of options ({found[root]}, {item.filesystem}); use one")
    return tuple(sorted(found.items()))


def build_dataset(items: list[InputItem], options: BatchOptions, facts: ModelFacts):
    """The Ray Data plan: decode tasks -> inference actor pool -> write tasks."""
    import pyarrow as pa
    import ray.data

    rows_per_block = max(options.batch_size, math.ceil(len(items) / MAX_BLOCKS))
    blocks = [
        pa.table(
            {
                "source": pa.array([item.source for item in chunk], pa.string()),
                "frame": pa.array([item.frame for item in chunk], pa.int64()),
                "name": pa.array([item.name for item in chunk], pa.string()),
            }
        )
        for chunk in (items[i : i + rows_per_block] for i in range(0, len(items), rows_per_block))
    ]
    decode = DecodeSettings(
        feed=facts.feed,
        max_tokens=options.max_tokens,
        limits=options.limits,
        filesystems=filesystems(items),
    )
    output = resolved(options.output)
    remote = output if isinstance(output, Remote) else None
    unit = "m" if facts.calibration is not None else output_unit(facts.kind)
    write = WriteSettings(str(output), options.fmt, options.cmap, unit, remote, facts.calibration, facts.kind)
    common = {"batch_size": options.batch_size, "batch_format": "numpy"}
    dataset = ray.data.from_arrow(blocks)
    dataset = dataset.map_batches(decode_batch, fn_kwargs={"settings": decode}, num_cpus=CPU_TASK_CPUS, **common)
    dataset = dataset.map_batches(
        InferenceActor,
        fn_constructor_kwargs={
            "model": str(facts.path),
            "threads": options.threads_per_actor,
            "device": options.device,
        },
        compute=ray.data.ActorPoolStrategy(size=options.actors),
        num_cpus=options.cpus_per_actor,
        num_gpus=options.gpus_per_actor or None,
        **common,
    )
    return dataset.map_batches(write_batch, fn_kwargs={"settings": write}, num_cpus=CPU_TASK_CPUS, **common)


def check_destinations(options: BatchOptions) -> None:
    """Where the job writes, checked before any work (before the model is hashed, the inputs
    listed or Ray started), so a bad place is one line and nothing is left behind: a manifest
    that is a device, a folder or a name too long; an output or manifest folder that is a file
    or cannot be written; an output inside the input folder."""
    if not isinstance(options.output, Remote):
        refuse_output_inside_input(options)
        check_output_folder(options.output, "--output")
    if not isinstance(options.manifest_path, Remote):
        check_output_file(options.manifest_path)
        check_output_folder(options.manifest_path.parent, "the manifest's folder")


def refuse_output_inside_input(options: BatchOptions) -> None:
    """A folder --input is scanned again by --resume, which would take this job's outputs
    (inside it) for inputs: refused on the first run, before anything is written there."""
    source = Path(options.input).expanduser()
    if storage.is_uri(options.input) or not source.is_dir():
        return
    output, inputs = options.output.resolve(), source.resolve()
    if output == inputs or inputs in output.parents:
        raise Dav2Error(
            f"--output {quote(options.output)} is inside the input folder {quote(source)}: a later --resume "
            "would read this job's outputs as inputs; write somewhere else"
        )


def run_batch(options: BatchOptions) -> BatchSummary:
    """Run the job; the summary says what happened (raised on Ctrl-C after the manifest is written)."""
    check_destinations(options)
    facts = model_facts(options)
    console.info(facts.described)
    if facts.calibration is not None:
        console.info(StoredCalibration(facts.calibration, facts.kind, facts.path.name).describe())
    items = collect_items(options.input, options.frame_stride, options.max_items)
    check_outputs(items, options)
    todo = items_to_do(items, options, facts.sha256)
    summary = BatchSummary(
        total=len(items),
        skipped=len(items) - len(todo),
        manifest=str(options.manifest_path),
        output=str(options.output),
        model=str(options.model),
    )
    writer = manifest.ManifestWriter(options.manifest_path, facts.sha256)
    if not todo:
        writer.close()
        return summary
    start = time.perf_counter()
    session = connect(options.address, options.actors * options.cpus_per_actor + CPU_TASK_CPUS)
    summary.ray, summary.startup_seconds = session.address, time.perf_counter() - start
    console.info(f"{len(todo)} of {len(items)} inputs to process on {session.address}")
    warn_if_short_of_cpus(options)
    try:
        execute(build_dataset(todo, options, facts), writer, summary, len(todo))
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM (dav2.cli.common raises it like Ctrl-C)
        summary.interrupted = True
        raise
    finally:
        finish(writer, session, summary)
    return summary


def warn_if_short_of_cpus(options: BatchOptions) -> None:
    """The actors take their CPUs first; with none left, the decode and write tasks wait for ever
    and nothing is processed (seen: two `ray start --num-cpus 1` nodes and --actors 2). A warning,
    not an error: an autoscaling cluster may still add the CPUs."""
    needed = options.actors * options.cpus_per_actor + CPU_TASK_CPUS
    have = cluster_cpus()
    if have < needed:
        console.warn(
            f"the Ray cluster has {have:g} CPUs; {options.actors} actor(s) x {options.cpus_per_actor:g} CPU plus "
            f"{CPU_TASK_CPUS:g} for the decode and write tasks need {needed:g}: the job waits until they exist "
            "(give nodes more --num-cpus, or run fewer actors)"
        )


def execute(dataset, writer: manifest.ManifestWriter, summary: BatchSummary, todo: int) -> None:
    """Pull manifest rows through the plan, counting them as they come."""
    import ray.exceptions

    start = next_report = time.perf_counter()
    try:
        for rows in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            writer.add(rows)
            failed = sum(status != manifest.OK for status in rows.column("status").to_pylist())
            summary.failed += failed
            summary.processed += rows.num_rows - failed
            summary.seconds = time.perf_counter() - start
            if time.perf_counter() >= next_report:
                next_report += PROGRESS_S
                done = summary.processed + summary.failed
                console.info(f"  {done}/{todo} done, {summary.failed} failed, {summary.images_per_second:.2f} images/s")
    except ray.exceptions.RayError as exc:
        error = user_error(exc)
        if error is None:
            raise
        raise error from None


def user_error(exc: BaseException) -> Dav2Error | None:
    """The Dav2Error an actor or task raised (a model that will not open there), if that is the cause."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, Dav2Error):
            return Dav2Error(str(exc))
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def finish(writer: manifest.ManifestWriter, session: RaySession, summary: BatchSummary) -> None:
    """Manifest merged and written, Ray left as found; said once when interrupted."""
    try:
        rows = writer.close()
    finally:
        session.close()
    if summary.interrupted:
        print(file=sys.stderr)
        console.info(
            f"stopped: {summary.processed} processed and {summary.failed} failed are in {summary.manifest} "
            f"({rows.num_rows} rows); run again with --resume to finish"
        )
