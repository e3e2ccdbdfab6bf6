"""What the bench hands the child process that measures one case, typed and written in one place.

The runner (parent) and benchmarks.case (child) share this record, so the two sides cannot
disagree on a key: the parent writes it with `write`, the child reads it with `read`, and
every field is checked for its type on the way in (a spec file is plain JSON on disk).
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dav2.benchmarks.discovery import Case


@dataclass(frozen=True)
class PipelineRequest:
    """dav2-bench --pipeline VIDEO: run the video through dav2-run's pipeline after the timing."""

    video: str
    max_frames: int | None
    output: str  # a key of benchmarks.pipeline.OUTPUTS: what the write stage does


@dataclass(frozen=True)
class CaseSpec:
    """One case to measure and how: the artifact, the timing budget, and what else to measure."""

    case: Case
    artifact: str  # the built artifact (or, for torch, the checkpoint)
    device: str  # "cpu" or "cuda" (PyTorch); other backends take their own default
    threads: int
    image: str  # "sample", an image file, or with image_is_video a video whose first frame is timed
    work_dir: str  # the run's inputs (input_<size>_<i>.npy) and the FP32 references (ref_*.npy)
    writes_reference: bool  # PyTorch FP32: write the references the other cases compare with
    seconds: float
    min_runs: int
    max_runs: int
    warmup: int
    pipeline: PipelineRequest | None = None
    details: bool = True  # the split and throughput columns (pick --quick leaves them out)
    own_input: bool = False  # --model ARTIFACT: prepare the image for the artifact's own input
    image_is_video: bool = False

    def with_runs(self, min_runs: int, max_runs: int, warmup: int) -> "CaseSpec":
        """The same case with another timing budget (the throughput pass times a short batch)."""
        return dataclasses.replace(self, min_runs=min_runs, max_runs=max_runs, warmup=warmup)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "CaseSpec":
        data = json.loads(text)
        case = Case(**{**data["case"], "float_groups": tuple(data["case"]["float_groups"])})
        pipeline = PipelineRequest(**data["pipeline"]) if data.get("pipeline") else None
        spec = cls(**{**data, "case": case, "pipeline": pipeline})
        spec.check_types()
        return spec

    def check_types(self) -> None:
        """Every plain field holds its declared type (a spec file could have been edited by hand)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in (str, int, float, bool) and not is_a(value, field.type):
                raise TypeError(f"case spec field {field.name!r} must be {field.type.__name__}, not {value!r}")

    def write(self, folder: Path) -> Path:
        case = self.case
        path = folder / f"spec-{case.backend}-{case.precision}-{case.size}.json"
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, path: Path) -> "CaseSpec":
        return cls.from_json(Path(path).read_text())


def is_a(value: Any, kind: type) -> bool:
    """isinstance, with JSON's numbers: an int is a float, a bool is no int."""
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)
