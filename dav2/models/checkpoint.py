"""Finding, downloading and strictly loading Depth Anything V2 checkpoints, in the formats users have.

A checkpoint is untrusted input: PyTorch files are read with torch.load(weights_only=True), which
refuses pickled code; safetensors files hold nothing but tensors. Whatever the format, the model
is loaded strictly: a missing or extra key or a wrong shape is one Dav2Error that names them.

Formats (`CheckpointFormat`):
- `pth`: upstream's plain state_dict (the official files), or a fine-tune wrapped the way
  training scripts save it: `{'model': ...}` (upstream's metric_depth/train.py), `{'state_dict':
  ...}` (Lightning), with a `module.` (DistributedDataParallel), `model.` or `_orig_mod.`
  (torch.compile) prefix on every key;
- `safetensors`: the same tensors in a .safetensors file (upstream's names, or transformers');
- `transformers`: a Hugging Face model folder or hub repo id (config.json + model.safetensors)
  written by transformers' DepthAnythingForDepthEstimation; its config decides encoder,
  relative/metric and max_depth (`dav2.models.hf` maps the names).

Fine-tunes are often saved in half precision (FP16 or BF16) to halve the file; the model and
every export run in FP32, so such weights are widened to FP32 when read (exact: every FP16
and BF16 value is an FP32 value), instead of failing at the first convolution with
"Input type (float) and bias type (c10::Half) should be the same".

Before anything is widened, joined or copied, every tensor is measured (`check_tensors`): a
tensor that claims more elements than its storage holds (a stride-0 `expand`: 1.6 KB on disk,
gigabytes once widened) or more elements than the largest tensor of any Depth Anything V2 model
(MAX_TENSOR_ELEMENTS), or a file whose tensors add up past the largest model
(MAX_TOTAL_ELEMENTS), is refused in one line. Files are read with mmap (nothing copied until
used); a file in torch's legacy (pre-1.6, non-zip) format cannot be mapped and is read with a
plain `torch.load(weights_only=True)` instead, up to MAX_LEGACY_BYTES.

What was read is recorded as a `CheckpointSource` (file, format, sha256, what was unwrapped),
so an artifact's sidecar can say exactly which weights it carries.
"""

import hashlib
import os
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from dav2.errors import Dav2Error, quote
from dav2.files import check_user_file, size_text
from dav2.jsonfile import expect, read_json
from dav2.models import hf
from dav2.models.dpt import DepthAnythingV2
from dav2.models.registry import CheckpointInfo, checkpoint_info
from dav2.vocabulary import DEFAULT_MAX_DEPTH, Choice, ModelKind, encoder_from_embed_dim

CHECKPOINT_ENV = "DAV2_CHECKPOINT"
WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "module")  # tried in this order
KEY_PREFIXES = ("module.", "model.", "_orig_mod.")  # stripped while every key has one
OUR_ROOTS = ("pretrained.", "depth_head.")
FILE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".tar")
# vitg's largest tensor (depth_head.resize_layers.0.weight) has 37,748,736 elements and the whole
# vitg metric model 1,258,132,225 (tests/test_hostile_inputs.py checks both bounds against the models)
MAX_TENSOR_ELEMENTS = 64 * 1024 * 1024
MAX_TOTAL_ELEMENTS = 1_500_000_000
MAX_LEGACY_BYTES = 8 * 1024**3  # a legacy file is read whole: vitg FP32 is 5 GB
# a zip checkpoint is memory-mapped, not read: its file size is not what bounds memory (check_tensors is)
MAX_CHECKPOINT_BYTES = sys.maxsize
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


class CheckpointFormat(Choice):
    PTH = "pth"
    SAFETENSORS = "safetensors"
    TRANSFORMERS = "transformers"


