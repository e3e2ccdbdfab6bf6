"""Checkpoint loading: registry, strictness, untrusted files, offline download."""

import pytest
import torch

from dav2.errors import Dav2Error
from dav2.models.checkpoint import build_model, download_checkpoint, read_state_dict, resolve_checkpoint
from dav2.models.registry import checkpoint_info


def test_registry_names_licences_and_hub_repos():
    small = checkpoint_info("vits")
    assert small.filename == "depth_anything_v2_vits.pth" and small.licence == "Apache-2.0" and not small.non_commercial
    assert small.hub_repo == "depth-anything/Depth-Anything-V2-Small"
    large = checkpoint_info("vitl")
    assert large.licence == "CC-BY-NC-4.0" and large.non_commercial
    outdoor = checkpoint_info("vitb", "metric", 80)
    assert outdoor.filename == "depth_anything_v2_metric_vkitti_vitb.pth"
    assert outdoor.hub_repo == "depth-anything/Depth-Anything-V2-Metric-VKITTI-Base"
    assert checkpoint_info("vits", "metric").filename == "depth_anything_v2_metric_hypersim_vits.pth"
    assert checkpoint_info("vitg").hub_repo is None


def fake_state_dict(embed_dim: int) -> dict:
    return {"pretrained.pos_embed": torch.zeros(1, 1370, embed_dim)}


def test_wrong_encoder_is_named():
    with pytest.raises(Dav2Error, match="is a vitb checkpoint, but --encoder vits was given"):
        build_model(fake_state_dict(768), "vits", False, 20.0)


def test_missing_and_unexpected_keys_are_named(vits_checkpoint):
    state_dict = read_state_dict(vits_checkpoint)
    state_dict = dict(state_dict)
    state_dict.pop("depth_head.scratch.output_conv1.bias")
    state_dict["extra.weight"] = torch.zeros(1)
    with pytest.raises(Dav2Error, match=r"missing: depth_head.scratch.output_conv1.bias; unexpected: extra.weight"):
        build_model(state_dict, "vits", False, 20.0)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(Dav2Error, match="not a readable PyTorch checkpoint"):
        read_state_dict(path)


class Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"pretrained.pos_embed": Payload()}, path)
    with pytest.raises(Dav2Error, match="not a readable PyTorch checkpoint"):
        read_state_dict(path)


def test_missing_local_checkpoint(tmp_path, monkeypatch):
    monkeypatch.delenv("DAV2_CHECKPOINT", raising=False)
    with pytest.raises(Dav2Error, match="checkpoint not found"):
        resolve_checkpoint(checkpoint_info("vits"), str(tmp_path / "nope.pth"))


def test_environment_variable_names_the_checkpoint(vits_checkpoint, monkeypatch):
    monkeypatch.setenv("DAV2_CHECKPOINT", str(vits_checkpoint))
    assert resolve_checkpoint(checkpoint_info("vits"), None) == vits_checkpoint


def test_offline_download_says_how_to_pass_a_local_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(Dav2Error, match=r"--checkpoint PATH or set DAV2_CHECKPOINT=PATH"):
        download_checkpoint(checkpoint_info("vits"))


def test_unpublished_giant_says_so():
    with pytest.raises(Dav2Error, match="never published"):
        download_checkpoint(checkpoint_info("vitg"))
