"""The user's choices for one dav2-batch job, checked when made.

Every size a user controls has a ceiling, so a typo (`--actors 10000`, `--batch-size 1e6`)
ends in one line before Ray starts instead of a cluster asked for the impossible.
"""

import math
from dataclasses import dataclass
from pathlib import Path

from dav2 import processing
from dav2.batch.storage import Remote
from dav2.errors import Dav2Error
from dav2.media import DEFAULT_LIMITS, ImageLimits

FORMATS = ("png16", "npy", "color", "gray", "parquet")
MAX_ACTORS = 1024  # inference actors in one job (a large cluster: 128 nodes x 8 GPUs)
MAX_BATCH_SIZE = 256  # images per batch handed to one stage call
# inference threads per backend (dav2-run's --threads, dav2-batch's --threads-per-actor): far past any CPU
# dav2 targets, short of the counts that slow a run to a crawl or crash it
MAX_THREADS = 256
MAX_GPUS_PER_ACTOR = 8.0
MAX_FRAME_STRIDE = 1_000_000
MANIFEST_NAME = "manifest.parquet"


@dataclass(frozen=True)
class BatchOptions:
    """What to run, on what, where the results go, and how much of Ray to use."""

    model: Path
    input: str  # a folder, a glob, a text file of paths (one a line), or a URI (s3://bucket/images/)
    output: Path | Remote  # storage.location(what the user typed)
    fmt: str = "png16"
    cmap: str = "spectral"
    input_size: int | None = None  # short side for dynamic artifacts; None: the artifact's own
    actors: int = 1  # inference actors (one backend each)
    threads_per_actor: int = 0  # inference threads per actor (0: the library's default)
    gpus_per_actor: float = 0.0
    device: str = "cpu"  # as dav2-run's --device: torch cpu/cuda, OpenVINO CPU/GPU/NPU/AUTO
    batch_size: int = 4  # images per stage call
    frame_stride: int = 1  # videos: every n-th frame
    resume: bool = False
    overwrite: bool = False
    address: str | None = None  # None: Ray starts in this process; "auto", "ray://host:10001": join a cluster
    limits: ImageLimits = DEFAULT_LIMITS
    max_tokens: int = processing.DEFAULT_MAX_TOKENS
    manifest: Path | Remote | None = None  # default: <output>/manifest.parquet
    max_items: int | None = None  # stop after this many inputs (trial runs)

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise Dav2Error(f"unknown format {self.fmt!r}; choose one of {', '.join(FORMATS)}")
        if self.cmap not in processing.COLORMAPS:
            raise Dav2Error(f"unknown colour map {self.cmap!r}; choose one of {', '.join(processing.COLORMAPS)}")
        check_range(self.actors, "--actors", 1, MAX_ACTORS)
        check_range(self.threads_per_actor, "--threads-per-actor", 0, MAX_THREADS)
        check_range(self.gpus_per_actor, "--gpus-per-actor", 0, MAX_GPUS_PER_ACTOR)
        check_range(self.batch_size, "--batch-size", 1, MAX_BATCH_SIZE)
        check_range(self.frame_stride, "--frame-stride", 1, MAX_FRAME_STRIDE)
        processing.check_max_tokens(self.max_tokens)
        if self.max_items is not None:
            check_range(self.max_items, "--max-items", 1, 10**12)
        if self.resume and self.overwrite:
            raise Dav2Error("--resume and --overwrite exclude each other: continue a job, or start it again")
        if self.input_size is not None:
            from dav2.runtime.session import check_input_size

            check_input_size(self.input_size, self.max_tokens)

    @property
    def manifest_path(self) -> Path | Remote:
        if self.manifest is not None:
            return self.manifest
        return self.output.child(MANIFEST_NAME) if isinstance(self.output, Remote) else self.output / MANIFEST_NAME

    @property
    def cpus_per_actor(self) -> float:
        """What an inference actor reserves: its threads (at least one core's worth)."""
        return float(max(1, self.threads_per_actor))


def check_range(value: float, option: str, low: float, high: float) -> None:
    """One Dav2Error line naming the option unless low <= value <= high (nan and inf refused)."""
    if isinstance(value, float) and not math.isfinite(value) or not low <= value <= high:
        raise Dav2Error(f"{option} must be from {low:g} to {high:g}, not {value}")