@dataclass(frozen=True)
class CheckpointSource:
    """Which weights were loaded: the file read, its format, its sha256 and what was unwrapped.

    Path-like (os.fspath gives the weights file), so code that treated load_model's second
    value as the checkpoint's path keeps working.
    """

    path: Path  # the weights file read (for a transformers model: its model.safetensors)
    format: CheckpointFormat
    sha256: str
    origin: str  # what the user named: a file, a folder, a hub repo id, or the official file
    unwrapped: tuple[str, ...] = ()  # e.g. ("model", "module.") for a DDP fine-tune

    @property
    def name(self) -> str:
        """How a sidecar names the checkpoint: the file name, or the folder / repo id of an HF model."""
        if self.format == CheckpointFormat.TRANSFORMERS:
            return self.origin if not Path(self.origin).exists() else Path(self.origin).resolve().name
        return self.path.name

    @property
    def label(self) -> str:
        """The format in one word for the sidecar: 'pth', 'pth:model/module.', 'safetensors', 'transformers'."""
        return str(self.format) + (":" + "/".join(self.unwrapped) if self.unwrapped else "")

    def __fspath__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class LoadedWeights:
    """Tensors under upstream's names, plus what the file itself says about the model (HF config)."""

    state_dict: dict[str, torch.Tensor]
    source: CheckpointSource
    config: hf.HFModelConfig | None = None


# -- where the checkpoint is ------------------------------------------------------------------


def resolve_checkpoint(info: CheckpointInfo, checkpoint: str | None) -> Path:
    """--checkpoint, else $DAV2_CHECKPOINT, else the official file from the Hugging Face hub.

    A local file or transformers model folder is used as it is; a name like `owner/model` that
    is no local path is a hub repo id of a transformers model and is downloaded."""
    local = checkpoint or os.environ.get(CHECKPOINT_ENV)
    if not local:
        return download_checkpoint(info)
    path = Path(local)
    if path.is_file() or hf.is_hf_folder(path):
        return path
    if path.is_dir():
        raise Dav2Error(f"{quote(path)} is a folder without {hf.CONFIG_FILE}: not a transformers model folder")
    if path.exists():  # a FIFO or a device: torch.load would wait on it, or read it for ever
        check_user_file(path, MAX_CHECKPOINT_BYTES, "checkpoint")
    if looks_like_repo_id(local):
        return download_hf_model(local)
    raise Dav2Error(f"checkpoint not found: {path}")


def looks_like_repo_id(name: str) -> bool:
    return bool(REPO_ID.fullmatch(name)) and not name.lower().endswith(FILE_SUFFIXES)


def offline_hint() -> str:
    return f"pass a local file with --checkpoint PATH or set {CHECKPOINT_ENV}=PATH"


# -- the Hugging Face hub -----------------------------------------------------------------------
#
# huggingface_hub retries a failed request with back-off (about 25 s in all) when the file is not
# in its cache, so an offline machine would wait in silence before failing. dav2 asks once first
# (one HEAD request, no retries, a short timeout) and only then downloads; without the hub it
# uses the cache or stops at once. HF_HUB_OFFLINE=1 skips the question (cache only),
# HF_HUB_ETAG_TIMEOUT sets its timeout, HF_ENDPOINT and the usual proxy variables apply.

HUB_PROBE_TIMEOUT_S = 5.0  # the question's timeout unless HF_HUB_ETAG_TIMEOUT says otherwise


def hub_module():
    try:
        import huggingface_hub
    except ImportError as exc:
        raise Dav2Error(f"downloading needs huggingface_hub (pip install 'dav2[export]'); or {offline_hint()}") from exc
    from huggingface_hub.utils import logging as hub_logging

    hub_logging.set_verbosity_error()  # its own warnings would bury our one line; its progress bar stays
    return huggingface_hub


def probe_timeout() -> float:
    try:
        return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or HUB_PROBE_TIMEOUT_S)
    except ValueError:
        return HUB_PROBE_TIMEOUT_S


def hub_problem(hub, repo_id: str, filename: str) -> str | None:
    """Why the hub cannot serve `filename` of `repo_id` now (offline mode, unreachable, not found), or None.

    One HEAD request through huggingface_hub itself (its endpoint, proxies and token), without
    its retries."""
    if hub.constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    try:
        hub.get_hf_file_metadata(hub.hf_hub_url(repo_id, filename), timeout=probe_timeout())
    except Exception as exc:  # noqa: BLE001 - offline, proxy, timeout, 404, gated: all mean "not from the hub"
        return f"{hub.constants.ENDPOINT} unreachable or refused: {type(exc).__name__}"
    return None


