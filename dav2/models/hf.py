"""Hugging Face transformers checkpoints of Depth Anything V2, mapped onto upstream's names.

The `*-hf` repositories (depth-anything/Depth-Anything-V2-Small-hf, ...-Metric-Indoor-Small-hf)
hold a `config.json` and a `model.safetensors` written by transformers'
`DepthAnythingForDepthEstimation`. The network is the same as upstream's; only the names
differ (`backbone.encoder.layer.N.attention.attention.query` vs `pretrained.blocks.N.attn.qkv`,
the fusion stages in reverse order, the head's three convolutions) and q/k/v are three
matrices instead of one. Mapping the tensors (instead of running transformers) keeps one model
in the project, so every export path and the upstream conformance tests apply unchanged.

The config decides encoder, relative/metric and max_depth; every architectural field the
mapping relies on is checked against the encoder table, so a model of another shape fails in
one line instead of loading wrongly. transformers' relative head multiplies its ReLU by
`max_depth` (1 in the published configs); a different factor is folded into the last
convolution (ReLU(s*x) = s*ReLU(x) for s > 0), so the output equals transformers' exactly.
The config is read with dav2.jsonfile (size and depth bounded) and every field used is checked
for its type first: a config that is a list, nests the wrong things or has text where a number
belongs is one line naming the field.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from dav2.errors import Dav2Error, quote
from dav2.jsonfile import expect, finite_number, read_json
from dav2.vocabulary import PATCH_SIZE, ModelKind, encoder_from_embed_dim, encoder_spec

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
HF_PREFIXES = ("backbone.", "neck.", "head.")
# the transformers side of the fixed renames (the per-layer ones are in `layer_renames`)
FIXED = {
    "backbone.embeddings.cls_token": "pretrained.cls_token",
    "backbone.embeddings.mask_token": "pretrained.mask_token",
    "backbone.embeddings.position_embeddings": "pretrained.pos_embed",
    "backbone.embeddings.patch_embeddings.projection.weight": "pretrained.patch_embed.proj.weight",
    "backbone.embeddings.patch_embeddings.projection.bias": "pretrained.patch_embed.proj.bias",
    "backbone.layernorm.weight": "pretrained.norm.weight",
    "backbone.layernorm.bias": "pretrained.norm.bias",
    "head.conv1.weight": "depth_head.scratch.output_conv1.weight",
    "head.conv1.bias": "depth_head.scratch.output_conv1.bias",
    "head.conv2.weight": "depth_head.scratch.output_conv2.0.weight",
    "head.conv2.bias": "depth_head.scratch.output_conv2.0.bias",
    "head.conv3.weight": "depth_head.scratch.output_conv2.2.weight",
    "head.conv3.bias": "depth_head.scratch.output_conv2.2.bias",
}
BLOCK_RENAMES = {  # inside backbone.encoder.layer.N. -> pretrained.blocks.N.
    "norm1.": "norm1.",
    "norm2.": "norm2.",
    "attention.output.dense.": "attn.proj.",
    "attention.o_proj.": "attn.proj.",  # transformers >= 5 in memory
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1.": "mlp.fc1.",
    "mlp.fc2.": "mlp.fc2.",
    "mlp.weights_in.": "mlp.w12.",
    "mlp.weights_out.": "mlp.w3.",
    "mlp.down_proj.": "mlp.w3.",
}
# q, k, v (or SwiGLU's gate, up) are separate matrices in transformers, one in upstream
JOINED = {
    "attn.qkv.": (
        ("attention.attention.query.", "attention.attention.key.", "attention.attention.value."),
        ("attention.q_proj.", "attention.k_proj.", "attention.v_proj."),
    ),
    "mlp.w12.": (("mlp.gate_proj.", "mlp.up_proj."),),
}
FUSION_RENAMES = {
    "projection.": "out_conv.",
    "residual_layer1.convolution1.": "resConfUnit1.conv1.",
    "residual_layer1.convolution2.": "resConfUnit1.conv2.",
    "residual_layer2.convolution1.": "resConfUnit2.conv1.",
    "residual_layer2.convolution2.": "resConfUnit2.conv2.",
}


@dataclass(frozen=True)
class HFModelConfig:
    """What a transformers config.json says about the model, in this project's words."""

    encoder: str
    kind: ModelKind
    max_depth: float | None  # metres for metric models; None for relative
    output_scale: float = 1.0  # transformers' relative head multiplies by config.max_depth


def is_hf_state_dict(state_dict: dict) -> bool:
    """True when the keys are transformers' (backbone./neck./head.) rather than upstream's."""
    return bool(state_dict) and all(key.startswith(HF_PREFIXES) for key in state_dict)


