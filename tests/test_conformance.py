"""The PyTorch model against upstream: strict keys for every official checkpoint, and upstream's
outputs for the seeded weights on real photographs (../shared/reference/cases.json)."""

import gc
import json

import cv2
import numpy as np
import pytest
import torch

from conftest import REFERENCE, load_reference, reference_cases, requires_shared, seeded_state_dict
from dav2 import processing
from dav2.models.checkpoint import build_model
from dav2.models.dpt import DepthAnythingV2

NETWORK_TOLERANCE = 1e-3
FULL_TOLERANCE = {"relative": 2e-3, "metric": 1e-2}
MANIFESTS = [(e, k) for e in ("vits", "vitb", "vitl", "vitg") for k in ("relative", "metric")]


@requires_shared
@pytest.mark.parametrize("encoder,kind", MANIFESTS)
def test_state_dict_matches_official_keys_and_shapes(encoder, kind):
    manifest = json.loads((REFERENCE / "manifests" / f"{encoder}_{kind}.json").read_text())
    with torch.device("meta"):
        model = DepthAnythingV2(encoder, metric=kind == "metric")
    ours = [[key, list(tensor.shape)] for key, tensor in model.state_dict().items()]
    assert ours == manifest["keys"]
    assert sum(t.numel() for t in model.state_dict().values()) == manifest["num_parameters"]


@requires_shared
@pytest.mark.parametrize("case", reference_cases(), ids=lambda c: c["name"])
def test_reference_case(case):
    torch.set_num_threads(max(1, torch.get_num_threads()))
    state_dict = seeded_state_dict(case["encoder"], case["kind"])
    model = build_model(state_dict, case["encoder"], case["kind"] == "metric", case["max_depth"] or 20.0)
    image = cv2.imread(str(REFERENCE / case["image"]))
    assert image.shape[:2] == tuple(case["image_hw"])

    tensor = processing.preprocess(image, case["input_size"])
    assert list(tensor.shape) == case["network_input_shape"]
    if "input" in case["files"]:
        np.testing.assert_array_equal(tensor[0], load_reference(case, "input"))

    with torch.inference_mode():
        network = model(torch.from_numpy(tensor))[0].numpy()
    assert np.abs(network - load_reference(case, "network")).max() <= NETWORK_TOLERANCE

    if "full" in case["files"]:
        full = processing.postprocess(network, image.shape[:2])
        assert full.shape == tuple(case["image_hw"])
        assert np.abs(full - load_reference(case, "full")).max() <= FULL_TOLERANCE[case["kind"]]
    del model, state_dict
    gc.collect()


@requires_shared
def test_infer_image_matches_upstream_full_output():
    case = next(c for c in reference_cases() if c["name"] == "vits_relative_demo08_518")
    model = build_model(seeded_state_dict("vits"), "vits", False, 20.0)
    depth = model.infer_image(cv2.imread(str(REFERENCE / case["image"])), 518)
    assert depth.dtype == np.float32
    assert np.abs(depth - load_reference(case, "full")).max() <= FULL_TOLERANCE["relative"]


@torch.no_grad()
def test_positional_embedding_follows_upstream_scale_factor():
    """Our separable bicubic equals torch's scale_factor bicubic (upstream) and not size= resampling."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    with torch.device("meta"):
        model = DepthAnythingV2("vits")
    model.to_empty(device="cpu")
    torch.nn.init.normal_(model.pretrained.pos_embed)
    grid = model.pretrained.pos_embed[0, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    for n_h, n_w in ((37, 56), (26, 39), (19, 29), (40, 40)):
        ours = model.pretrained.interpolate_pos_encoding(n_h * 14, n_w * 14)[0, 1:]
        upstream = F.interpolate(grid, scale_factor=((n_h + 0.1) / 37, (n_w + 0.1) / 37), mode="bicubic")
        upstream = upstream.permute(0, 2, 3, 1).reshape(-1, ours.shape[-1])
        by_size = F.interpolate(grid, size=(n_h, n_w), mode="bicubic").permute(0, 2, 3, 1).reshape(ours.shape)
        scale = upstream.abs().max()
        assert torch.abs(ours - upstream).max() < 5e-6 * scale  # float32 rounding only
        assert torch.abs(by_size - upstream).max() > 1e-2 * scale  # the check can tell them apart
    # at exactly 37x37 patches on a square image upstream uses the grid unchanged
    square = model.pretrained.interpolate_pos_encoding(518, 518)
    assert torch.equal(square, model.pretrained.pos_embed)