def fetch_from_hub(repo_id: str, probe_file: str, fetch) -> Path:
    """`fetch(local_files_only)` from the hub when it answers, else from the local cache, else Dav2Error.

    The Dav2Error's text is the reason; callers add what to do instead."""
    hub = hub_module()
    problem = hub_problem(hub, repo_id, probe_file)
    try:
        return Path(fetch(hub, problem is not None))
    except Exception as exc:  # noqa: BLE001 - the cache lacks it, or the download failed half way
        raise Dav2Error(problem or f"download failed: {type(exc).__name__}") from exc


def download_checkpoint(info: CheckpointInfo) -> Path:
    """The official file: from the hub (huggingface_hub's progress bar on stderr) or its cache."""
    if info.hub_repo is None:
        raise Dav2Error(f"{info.filename} was never published; {offline_hint()}")

    def fetch(hub, cache_only: bool) -> str:
        return hub.hf_hub_download(repo_id=info.hub_repo, filename=info.filename, local_files_only=cache_only)

    try:
        return fetch_from_hub(info.hub_repo, info.filename, fetch)
    except Dav2Error as exc:
        raise Dav2Error(
            f"could not download {info.filename} from huggingface.co/{info.hub_repo} and it is not in the "
            f"Hugging Face cache ({exc}); {offline_hint()}"
        ) from exc


def download_hf_model(repo_id: str) -> Path:
    """The local folder of a transformers model on the hub (config and weights only), or its cached copy."""

    def fetch(hub, cache_only: bool) -> str:
        patterns = [hf.CONFIG_FILE, "model.safetensors", "model*.safetensors*"]
        return hub.snapshot_download(repo_id=repo_id, allow_patterns=patterns, local_files_only=cache_only)

    try:
        return fetch_from_hub(repo_id, hf.CONFIG_FILE, fetch)
    except Dav2Error as exc:
        raise Dav2Error(
            f"{repo_id} is no local file or folder, and could not be downloaded from huggingface.co/{repo_id} "
            f"nor found in the Hugging Face cache ({exc}); pass a local file or model folder with --checkpoint"
        ) from exc


# -- reading tensors ----------------------------------------------------------------------------


def read_tensor_file(path: Path) -> object:
    """Whatever the file holds, without running code: safetensors, or torch.load(weights_only=True)."""
    size = check_user_file(path, MAX_CHECKPOINT_BYTES, "checkpoint")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise Dav2Error(f"reading {path.name} needs safetensors: pip install 'dav2[export]'") from exc
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise Dav2Error(f"{path} is not a readable safetensors file ({type(exc).__name__})") from exc
    try:
        if zipfile.is_zipfile(path):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if size > MAX_LEGACY_BYTES:  # the legacy format cannot be mapped: it is read whole
            raise Dav2Error(
                f"{quote(path)} is a {size_text(size)} checkpoint in torch's legacy (non-zip) format, over the "
                f"{size_text(MAX_LEGACY_BYTES)} read whole; re-save it with torch.save (zip format)"
            )
        return torch.load(path, map_location="cpu", weights_only=True)
    except Dav2Error:
        raise
    except Exception as exc:
        raise Dav2Error(f"{quote(path)} is not a readable PyTorch checkpoint ({type(exc).__name__})") from exc


