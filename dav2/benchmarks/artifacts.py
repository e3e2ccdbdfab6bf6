"""Benchmark artifacts, built once and reused.

Each artifact lives in its own folder under the cache, named by what determines its content:
the checkpoint's sha256, encoder, size, target, precision, the versions of the tools that
build it, and for calibrated INT8 the calibration set's hash. A second dav2-bench run (or one
that was interrupted) finds it there and does not export again; anything that changes the
artifact changes the folder name.
"""

import hashlib
import json
import time
from pathlib import Path

import dav2
from dav2.benchmarks.discovery import EDGE_TOOLS, Case, Machine
from dav2.export import formats
from dav2.files import atomic_write_text
from dav2.jsonfile import expect, finite_number, read_json
from dav2.metadata import ArtifactMetadata
from dav2.vocabulary import BackendName

BUILD_TOOLS = ("torch", "onnxruntime", "openvino", "nncf", "tensorrt")  # every case's key names these
BUILD_RECORD = "build.json"


def cache_key(
    case: Case, checkpoint_sha256: str, encoder: str, machine: Machine, calibration_sha256: str | None
) -> str:
    """What determines the artifact's content, hashed: a changed converter makes a new folder.
    Edge backends' keys name their converters too (the others' keys stay as they were)."""
    edge = EDGE_TOOLS if case.backend in (BackendName.LITERT, BackendName.EXECUTORCH) else ()
    tools = {name: machine.libraries.get(name) for name in (*BUILD_TOOLS, *edge)}
    text = json.dumps(
        [
            checkpoint_sha256,
            encoder,
            case.backend,
            case.precision,
            case.size,
            tools,
            dav2.__version__,
            calibration_sha256,
            *([case.max_abs_rel] if case.max_abs_rel is not None else []),
            *([list(case.float_groups)] if case.float_groups else []),
            *(["full-integer"] if case.full_integer else []),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_artifact(folder: Path, case: Case) -> Path | None:
    """The finished artifact in a cache folder (its build record is written last)."""
    if not (folder / BUILD_RECORD).is_file():
        return None
    found = sorted(folder.glob(f"*{formats.for_backend(case.backend).suffix}"))
    return found[0] if found else None


def build_artifact(
    case: Case,
    checkpoint: str,
    checkpoint_sha256: str,
    encoder: str,
    machine: Machine,
    cache_dir: Path,
    images: str | None,
    calib_count: int,
    holdout: int,
    calibration_sha256: str | None,
) -> tuple[Path, float, bool]:
    """(artifact, build seconds, reused) for `case`, exporting it only when not cached."""
    from dav2.export.pipeline import ExportRequest, export_artifacts

    row = formats.for_backend(case.backend)
    key = cache_key(case, checkpoint_sha256, encoder, machine, calibration_sha256 if case.calibrated else None)
    recipe = "-static" if case.full_integer else "-mixed" if case.recipe else ""
    folder = cache_dir / f"{encoder}-{case.size}-{case.backend}-{case.precision}{recipe}-{key}"
    artifact = find_artifact(folder, case)
    if artifact is not None:
        record = expect(read_json(folder / BUILD_RECORD, "build record"), dict, f"{folder / BUILD_RECORD}")
        return artifact, finite_number(record.get("build_seconds"), f"{folder / BUILD_RECORD}: build_seconds"), True
    request = ExportRequest(
        encoder=encoder,
        checkpoint=checkpoint,
        height=case.size,
        width=case.size,
        static=True,
        output=folder,
        holdout=holdout,
        max_abs_rel=case.max_abs_rel,  # the accuracy-control budget, when the case has one
        accuracy_control=case.max_abs_rel is not None,
        accuracy_gate=False,  # candidates are measured, never refused: pick judges them against its Budget
        int8_float=list(case.float_groups),
    )
    setattr(request, row.key, case.precision)  # --onnx/--openvino/--trt/--litert/--executorch P
    if case.full_integer:
        request.litert_int8 = "static"  # --litert-int8 static
    if case.calibrated:
        request.calib_dir = images
        request.calib_count = calib_count
    start = time.perf_counter()
    artifact = export_artifacts(request)[0]
    seconds = time.perf_counter() - start
    atomic_write_text(folder / BUILD_RECORD, json.dumps({"build_seconds": seconds, "artifact": artifact.name}) + "\n")
    return artifact, seconds, False


def artifact_mb(artifact: Path) -> float:
    """Size on disk of the artifact and its weights file (an IR's .bin, ONNX external data), in MB."""
    metadata = ArtifactMetadata.read(artifact)
    files = [artifact]
    if metadata is not None and metadata.weights_file:
        files.append(artifact.with_name(metadata.weights_file))
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6
