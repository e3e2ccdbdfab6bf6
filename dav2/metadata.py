"""The metadata sidecar every artifact carries: `<artifact stem>.json` beside it (DESIGN rule 2).

It holds everything a backend needs to run the artifact with no other flags (encoder,
relative/metric, max_depth, input shape, mean/std, precision) and what is needed to trust it
(source checkpoint hash, tool versions, the parity check made at export).
"""

import json
from pathlib import Path

from dav2.errors import Dav2Error
from dav2.files import atomic_write_text

SCHEMA_VERSION = 1


def metadata_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_suffix(".json")


def write_metadata(artifact: str | Path, metadata: dict) -> Path:
    path = metadata_path(artifact)
    atomic_write_text(path, json.dumps({"schema": SCHEMA_VERSION, **metadata}, indent=2, sort_keys=True) + "\n")
    return path


def read_metadata(artifact: str | Path) -> dict | None:
    """The artifact's sidecar, or None when it has none (a model exported by another tool)."""
    path = metadata_path(artifact)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise Dav2Error(f"metadata file {path} is not valid JSON ({exc})") from exc


def output_meaning(kind: str) -> str:
    return "metres (smaller = nearer)" if kind == "metric" else "disparity (relative, larger = nearer)"
