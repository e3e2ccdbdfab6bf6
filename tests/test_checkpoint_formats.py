"""Checkpoints in the forms users have: wrapped and prefixed fine-tunes, safetensors, half precision; every
one loads strictly into the same weights, records its format and sha256, and a bad one fails in one line."""

import os
from pathlib import Path

import pytest
import torch

from dav2.errors import Dav2Error
from dav2.models.checkpoint import (
    CheckpointFormat,
    load_model,
    looks_like_repo_id,
    read_state_dict,
    resolve_checkpoint,
    sha256_file,
)
from dav2.models.registry import checkpoint_info

safetensors_torch = pytest.importorskip("safetensors.torch")


@pytest.fixture(scope="module")
def plain(vits_checkpoint) -> dict[str, torch.Tensor]:
    return read_state_dict(vits_checkpoint)


def prefixed(state_dict: dict, prefix: str) -> dict:
    return {prefix + key: value for key, value in state_dict.items()}


WRAPPED = {
    "model": (lambda sd: {"model": sd}, ("model",)),
    "state_dict": (lambda sd: {"state_dict": sd, "epoch": 3}, ("state_dict",)),
    "ddp": (lambda sd: prefixed(sd, "module."), ("module.",)),
    "train.py": (  # upstream's metric_depth/train.py under DistributedDataParallel
        lambda sd: {"model": prefixed(sd, "module."), "optimizer": {"lr": 5e-6}, "epoch": 7, "previous_best": {}},
        ("model", "module."),
    ),
    "lightning": (lambda sd: {"state_dict": prefixed(sd, "model."), "global_step": 10}, ("state_dict", "model.")),
    "compiled": (lambda sd: prefixed(sd, "_orig_mod."), ("_orig_mod.",)),
}


def assert_same_weights(model, state_dict):
    ours = model.state_dict()
    assert list(ours) == list(state_dict)
    for key, value in state_dict.items():
        assert torch.equal(ours[key], value), key


@pytest.mark.parametrize("name", list(WRAPPED))
def test_wrapped_and_prefixed_finetunes_load(name, plain, tmp_path, monkeypatch):
    monkeypatch.delenv("DAV2_CHECKPOINT", raising=False)
    wrap, unwrapped = WRAPPED[name]
    path = tmp_path / "finetune.pth"
    torch.save(wrap(plain), path)
    model, source = load_model("vits", "relative", None, str(path))
    assert_same_weights(model, plain)
    assert source.format == CheckpointFormat.PTH and source.unwrapped == unwrapped
    assert source.label == "pth:" + "/".join(unwrapped)
    assert source.sha256 == sha256_file(path) and source.name == "finetune.pth"


def test_official_file_records_plain_pth(vits_checkpoint, monkeypatch):
    monkeypatch.delenv("DAV2_CHECKPOINT", raising=False)
    model, source = load_model("vits", "relative", None, str(vits_checkpoint))
    assert source.label == "pth" and source.unwrapped == ()
    # path-like, so callers that used the second value as the checkpoint's path keep working
    assert Path(source) == vits_checkpoint and os.fspath(source) == str(vits_checkpoint)
    assert sha256_file(source) == source.sha256


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_safetensors_of_the_official_layout(dtype, plain, tmp_path, monkeypatch):
    monkeypatch.delenv("DAV2_CHECKPOINT", raising=False)
    path = tmp_path / "depth_anything_v2_metric_hypersim_vits.safetensors"
    safetensors_torch.save_file({k: v.to(dtype).contiguous() for k, v in plain.items()}, str(path))
    model, source = load_model("vits", "metric", 20, str(path))
    assert model.metric and model.max_depth == 20.0
    assert source.format == CheckpointFormat.SAFETENSORS and source.label == "safetensors"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    if dtype == torch.float32:
        assert_same_weights(model, plain)


def test_encoder_taken_from_the_weights_when_not_given(plain, tmp_path, monkeypatch):
    monkeypatch.delenv("DAV2_CHECKPOINT", raising=False)
    path = tmp_path / "m.pth"
    torch.save({"model": plain}, path)
    model, _ = load_model(None, None, None, str(path))
    assert model.encoder == "vits" and not model.metric


def test_extra_key_in_a_wrapped_finetune_is_named(plain, tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"model": prefixed({**plain, "aux_head.weight": torch.zeros(2)}, "module.")}, path)
    with pytest.raises(Dav2Error, match=r"unexpected: aux_head.weight") as error:
        load_model("vits", "relative", None, str(path))
    assert "\n" not in str(error.value)


def test_wrong_shape_is_named_with_both_shapes(plain, tmp_path):
    path = tmp_path / "bad.safetensors"
    bad = dict(plain)
    bad["depth_head.scratch.output_conv2.2.weight"] = torch.zeros(2, 32, 1, 1)
    safetensors_torch.save_file(bad, str(path))
    message = (
        r"wrong shape \(file vs model\): depth_head.scratch.output_conv2.2.weight \[2, 32, 1, 1\] vs \[1, 32, 1, 1\]"
    )
    with pytest.raises(Dav2Error, match=message) as error:
        load_model("vits", "relative", None, str(path))
    assert "\n" not in str(error.value)


def test_many_missing_keys_are_counted_not_listed(plain, tmp_path):
    path = tmp_path / "half.pth"
    torch.save({k: v for k, v in plain.items() if not k.startswith("depth_head.")}, path)
    with pytest.raises(Dav2Error, match=r"missing: depth_head\.\S+, depth_head\.\S+, depth_head\.\S+ \(\+\d+ more\)"):
        load_model("vits", "relative", None, str(path))


def test_dict_without_tensors_is_refused(tmp_path):
    path = tmp_path / "opt.pth"
    torch.save({"optimizer": {"lr": 1.0}, "epoch": 3}, path)
    with pytest.raises(Dav2Error, match="does not hold a state_dict of tensors"):
        read_state_dict(path)


def test_broken_safetensors_is_one_line(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(Dav2Error, match="not a readable safetensors file"):
        read_state_dict(path)


def test_repo_ids_are_told_from_paths():
    assert looks_like_repo_id("depth-anything/Depth-Anything-V2-Small-hf")
    assert not looks_like_repo_id("models/finetune.pth")
    assert not looks_like_repo_id("/abs/path")
    assert not looks_like_repo_id("a/b/c")


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(Dav2Error, match="folder without config.json"):
        resolve_checkpoint(checkpoint_info("vits"), str(tmp_path))


def test_unreachable_repo_id_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Dav2Error, match=r"no local file or folder, and could not be downloaded") as error:
        resolve_checkpoint(checkpoint_info("vits"), "someone/Depth-Anything-V2-Small-hf")
    assert "\n" not in str(error.value)


def test_transformers_repos_in_the_registry():
    assert checkpoint_info("vits").transformers_repo == "depth-anything/Depth-Anything-V2-Small-hf"
    indoor = checkpoint_info("vitb", "metric", 20).transformers_repo
    assert indoor == "depth-anything/Depth-Anything-V2-Metric-Indoor-Base-hf"
    assert (
        checkpoint_info("vitl", "metric", 80).transformers_repo
        == "depth-anything/Depth-Anything-V2-Metric-Outdoor-Large-hf"
    )
    assert checkpoint_info("vitg").transformers_repo is None
