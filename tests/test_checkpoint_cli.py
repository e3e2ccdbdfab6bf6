"""dav2-export on the checkpoints users have, through the command line: a transformers model folder
(config.json decides encoder, kind and max_depth), a wrapped and prefixed fine-tune, and the sidecar
recording the format and sha256 of what was read; bad ones are one `error:` line and nothing written."""

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dav2.cli import export_main
from dav2.metadata import ArtifactMetadata
from dav2.models.checkpoint import read_state_dict, sha256_file

pytestmark = pytest.mark.slow  # an export per case

FAST = ["--static", "--height", "196", "--width", "196"]  # a small traced graph: the parity check stays quick


def dav2_export(output, *args):
    return CliRunner().invoke(export_main, ["--output", str(output), *[str(a) for a in args]])


def artifact_of(result):
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


def assert_one_error(result, message: str) -> None:
    """Exit 1 with one `error:` line holding `message` (a progress line may precede it), no traceback."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1 and message in errors[0], result.output
    assert "Traceback" not in result.output


@pytest.fixture(autouse=True)
def no_checkpoint_env(monkeypatch):
    monkeypatch.delenv("DAV2_CHECKPOINT", raising=False)


@pytest.fixture(scope="module")
def hf_metric_folder(tmp_path_factory):
    """A Small-hf-shaped transformers metric model with random weights, saved with save_pretrained."""
    pytest.importorskip("transformers")
    pytest.importorskip("safetensors")
    from test_transformers_oracle import hf_model

    folder = tmp_path_factory.mktemp("hf") / "Depth-Anything-V2-Metric-Indoor-Small-hf"
    hf_model("metric", 20).save_pretrained(folder)
    return folder


def test_transformers_folder_exports_with_its_config(hf_metric_folder, tmp_path):
    """`dav2-export --checkpoint <HF model> --onnx`: no --encoder/--kind/--max-depth needed."""
    artifact = artifact_of(dav2_export(tmp_path, "--checkpoint", hf_metric_folder, "--onnx", *FAST))
    metadata = ArtifactMetadata.read(artifact)
    assert metadata.encoder == "vits" and metadata.kind == "metric" and metadata.max_depth == 20.0
    assert metadata.checkpoint == hf_metric_folder.name and metadata.checkpoint_format == "transformers"
    assert metadata.checkpoint_sha256 == sha256_file(hf_metric_folder / "model.safetensors")
    assert metadata.licence == "Apache-2.0"
    assert artifact.name.startswith("depth_anything_v2_metric_hypersim_vits")


def test_a_flag_that_contradicts_the_config_is_one_line(hf_metric_folder, tmp_path):
    result = dav2_export(tmp_path / "out", "--checkpoint", hf_metric_folder, "--kind", "relative", "--onnx")
    assert_one_error(result, "config disagrees with --kind relative")
    assert not (tmp_path / "out").exists()


def test_wrapped_prefixed_finetune_exports_metric(vits_metric_checkpoint, tmp_path):
    """upstream's metric_depth/train.py under DDP saves {'model': {'module.…': …}, 'optimizer': …}."""
    weights = read_state_dict(vits_metric_checkpoint)
    finetune = tmp_path / "finetune.ckpt"
    torch.save({"model": {"module." + k: v for k, v in weights.items()}, "epoch": 7}, finetune)
    args = ["--checkpoint", finetune, "--encoder", "vits", "--kind", "metric", "--max-depth", 20, "--onnx", *FAST]
    metadata = ArtifactMetadata.read(artifact_of(dav2_export(tmp_path / "m", *args)))
    assert metadata.kind == "metric" and metadata.max_depth == 20.0 and metadata.encoder == "vits"
    assert metadata.checkpoint == "finetune.ckpt" and metadata.checkpoint_format == "pth:model/module."
    assert metadata.checkpoint_sha256 == sha256_file(finetune)


def test_plain_file_without_encoder_or_kind_is_read_from_the_weights(vits_checkpoint, tmp_path):
    metadata = ArtifactMetadata.read(artifact_of(dav2_export(tmp_path, "--checkpoint", vits_checkpoint, *FAST)))
    assert metadata.encoder == "vits" and metadata.kind == "relative" and metadata.checkpoint_format == "pth"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--kind", "relative", "--max-depth", "20"], "--max-depth applies to --kind metric only"),
        (["--encoder", "vitb"], "is a vits checkpoint, but --encoder vitb was given"),
    ],
)
def test_bad_requests_are_one_line(vits_checkpoint, tmp_path, args, message):
    result = dav2_export(tmp_path / "out", "--checkpoint", vits_checkpoint, *args, *FAST)
    assert_one_error(result, message)
    assert not list(tmp_path.rglob("*.onnx"))


def test_broken_finetune_names_the_key(vits_checkpoint, tmp_path):
    weights = read_state_dict(vits_checkpoint)
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {**weights, "aux_head.weight": torch.zeros(2)}}, bad)
    result = dav2_export(tmp_path / "out", "--checkpoint", bad, *FAST)
    assert_one_error(result, "aux_head.weight")


def test_folder_without_config_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = dav2_export(tmp_path / "out", "--checkpoint", tmp_path / "empty")
    assert_one_error(result, "not a transformers model folder")