def read_hf_config(path: Path) -> HFModelConfig:
    """Parse and check a DepthAnythingForDepthEstimation config.json."""
    where = f"{quote(path)}"
    config = expect(read_json(path, "transformers config"), dict, f"{where} (a transformers config.json)")
    if config.get("model_type") != "depth_anything":
        found = config.get("model_type")
        raise Dav2Error(f"{where} is not a Depth Anything config (model_type {str(found)[:40]!r})")
    backbone = expect(config.get("backbone_config") or {}, dict, f"{where}: backbone_config")
    hidden = backbone.get("hidden_size", 0)
    encoder = encoder_from_embed_dim(int(expect(hidden, int, f"{where}: backbone_config.hidden_size")))
    if encoder is None:
        raise Dav2Error(f"{where}: backbone hidden_size {hidden} is no DINOv2 encoder")
    check_architecture(path, config, backbone, encoder)
    kind_text = expect(config.get("depth_estimation_type", "relative"), str, f"{where}: depth_estimation_type")
    if kind_text not in ModelKind.values():
        raise Dav2Error(f"{where}: depth_estimation_type {kind_text[:40]!r} is none of {', '.join(ModelKind.values())}")
    kind = ModelKind(kind_text)
    scale = config.get("max_depth")
    if kind == ModelKind.METRIC:
        if scale is None or finite_number(scale, f"{where}: max_depth") <= 0:
            raise Dav2Error(f"{where}: a metric config needs a positive max_depth (found {scale!r})")
        return HFModelConfig(encoder, kind, float(scale))
    scale = 1.0 if scale is None else finite_number(scale, f"{where}: max_depth")
    if scale <= 0:
        raise Dav2Error(f"{where}: max_depth {scale} would make the relative output non-positive")
    return HFModelConfig(encoder, kind, None, scale)


def check_architecture(path: Path, config: dict, backbone: dict, encoder: str) -> None:
    """Every config field the mapping assumes, compared with the encoder table, in one error."""
    spec = encoder_spec(encoder)
    expected = {
        "patch_size": PATCH_SIZE,
        "reassemble_hidden_size": spec.embed_dim,
        "neck_hidden_sizes": list(spec.out_channels),
        "fusion_hidden_size": spec.features,
        "reassemble_factors": [4, 2, 1, 0.5],
        "head_hidden_size": 32,
        "head_in_index": -1,
        "backbone.num_hidden_layers": spec.depth,
        "backbone.num_attention_heads": spec.num_heads,
        "backbone.out_indices": [i + 1 for i in spec.tapped_layers],  # 0 is the embeddings
        "backbone.use_swiglu_ffn": spec.ffn == "swiglu",
        "backbone.apply_layernorm": True,
        "backbone.layer_norm_eps": 1e-6,
    }
    found = {}
    for field, want in expected.items():
        source, name = (backbone, field.split(".", 1)[1]) if field.startswith("backbone.") else (config, field)
        value = source.get(name, want)
        if value != want and not (isinstance(want, list) and isinstance(value, list) and list(value) == want):
            found[field] = str(value)[:40]  # a nested or huge value is not repeated whole
    if found:
        detail = ", ".join(f"{field} {value} (expected {expected[field]})" for field, value in found.items())
        raise Dav2Error(f"{path} describes a model this project cannot build as {encoder}: {detail}")


def layer_renames(key: str) -> str | None:
    """The upstream name of one transformers key, or None when it is not a one-to-one rename."""
    if key in FIXED:
        return FIXED[key]
    if match := re.fullmatch(r"backbone\.encoder\.layer\.(\d+)\.(.+)", key):
        block, rest = match.groups()
        for theirs, ours in BLOCK_RENAMES.items():
            if rest.startswith(theirs):
                return f"pretrained.blocks.{block}.{ours}{rest[len(theirs) :]}"
        return None
    if match := re.fullmatch(r"neck\.reassemble_stage\.layers\.(\d)\.(projection|resize)\.(.+)", key):
        index, part, rest = match.groups()
        return f"depth_head.{'projects' if part == 'projection' else 'resize_layers'}.{index}.{rest}"
    if match := re.fullmatch(r"neck\.convs\.(\d)\.(.+)", key):
        index, rest = match.groups()
        return f"depth_head.scratch.layer{int(index) + 1}_rn.{rest}"
    if match := re.fullmatch(r"neck\.fusion_stage\.layers\.(\d)\.(.+)", key):
        index, rest = match.groups()  # transformers fuses from the deepest level: its layer 0 is refinenet4
        for theirs, ours in FUSION_RENAMES.items():
            if rest.startswith(theirs):
                return f"depth_head.scratch.refinenet{4 - int(index)}.{ours}{rest[len(theirs) :]}"
    return None


def join_split_tensors(state_dict: dict[str, torch.Tensor], mapped: dict[str, torch.Tensor], used: set[str]) -> None:
    """q/k/v -> qkv and gate/up -> w12: concatenated along the output dimension, in upstream's order."""
    blocks = sorted(
        {int(m.group(1)) for key in state_dict if (m := re.match(r"backbone\.encoder\.layer\.(\d+)\.", key))}
    )
    for block in blocks:
        prefix = f"backbone.encoder.layer.{block}."
        for ours, spellings in JOINED.items():
            for parts in spellings:
                for param in ("weight", "bias"):
                    names = [f"{prefix}{part}{param}" for part in parts]
                    if all(name in state_dict for name in names):
                        mapped[f"pretrained.blocks.{block}.{ours}{param}"] = torch.cat([state_dict[n] for n in names])
                        used.update(names)


def map_hf_state_dict(state_dict: dict[str, torch.Tensor], output_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """transformers' tensors under upstream's names. Keys that map to nothing keep their name, so the
    strict load that follows names them as unexpected."""
    mapped: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    join_split_tensors(state_dict, mapped, used)
    for key, value in state_dict.items():
        if key in used:
            continue
        mapped[layer_renames(key) or key] = value
    if output_scale != 1.0:
        for param in ("weight", "bias"):
            key = f"depth_head.scratch.output_conv2.2.{param}"
            if key in mapped:
                mapped[key] = mapped[key] * output_scale
    return mapped


def hf_weight_file(folder: Path) -> Path | None:
    """The weights file of a transformers model folder (safetensors preferred), or None."""
    return next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_FILE).is_file()
