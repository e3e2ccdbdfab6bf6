"""An independent oracle: transformers' own DepthAnythingForDepthEstimation.

A Small-hf-shaped model with random weights is saved with `save_pretrained` (config.json +
model.safetensors, as the `*-hf` hub repositories hold), loaded by dav2 and compared with
transformers' forward pass, then exported by dav2-export and compared again in ONNX Runtime.

At 518x518 both keep the 37x37 positional embedding as it is, so they must agree to float
rounding. At other sizes transformers resizes it with `size=(n_h, n_w)` while upstream (and
dav2) uses `scale_factor=(n + 0.1) / 37`: the sampling positions differ slightly, and so do the
outputs (measured below); dav2 follows upstream, and equals transformers once transformers is
given upstream's arithmetic.
"""

import numpy as np
import pytest
import torch

from conftest import ROOT
from dav2.models.checkpoint import CheckpointFormat, load_model

pytestmark = pytest.mark.slow  # transformers models built and exported

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

TOLERANCE = 1e-4  # of the output's scale (its largest magnitude)
SMALL = {  # Depth-Anything-V2-Small-hf's config, without the random parts
    "backbone": {
        "hidden_size": 384,
        "num_attention_heads": 6,
        "num_hidden_layers": 12,
        "out_indices": [3, 6, 9, 12],
        "image_size": 518,
        "patch_size": 14,
        "layerscale_value": 1.0,
        "mlp_ratio": 4,
        "apply_layernorm": True,
        "reshape_hidden_states": False,
    },
    "reassemble_hidden_size": 384,
    "neck_hidden_sizes": [48, 96, 192, 384],
    "fusion_hidden_size": 64,
}


def hf_model(kind: str, max_depth: int = 1, seed: int = 0):
    """A random DepthAnythingForDepthEstimation shaped like Depth-Anything-V2-Small-hf.

    transformers' initialisation leaves biases at zero and layer scales at one; every tensor is
    perturbed so that a tensor mapped to the wrong place (or transposed) changes the output, and
    the convolutions are scaled so that the depth map varies (std/max about 0.15)."""
    torch.manual_seed(seed)
    backbone = transformers.Dinov2Config(**SMALL["backbone"])
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=SMALL["reassemble_hidden_size"],
        neck_hidden_sizes=SMALL["neck_hidden_sizes"],
        fusion_hidden_size=SMALL["fusion_hidden_size"],
        depth_estimation_type=kind,
        max_depth=max_depth,
    )
    model = transformers.DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.add_(torch.randn_like(param) * (0.1 if name.endswith(("lambda1", "norm1.weight")) else 0.02))
            if param.ndim == 4:  # convolutions at 1/sqrt(fan_in): transformers' 0.02 flattens the output
                param.normal_(0, param[0].numel() ** -0.5)
        model.head.conv3.bias.fill_(0.5)  # keep the relative head's ReLU (and the sigmoid) away from its flat ends
    return model


@pytest.fixture(scope="module", params=["relative", "metric"])
def saved(request, tmp_path_factory):
    """(kind, transformers model, its save_pretrained folder)."""
    kind = request.param
    model = hf_model(kind, 20 if kind == "metric" else 1)
    folder = (
        tmp_path_factory.mktemp(f"hf-{kind}") / f"Depth-Anything-V2-{'Metric-Indoor-' * (kind == 'metric')}Small-hf"
    )
    model.save_pretrained(folder)
    return kind, model, folder


def image(height: int, width: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, 3, height, width, generator=generator)


