"""The model as the edge converters (LiteRT, ExecuTorch, Core ML) take it: one fixed input size.

These converters start from `torch.export`, not from the checked ONNX graph: none of them
reads ONNX. Two parts of the PyTorch model are written for dynamic ONNX graphs and get in
their way at a fixed size, so `fixed_size_model` returns a copy with both replaced by
numerically equal forms:

- the positional embedding is resampled from the patch counts with tensor ops and a boolean
  `&` (so one ONNX graph serves every size); at one size it is a constant, computed once here
  by the model's own code, so the numbers are the model's. Core ML's converter has no `&`.
- attention uses `F.scaled_dot_product_attention`, which ExecuTorch's XNNPACK partitioner does
  not delegate (it then runs in the portable kernels, far slower); the copy computes
  softmax(q k^T / sqrt(d)) v with plain matmuls, as upstream's Attention does.

The calibration batches of the INT8 recipes are drawn here too, from dav2's CalibrationSet at
the artifact's own size.
"""

import copy
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

import dav2
from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata, ParityReport
from dav2.models.dinov2 import Attention, DinoVisionTransformer
from dav2.models.dpt import DepthAnythingV2
from dav2.vocabulary import ArtifactFormat, Precision

if TYPE_CHECKING:
    from dav2.export.context import ExportContext, ExportRequest


def plain_attention(self: Attention, x: torch.Tensor) -> torch.Tensor:
    """Attention.forward with explicit matmul + softmax (what XNNPACK delegates)."""
    B, N, C = x.shape
    head = C // self.num_heads
    qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, head).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    weights = F.softmax((q * head**-0.5) @ k.transpose(-2, -1), dim=-1)
    return self.proj((weights @ v).transpose(1, 2).reshape(B, N, C))


def fixed_position_embedding(self: DinoVisionTransformer, height: int, width: int) -> torch.Tensor:
    """The positional embedding computed once for the artifact's size (a buffer of the copy)."""
    return self.fixed_pos_embed


def fixed_size_model(model: DepthAnythingV2, height: int, width: int) -> DepthAnythingV2:
    """A copy of `model` in eval mode that runs at height x width only, in converter-friendly ops.

    The original is left untouched (the export still compares artifacts against it)."""
    fixed = copy.deepcopy(model).eval()
    encoder = fixed.pretrained
    with torch.no_grad():
        position = encoder.interpolate_pos_encoding(height, width).detach().clone()
    encoder.register_buffer("fixed_pos_embed", position, persistent=False)
    encoder.interpolate_pos_encoding = types.MethodType(fixed_position_embedding, encoder)
    for block in encoder.blocks:
        block.attn.forward = types.MethodType(plain_attention, block.attn)
    return fixed


def example_input(height: int, width: int) -> torch.Tensor:
    """The tensor the converters trace with: (1, 3, H, W), values like a normalised image."""
    return torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))


def calibration_tensors(batches: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
    """Calibration batches (B, 3, H, W float32 numpy, processing.preprocess) as torch tensors."""
    for batch in batches:
        yield torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))


# --- what the three edge targets share in the export pipeline -------------------------------

EXPORTER = "torch.export"  # the sidecar's `exporter`: every edge converter starts here, not from ONNX


def artifact_path(context: "ExportContext", key: str, precision: Precision, suffix: str) -> Path:
    """Where a target builds its artifact: a fresh scratch folder, dav2's artifact name."""
    from dav2.export.graph import artifact_stem

    return context.folder(f"{key}-{precision}") / f"{artifact_stem(context.model, context.options, precision)}{suffix}"


def require_fixed_size(request: "ExportRequest", what: str) -> None:
    """Edge converters take one input size: one line when the request asks for a dynamic graph
    (no --height/--width, or --dynamic). uint8 input is refused by the format table."""
    from dav2.export.context import graph_options

    if graph_options(request).dynamic:
        raise Dav2Error(
            f"{what} artifacts are fixed-size (its converter takes one input size): "
            "pass --height H --width W (multiples of 14, e.g. --height 518 --width 518), without --dynamic"
        )


def edge_metadata(
    context: "ExportContext", path: Path, fmt: ArtifactFormat, precision: Precision, tools: dict[str, str]
) -> ArtifactMetadata:
    """The shared sidecar fields, with the converter that made the artifact: `exporter` is
    torch.export and there is no ONNX opset (the artifact was never an ONNX graph)."""
    metadata = context.describe(path, fmt, precision)
    metadata.exporter = EXPORTER
    metadata.opset = None
    metadata.tools.update({"torch": torch.__version__, "dav2": dav2.__version__, **tools})
    return metadata


def check_fp32_parity(backend, context: "ExportContext", what: str) -> ParityReport:
    """FP32 edge artifacts promise parity with PyTorch FP32, like the ONNX graph: run the
    artifact in its dav2 backend on the check image and compare (1e-3 of the output's scale)."""
    from dav2 import console
    from dav2.export import parity

    with console.step(f"checking the {what} against PyTorch in dav2's backend"), backend:
        return parity.against_pytorch(
            backend.infer, context.model, context.image, context.options, Precision.FP32, what
        )