def check_tensors(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse tensors no Depth Anything V2 checkpoint has, before any is widened or copied (see
    the module docstring): shape metadata only, nothing is read from the storage."""
    total = 0
    for key, tensor in state_dict.items():
        count = tensor.numel()
        held = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
        if count * tensor.element_size() > held:
            raise Dav2Error(
                f"{quote(path)}: tensor {quote(key)[:80]} claims {list(tensor.shape)} but its storage holds only "
                f"{held} bytes (an expanded or overlapping view): not a checkpoint torch.save writes from a model"
            )
        if count > MAX_TENSOR_ELEMENTS:
            raise Dav2Error(
                f"{quote(path)}: tensor {quote(key)[:80]} has {count:,} elements, more than any Depth Anything V2 "
                f"tensor ({MAX_TENSOR_ELEMENTS:,} at most)"
            )
        total += count
    if total > MAX_TOTAL_ELEMENTS:
        raise Dav2Error(
            f"{quote(path)} holds {total:,} weights, more than the largest Depth Anything V2 model "
            f"({MAX_TOTAL_ELEMENTS:,} at most)"
        )


def unwrap(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """The state_dict inside a training checkpoint, and the wrapper keys and key prefixes removed."""
    steps: list[str] = []
    for _ in range(2):  # {'model': {'state_dict': ...}} at most
        if not isinstance(obj, dict) or all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        wrapper = next((key for key in WRAPPER_KEYS if isinstance(obj.get(key), dict)), None)
        if wrapper is None:
            break
        obj, steps = obj[wrapper], [*steps, wrapper]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise Dav2Error(f"{path} does not hold a state_dict of tensors (nor one under {', '.join(WRAPPER_KEYS)})")
    state_dict, prefixes = strip_prefixes(obj)
    return state_dict, (*steps, *prefixes)


def strip_prefixes(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Remove `module.` / `model.` / `_orig_mod.` while every key carries the same one."""
    removed: list[str] = []
    while not all(key.startswith(OUR_ROOTS + hf.HF_PREFIXES) for key in state_dict):
        prefix = next((p for p in KEY_PREFIXES if all(key.startswith(p) for key in state_dict)), None)
        if prefix is None:
            break
        state_dict = {key[len(prefix) :]: value for key, value in state_dict.items()}
        removed.append(prefix)
    return state_dict, tuple(removed)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Upstream-named FP32 tensors of a checkpoint file (wrappers, prefixes, transformers names undone)."""
    return read_weights(Path(path)).state_dict


def read_weights(path: Path, origin: str | None = None) -> LoadedWeights:
    """A checkpoint file or transformers model folder, read into upstream's names, with its source record."""
    if path.is_dir():
        return read_hf_model(path, origin or str(path))
    state_dict, unwrapped = unwrap(read_tensor_file(path), path)
    check_tensors(state_dict, path)  # before the transformers mapping joins, and as_fp32 widens
    fmt = CheckpointFormat.SAFETENSORS if path.suffix == ".safetensors" else CheckpointFormat.PTH
    config = None
    if hf.is_hf_state_dict(state_dict):  # transformers' names without a folder: map them, flags decide the rest
        state_dict = hf.map_hf_state_dict(state_dict)
        unwrapped = (*unwrapped, "transformers-names")
    source = CheckpointSource(path, fmt, sha256_file(path), origin or str(path), unwrapped)
    return LoadedWeights(as_fp32(state_dict), source, config)


def read_hf_model(folder: Path, origin: str) -> LoadedWeights:
    """A transformers DepthAnythingForDepthEstimation folder: config.json + model.safetensors (or shards)."""
    config = hf.read_hf_config(folder / hf.CONFIG_FILE)
    weights = hf.hf_weight_file(folder)
    if weights is None:
        raise Dav2Error(f"{folder} has {hf.CONFIG_FILE} but none of {', '.join(hf.WEIGHT_FILES)}")
    files = shard_files(weights) if weights.name.endswith(".index.json") else [weights]
    state_dict: dict[str, torch.Tensor] = {}
    for file in files:
        part, _ = unwrap(read_tensor_file(file), file)
        state_dict.update(part)
        check_tensors(state_dict, file)
    state_dict = hf.map_hf_state_dict(state_dict, config.output_scale)
    source = CheckpointSource(weights, CheckpointFormat.TRANSFORMERS, sha256_files(files), origin)
    return LoadedWeights(as_fp32(state_dict), source, config)


def shard_files(index: Path) -> list[Path]:
    document = expect(read_json(index, "safetensors shard index"), dict, f"{quote(index)}")
    weight_map = expect(document.get("weight_map"), dict, f"{quote(index)}: weight_map")
    names = sorted({expect(name, str, f"{quote(index)}: a shard name") for name in weight_map.values()})
    if any(Path(name).name != name for name in names):  # shards lie beside the index, never elsewhere
        raise Dav2Error(f"{quote(index)} names shards outside its folder")
    missing = [name for name in names if not (index.parent / name).is_file()]
    if missing:
        raise Dav2Error(f"{index.parent} lacks the shards {', '.join(missing)}")
    return [index.parent / name for name in names]


def as_fp32(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state_dict with FP16/BF16 (or FP64) tensors made FP32; integer tensors as they are."""
    return {
        key: value.float() if value.is_floating_point() and value.dtype != torch.float32 else value
        for key, value in state_dict.items()
    }


# -- building the model ---------------------------------------------------------------------------


def detect_encoder(state_dict: dict[str, torch.Tensor]) -> str | None:
    """vits/vitb/vitl/vitg from the width of the positional embedding, None if not DAv2-like."""
    pos_embed = state_dict.get("pretrained.pos_embed")
    if pos_embed is None or pos_embed.ndim != 3:
        return None
    return encoder_from_embed_dim(int(pos_embed.shape[-1]))


def listed(keys: list[str]) -> str:
    return f"{', '.join(keys[:3])}{f' (+{len(keys) - 3} more)' if len(keys) > 3 else ''}"


def mismatch(model: DepthAnythingV2, state_dict: dict[str, torch.Tensor]) -> str:
    """'missing: ...; unexpected: ...; wrong shape: key [file] vs [model]' for a failed strict load."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {list(state_dict[k].shape)} vs {list(expected[k].shape)}"
        for k in expected
        if k in state_dict and expected[k].shape != state_dict[k].shape
    ]
    parts = (("missing", missing), ("unexpected", unexpected), ("wrong shape (file vs model)", wrong))
    return "; ".join(f"{label}: {listed(keys)}" for label, keys in parts if keys)


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
    detail = mismatch(model, state_dict)
    if detail:  # checked before loading: torch's own message is a multi-line traceback text
        raise Dav2Error(f"{source} does not match the {encoder} model ({detail})")
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model.eval()


def agree(config: hf.HFModelConfig, encoder: str | None, kind: str | None, max_depth: float | None, where: str):
    """A transformers config decides the model; a flag that says otherwise is an error, not a silent override."""
    said = {"--encoder": (encoder, config.encoder), "--kind": (kind, config.kind)}
    if config.kind == ModelKind.METRIC:
        said["--max-depth"] = (None if max_depth is None else float(max_depth), config.max_depth)
    wrong = [
        f"{flag} {given} (its config.json says {found})"
        for flag, (given, found) in said.items()
        if given and given != found
    ]
    if wrong:
        raise Dav2Error(f"{where} is a transformers model whose config disagrees with {', '.join(wrong)}")


def load_model(
    encoder: str | None = None,
    kind: str | None = None,
    max_depth: float | None = None,
    checkpoint: str | None = None,
) -> tuple[DepthAnythingV2, CheckpointSource]:
    """The model for encoder/kind with weights from `checkpoint` (or $DAV2_CHECKPOINT, or the hub).

    `checkpoint` may be an upstream .pth, a wrapped or prefixed fine-tune, a .safetensors file, a
    transformers model folder or hub repo id. For a transformers model the config decides
    encoder, kind and max_depth (None = take them from it; a different value is an error); for
    a plain file encoder None means the one the weights have, kind None relative. Returns the
    model (its .encoder/.metric/.max_depth are the truth) and the `CheckpointSource` read.
    """
    info = checkpoint_info(encoder or "vits", kind or ModelKind.RELATIVE, max_depth)
    path = resolve_checkpoint(info, checkpoint)
    origin = checkpoint or os.environ.get(CHECKPOINT_ENV) or info.filename
    weights = read_weights(path, origin)
    if weights.config is not None:
        agree(weights.config, encoder, kind, max_depth, origin)
        encoder, kind, max_depth = weights.config.encoder, weights.config.kind, weights.config.max_depth
    else:
        encoder = encoder or detect_encoder(weights.state_dict) or "vits"
        kind = kind or ModelKind.RELATIVE
        max_depth = checkpoint_info(encoder, kind, max_depth).max_depth
    metric = ModelKind(kind) == ModelKind.METRIC
    model = build_model(weights.state_dict, encoder, metric, max_depth or DEFAULT_MAX_DEPTH, source=origin)
    return model, weights.source


def sha256_file(path: Path) -> str:
    return sha256_files([Path(path)])


def sha256_files(paths: list[Path]) -> str:
    """sha256 of the files' bytes in order (one file: its usual sha256)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