def transformers_depth(model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(pixel_values=x).predicted_depth.numpy()


def dav2_depth(model, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def test_folder_loads_with_config_values(saved, monkeypatch):
    monkeypatch.delenv("DAV2_CHECKPOINT", raising=False)
    kind, _, folder = saved
    model, source = load_model(checkpoint=str(folder))
    assert model.encoder == "vits" and model.metric == (kind == "metric")
    assert model.max_depth == 20.0 or kind == "relative"
    assert source.format == CheckpointFormat.TRANSFORMERS and source.label == "transformers"
    assert source.path == folder / "model.safetensors" and source.name == folder.name


def test_matches_transformers_at_518(saved, monkeypatch):
    monkeypatch.delenv("DAV2_CHECKPOINT", raising=False)
    kind, theirs, folder = saved
    ours, _ = load_model(checkpoint=str(folder))
    x = image(518, 518)
    expected = transformers_depth(theirs, x)
    got = dav2_depth(ours, x)
    assert got.shape == expected.shape == (1, 518, 518)
    assert expected.std() > 1e-3 * np.abs(expected).max()  # not a flat output that would hide errors
    assert relative_error(got, expected) <= TOLERANCE
    if kind == "metric":
        assert theirs.config.max_depth == 20 and 0 < expected.max() <= 20


def test_relative_max_depth_factor_is_folded_exactly(tmp_path, monkeypatch):
    """transformers' relative head multiplies by config.max_depth; a config with 3 still matches."""
    monkeypatch.delenv("DAV2_CHECKPOINT", raising=False)
    theirs = hf_model("relative", 3, seed=2)
    theirs.save_pretrained(tmp_path / "m")
    ours, _ = load_model(checkpoint=str(tmp_path / "m"))
    x = image(518, 518)
    assert relative_error(dav2_depth(ours, x), transformers_depth(theirs, x)) <= TOLERANCE


def upstream_pos_encoding(embeddings_module):
    """transformers' interpolate_pos_encoding with upstream's arithmetic (scale_factor with the 0.1 offset)."""

    def interpolate(embeddings, height, width):
        table = embeddings_module.position_embeddings
        n_h, n_w = height // 14, width // 14
        if n_h * n_w == table.shape[1] - 1 and height == width:
            return table
        grid = table[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
        grid = torch.nn.functional.interpolate(
            grid, scale_factor=((n_h + 0.1) / 37, (n_w + 0.1) / 37), mode="bicubic", align_corners=False
        )
        assert grid.shape[-2:] == (n_h, n_w)
        return torch.cat((table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, n_h * n_w, -1)), dim=1)

    return interpolate


@pytest.mark.parametrize("height,width", [(518, 784), (364, 364)])
def test_other_sizes_follow_upstream_not_transformers(saved, height, width, monkeypatch):
    monkeypatch.delenv("DAV2_CHECKPOINT", raising=False)
    _, theirs, folder = saved
    ours, _ = load_model(checkpoint=str(folder))
    x = image(height, width)
    got = dav2_depth(ours, x)
    plain = relative_error(got, transformers_depth(theirs, x))
    embeddings = theirs.backbone.embeddings
    monkeypatch.setattr(embeddings, "interpolate_pos_encoding", upstream_pos_encoding(embeddings))
    as_upstream = relative_error(got, transformers_depth(theirs, x))
    print(
        f"{height}x{width}: dav2 vs transformers {plain:.2e}, vs transformers with upstream's resize {as_upstream:.2e}"
    )
    assert as_upstream <= TOLERANCE < plain


def test_exported_onnx_matches_transformers(saved, tmp_path, monkeypatch):
    """dav2-export on the transformers folder (named by DAV2_CHECKPOINT: the command's --checkpoint takes
    files only until the CLI is wired), run in ONNX Runtime, against transformers at 518x518."""
    from click.testing import CliRunner

    from dav2.cli import export_main
    from dav2.metadata import ArtifactMetadata, sidecar_path

    ort = pytest.importorskip("onnxruntime")
    kind, theirs, folder = saved
    monkeypatch.setenv("DAV2_CHECKPOINT", str(folder))
    flags = ["--kind", "metric", "--max-depth", "20"] if kind == "metric" else []
    result = CliRunner().invoke(export_main, ["--output", str(tmp_path), "--onnx", *flags])
    assert result.exit_code == 0, result.output
    artifact = tmp_path / result.stdout.strip().splitlines()[-1]
    metadata = ArtifactMetadata.from_json(sidecar_path(artifact).read_text())
    assert metadata.kind == kind and metadata.encoder == "vits"
    assert metadata.checkpoint_sha256 == load_model(checkpoint=str(folder))[1].sha256
    x = image(518, 518)
    session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert relative_error(got, transformers_depth(theirs, x)) <= TOLERANCE
    assert ROOT  # the export ran in-process from this checkout
