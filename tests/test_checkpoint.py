"""Checkpoint loading: official keys and shapes, the seeded stand-in weights, registry, strictness,
untrusted files, offline download."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import (
    REFERENCE,
    ROOT,
    SHARED_REFERENCE,
    load_manifest,
    require_data,
    requires_shared,
    seeded,
    seeded_weights_sha256,
)
from dav2.errors import Dav2Error
from dav2.models.checkpoint import build_model, download_checkpoint, read_state_dict, resolve_checkpoint
from dav2.models.registry import checkpoint_info

MANIFESTS = [(e, k) for e in ("vits", "vitb", "vitl", "vitg") for k in ("relative", "metric")]


@pytest.mark.parametrize("encoder,kind", MANIFESTS)
def test_state_dict_matches_official_keys_and_shapes(encoder, kind):
    """Built on the meta device (no memory): every key and shape, in order, as upstream's checkpoint."""
    manifest = load_manifest(encoder, kind)
    ours = [[key, shape] for key, shape in seeded.model_keys(encoder, kind)]
    assert ours == manifest["keys"]
    assert sum(int(np.prod(shape)) for _, shape in ours) == manifest["num_parameters"]


@pytest.mark.parametrize(
    "encoder", ["vits", "vitb", pytest.param("vitl", marks=pytest.mark.slow)]
)  # vitl: 335M weights
def test_seeded_weights_match_their_recorded_fingerprint(encoder):
    """scripts/seeded_checkpoint.py regenerates upstream's seeded weights bit for bit (sha256 of every value)."""
    recorded = json.loads(require_data(REFERENCE / "seeded_weights.json", "seeded fingerprints").read_text())
    expected = recorded["encoders"][encoder]
    for kind in ("relative", "metric"):
        keys = seeded.model_keys(encoder, kind)
        assert len(keys) == expected["tensors"]
        assert seeded_weights_sha256(keys) == expected["sha256"]


def load_upstream_seeding():
    spec = importlib.util.spec_from_file_location(
        "upstream_seeded_checkpoint", SHARED_REFERENCE / "seeded_checkpoint.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@requires_shared
@pytest.mark.parametrize("encoder,kind", MANIFESTS)
def test_seeding_rule_is_upstreams(encoder, kind):
    """Against the reference's own seeded_checkpoint.py: the scale and offset of every tensor, and for vits every
    value bit for bit (the others' values are covered by the fingerprints above)."""
    upstream = load_upstream_seeding()
    manifest = upstream.load_manifest(encoder, kind)
    for key, shape in manifest["keys"]:
        assert seeded.scale_and_offset(key, shape) == upstream._scale_offset(key, shape), key
    if encoder == "vits":
        ours = seeded.seeded_arrays(seeded.model_keys(encoder, kind))
        theirs = upstream.seeded_state_dict(manifest["keys"])
        assert list(ours) == list(theirs)
        for key, value in theirs.items():
            assert ours[key].dtype == value.dtype == np.float32
            assert ours[key].tobytes() == value.tobytes(), key


def test_script_writes_an_official_format_checkpoint(tmp_path):
    out = tmp_path / "depth_anything_v2_metric_hypersim_vits.pth"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "seeded_checkpoint.py"), "vits", "metric", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "239 tensors, 24785089 parameters" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no partial file left behind
    state_dict = torch.load(out, weights_only=True)  # a plain state_dict: loads without pickled code
    assert [[k, list(v.shape)] for k, v in state_dict.items()] == load_manifest("vits", "metric")["keys"]
    model = build_model(state_dict, "vits", True, 20.0)  # strict
    key = "depth_head.scratch.output_conv2.2.bias"
    assert torch.equal(model.state_dict()[key], torch.from_numpy(seeded.seeded_tensor(key, [1])))


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
