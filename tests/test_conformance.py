"""The PyTorch model against upstream: upstream's outputs for the seeded weights on real photographs
(tests/data/reference, plus the vitb/vitl/vitg cases of the optional ../shared set)."""

import gc
import json

import cv2
import numpy as np
import pytest
import torch

from conftest import (
    DATA,
    IMAGES,
    MANIFESTS,
    REFERENCE,
    SHARED_REFERENCE,
    VIDEO,
    case_image,
    check_reference_input,
    load_reference,
    reference_case,
    reference_cases,
    require_data,
    requires_shared,
    seeded_state_dict,
)
from dav2 import processing
from dav2.models.checkpoint import build_model
from dav2.models.dpt import DepthAnythingV2

NETWORK_TOLERANCE = 1e-3
FULL_TOLERANCE = {"relative": 2e-3, "metric": 1e-2}
STORED_CASES = {
    "vits_relative_demo08_518": {"input", "network", "full"},
    "vits_relative_demo08_364": {"network", "full"},
    "vits_metric_demo08_518": {"network", "full"},
    "vits_relative_demo01_518": {"network"},
}


def test_test_data_is_complete():
    """Every clone carries the data the suite runs on (DAV2_REQUIRE_DATA=1 makes a gap a failure)."""
    cases = json.loads(require_data(REFERENCE / "cases.json", "conformance cases").read_text())
    assert {c["name"]: set(c["files"]) for c in cases} == STORED_CASES
    require_data(REFERENCE / "outputs.npz", "reference outputs")
    require_data(REFERENCE / "seeded_weights.json", "seeded weight fingerprints")
    for encoder in ("vits", "vitb", "vitl", "vitg"):
        for kind in ("relative", "metric"):
            require_data(MANIFESTS / f"{encoder}_{kind}.json", "tensor manifest")
    require_data(VIDEO, "sample video")
    assert len(list(require_data(IMAGES, "photographs").glob("*.jpg"))) >= 12
    for case in cases:
        require_data(DATA / case["image"], "conformance photograph")


@pytest.mark.parametrize("case", reference_cases())
def test_reference_case(case):
    image = cv2.imread(str(case_image(case)))
    assert image.shape[:2] == tuple(case["image_hw"])
    state_dict = seeded_state_dict(case["encoder"], case["kind"])
    model = build_model(state_dict, case["encoder"], case["kind"] == "metric", case["max_depth"] or 20.0)

    tensor = processing.preprocess(image, case["input_size"])
    assert list(tensor.shape) == case["network_input_shape"]
    if "input" in case["files"]:
        check_reference_input(case, tensor[0])

    with torch.inference_mode():
        network = model(torch.from_numpy(tensor))[0].numpy()
    assert np.abs(network - load_reference(case, "network")).max() <= NETWORK_TOLERANCE

    if "full" in case["files"]:
        full = processing.postprocess(network, image.shape[:2])
        assert full.shape == tuple(case["image_hw"])
        assert np.abs(full - load_reference(case, "full")).max() <= FULL_TOLERANCE[case["kind"]]
    del model, state_dict
    gc.collect()


def test_infer_image_matches_upstream_full_output():
    case = reference_case("vits_relative_demo08_518")
    model = build_model(seeded_state_dict("vits"), "vits", False, 20.0)
    depth = model.infer_image(cv2.imread(str(case_image(case))), 518)
    assert depth.dtype == np.float32
    assert np.abs(depth - load_reference(case, "full")).max() <= FULL_TOLERANCE["relative"]


@requires_shared
@pytest.mark.parametrize("name", sorted(STORED_CASES))
def test_stored_reference_matches_the_shared_one(name):
    """tests/data keeps upstream's arrays within the bound its README states (2**-15)."""
    ours = reference_case(name)
    shared = {**next(c for c in json.loads((SHARED_REFERENCE / "cases.json").read_text()) if c["name"] == name)}
    shared["source"] = "shared"
    assert ours["files"]["network"]["max_abs_error"] == 2.0**-15
    assert {k: v for k, v in ours.items() if k not in ("files", "image", "source")} == {
        k: v for k, v in shared.items() if k not in ("files", "image", "source")
    }
    assert case_image(ours).read_bytes() == case_image(shared).read_bytes()
    for which in ("network", "full"):
        if which in shared["files"]:
            assert which in ours["files"]
            exact = load_reference(shared, which)
            stored = load_reference(ours, which)
            assert stored.shape == exact.shape and stored.dtype == np.float32
            assert np.abs(stored - exact).max() <= ours["files"][which]["max_abs_error"]
    if "input" in shared["files"]:
        check_reference_input(ours, np.load(SHARED_REFERENCE / shared["files"]["input"]))


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


@pytest.mark.parametrize("name", ["vits_relative_demo08_518", "vits_relative_demo08_364", "vits_metric_demo08_518"])
def test_fast_float32_preprocessing_keeps_upstream_tolerances(name):
    """The runtime's float32 preprocessing (processing.FastPreprocessor) is not bit-exact, but the
    network's output stays within the same tolerances against upstream as the exact path's."""
    case = reference_case(name)
    image = cv2.imread(str(case_image(case)))
    exact = processing.preprocess(image, case["input_size"])
    fast = processing.FastPreprocessor()(image, case["input_size"])
    assert fast.shape == exact.shape and fast.dtype == np.float32
    assert np.abs(fast - exact).max() <= 5e-4  # normalised units
    model = build_model(
        seeded_state_dict("vits", case["kind"]), "vits", case["kind"] == "metric", case["max_depth"] or 20.0
    )
    with torch.inference_mode():
        network = model(torch.from_numpy(fast))[0].numpy()
    assert np.abs(network - load_reference(case, "network")).max() <= NETWORK_TOLERANCE
    full = processing.postprocess(network, image.shape[:2])
    assert np.abs(full - load_reference(case, "full")).max() <= FULL_TOLERANCE[case["kind"]]
