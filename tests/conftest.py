"""Shared fixtures: the conformance reference in ../shared, seeded checkpoints, exported models.

../shared (beside the repository) holds upstream's outputs for deterministic seeded weights
and real photographs; tests read it in place and never copy it into the project.
"""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DAV2_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"
IMAGES = SHARED / "images"
VIDEOS = SHARED / "videos"

requires_shared = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no conformance reference at {REFERENCE}")


def load_seeded_module():
    spec = importlib.util.spec_from_file_location("seeded_checkpoint", REFERENCE / "seeded_checkpoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_cases() -> list[dict]:
    if not REFERENCE.is_dir():
        return []
    return json.loads((REFERENCE / "cases.json").read_text())


def seeded_state_dict(encoder: str, kind: str = "relative"):
    """The seeded weights as torch tensors (sharing numpy's memory: no second copy)."""
    import torch

    seeded = load_seeded_module()
    manifest = seeded.load_manifest(encoder, kind)
    return {k: torch.from_numpy(v) for k, v in seeded.seeded_state_dict(manifest["keys"]).items()}


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


def write_seeded_checkpoint(folder: Path, encoder: str, kind: str, filename: str) -> Path:
    """An upstream-format .pth with the seeded weights, written as upstream's script does."""
    import torch

    if not REFERENCE.is_dir():
        pytest.skip(f"no conformance reference at {REFERENCE}")
    path = folder / filename
    torch.save(seeded_state_dict(encoder, kind), path)
    return path


@pytest.fixture(scope="session")
def vits_checkpoint(checkpoint_dir) -> Path:
    return write_seeded_checkpoint(checkpoint_dir, "vits", "relative", "depth_anything_v2_vits.pth")


@pytest.fixture(scope="session")
def vits_metric_checkpoint(checkpoint_dir) -> Path:
    return write_seeded_checkpoint(checkpoint_dir, "vits", "metric", "depth_anything_v2_metric_hypersim_vits.pth")


def export(checkpoint: Path, output: Path, *args: str) -> Path:
    """Run dav2-export in-process as a user would; return the artifact path it printed."""
    from click.testing import CliRunner

    from dav2.cli import export_main

    result = CliRunner().invoke(export_main, ["--checkpoint", str(checkpoint), "--output", str(output), *args])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def dynamic_onnx(vits_checkpoint, tmp_path_factory) -> Path:
    return export(vits_checkpoint, tmp_path_factory.mktemp("dynamic"), "--onnx", "--dynamic")


@pytest.fixture(scope="session")
def static_onnx(vits_checkpoint, tmp_path_factory) -> Path:
    """Static 518x784: the network size upstream uses for demo08.jpg (425x640) at input_size 518."""
    return export(vits_checkpoint, tmp_path_factory.mktemp("static"), "--onnx", "--height", "518", "--width", "784")


def load_reference(case: dict, which: str) -> np.ndarray:
    return np.load(REFERENCE / case["files"][which])
