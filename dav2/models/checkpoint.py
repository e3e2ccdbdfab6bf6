"""Finding, downloading and strictly loading Depth Anything V2 checkpoints.

A checkpoint is untrusted input: it is read with torch.load(weights_only=True), which refuses
pickled code. Official checkpoints are plain state_dicts whose keys and shapes must match the
model exactly (strict=True); a mismatch is reported in one line that names what the file is.

Fine-tunes are often saved in half precision (FP16 or BF16) to halve the file; the model and
every export run in FP32, so such weights are widened to FP32 when read (exact: every FP16
and BF16 value is an FP32 value), instead of failing at the first convolution with
"Input type (float) and bias type (c10::Half) should be the same".
"""

import hashlib
import os
from pathlib import Path

import torch

from dav2.errors import Dav2Error
from dav2.models.dpt import DepthAnythingV2
from dav2.models.registry import CheckpointInfo, checkpoint_info
from dav2.vocabulary import DEFAULT_MAX_DEPTH, encoder_from_embed_dim

CHECKPOINT_ENV = "DAV2_CHECKPOINT"


def resolve_checkpoint(info: CheckpointInfo, checkpoint: str | None) -> Path:
    """--checkpoint, else $DAV2_CHECKPOINT, else the official file from the Hugging Face hub."""
    local = checkpoint or os.environ.get(CHECKPOINT_ENV)
    if local:
        path = Path(local)
        if not path.is_file():
            raise Dav2Error(f"checkpoint not found: {path}")
        return path
    return download_checkpoint(info)


def download_checkpoint(info: CheckpointInfo) -> Path:
    how = f"pass a local file with --checkpoint PATH or set {CHECKPOINT_ENV}=PATH"
    if info.hub_repo is None:
        raise Dav2Error(f"{info.filename} was never published; {how}")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise Dav2Error(f"downloading needs huggingface_hub (pip install 'dav2[export]'); or {how}") from exc
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # its own retry warnings would bury our one line
    try:
        return Path(hf_hub_download(repo_id=info.hub_repo, filename=info.filename))
    except Exception as exc:  # offline, proxy, 404: all end the same way for the user
        raise Dav2Error(
            f"could not download {info.filename} from huggingface.co/{info.hub_repo} "
            f"(offline or unreachable: {type(exc).__name__}); {how}"
        ) from exc


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise Dav2Error(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__})") from exc
    if isinstance(state_dict, dict) and "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise Dav2Error(f"{path} does not hold a state_dict of tensors")
    return as_fp32(state_dict)


def as_fp32(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state_dict with FP16/BF16 (or FP64) tensors made FP32; integer tensors as they are."""
    return {
        key: value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
        for key, value in state_dict.items()
    }


def detect_encoder(state_dict: dict[str, torch.Tensor]) -> str | None:
    """vits/vitb/vitl/vitg from the width of the positional embedding, None if not DAv2-like."""
    pos_embed = state_dict.get("pretrained.pos_embed")
    if pos_embed is None or pos_embed.ndim != 3:
        return None
    return encoder_from_embed_dim(int(pos_embed.shape[-1]))


def build_model(
    state_dict: dict[str, torch.Tensor], encoder: str, metric: bool, max_depth: float, source: str = "checkpoint"
) -> DepthAnythingV2:
    """Model with `state_dict` loaded strictly (meta-device build: no second copy of the weights)."""
    found = detect_encoder(state_dict)
    if found is None:
        raise Dav2Error(f"{source} is not a Depth Anything V2 checkpoint (no pretrained.pos_embed)")
    if found != encoder:
        raise Dav2Error(f"{source} is a {found} checkpoint, but --encoder {encoder} was given")
    with torch.device("meta"):
        model = DepthAnythingV2(encoder, metric=metric, max_depth=max_depth)
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as exc:
        expected = model.state_dict()
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        wrong = [k for k in expected if k in state_dict and expected[k].shape != state_dict[k].shape]
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise Dav2Error(f"{source} does not match the {encoder} model ({detail})") from exc
    return model.eval()


def load_model(
    encoder: str, kind: str = "relative", max_depth: float | None = None, checkpoint: str | None = None
) -> tuple[DepthAnythingV2, Path]:
    """The model for encoder/kind with weights from `checkpoint` (or env, or the hub)."""
    info = checkpoint_info(encoder, kind, max_depth)
    path = resolve_checkpoint(info, checkpoint)
    state_dict = read_state_dict(path)
    model = build_model(state_dict, encoder, kind == "metric", info.max_depth or DEFAULT_MAX_DEPTH, source=str(path))
    return model, path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
