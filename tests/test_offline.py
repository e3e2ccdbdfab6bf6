"""Without the Hugging Face hub, dav2-export stops at once with one line, or uses the hub's cache.

huggingface_hub alone retries an unreachable hub with back-off (about 25 s) before failing.
dav2 asks the hub once, without retries, and stops on the answer: the error then names that
answer ("unreachable or refused", "HF_HUB_OFFLINE is set"), which no retrying path produces.
The hub is made unreachable the same way on every machine, online or not: HF_ENDPOINT points at
a closed local port. Each case runs in a fresh process with an empty cache (HF_HOME=tmp).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # dav2-export in fresh processes

pytest.importorskip("huggingface_hub")

CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
REPO_FOLDER = "models--depth-anything--Depth-Anything-V2-Small"
COMMIT = "0" * 40


def hub_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "DAV2_CHECKPOINT"}
    return {**env, "HF_HOME": str(tmp_path / "hf"), **extra}


def export_without_checkpoint(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`dav2-export --encoder vits --onnx --output OUT`, in a fresh interpreter."""
    code = "import sys; from dav2.cli import export_main; export_main(sys.argv[1:])"
    command = [sys.executable, "-c", code, "--encoder", "vits", "--onnx", "--output", str(tmp_path / "out")]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)


def the_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_unreachable_hub_fails_at_once_in_one_line(tmp_path):
    done = export_without_checkpoint(tmp_path, hub_env(tmp_path, HF_ENDPOINT=CLOSED_PORT))
    line = the_error_line(done)
    assert f"{CLOSED_PORT} unreachable or refused" in line  # dav2's single question, not hf's retries
    assert "depth_anything_v2_vits.pth" in line and "--checkpoint PATH" in line and "DAV2_CHECKPOINT" in line
    assert not (tmp_path / "out").exists()


def test_hf_hub_offline_is_honoured(tmp_path):
    done = export_without_checkpoint(tmp_path, hub_env(tmp_path, HF_HUB_OFFLINE="1"))
    line = the_error_line(done)
    assert "HF_HUB_OFFLINE is set" in line and "not in the Hugging Face cache" in line
    assert not (tmp_path / "out").exists()


def cache_checkpoint(tmp_path: Path) -> Path:
    """The official vits file in huggingface_hub's cache layout, as a finished download leaves it."""
    repo = tmp_path / "hf" / "hub" / REPO_FOLDER
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    cached = repo / "snapshots" / COMMIT / "depth_anything_v2_vits.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"stand-in")
    return cached


@pytest.mark.parametrize(
    "no_hub", [{"HF_ENDPOINT": CLOSED_PORT}, {"HF_HUB_OFFLINE": "1"}], ids=["unreachable", "offline"]
)
def test_a_cached_checkpoint_is_used_without_the_hub(tmp_path, no_hub):
    cached = cache_checkpoint(tmp_path)
    code = (
        "from dav2.models.checkpoint import resolve_checkpoint\n"
        "from dav2.models.registry import checkpoint_info\n"
        "print(resolve_checkpoint(checkpoint_info('vits'), None))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=hub_env(tmp_path, **no_hub)
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve() == cached.resolve()


def test_downloads_keep_the_hubs_progress_bar(monkeypatch):
    """dav2 quiets huggingface_hub's warnings (they would bury the one error line), not its progress bar."""
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    from huggingface_hub.utils import are_progress_bars_disabled

    from dav2.models.checkpoint import hub_module

    hub_module()
    assert not are_progress_bars_disabled()
