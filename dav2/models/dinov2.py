"""DINOv2 ViT encoder, as Depth Anything V2 uses it (patch 14, layer scale, no registers).

Module and parameter names follow upstream (facebookresearch/dinov2 as vendored by
DepthAnything/Depth-Anything-V2) exactly, so official checkpoints load with strict=True.

Two deliberate changes, both numerically equivalent (tests/test_conformance.py):
- attention uses F.scaled_dot_product_attention (upstream: explicit softmax(q k^T) v), faster
  in eager PyTorch on a CPU (benchmarks/results/amd-epyc-2-cores-pytorch-modules.md); the
  exporters lower it to the same MatMul/Softmax ops;
- the positional embedding is resized to the patch grid differently. Upstream calls
  F.interpolate(scale_factor=(n + 0.1) / 37, mode="bicubic"); the ONNX exporters turn the
  Python float arithmetic around it into constants, so the exported graph only works at the
  traced size. Here the same bicubic resampling is written as two small weight matrices
  built from the patch counts with tensor ops, which reproduces upstream's numbers (sampling
  positions follow the scale factor, not the output size) and stays dynamic in ONNX.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from dav2.vocabulary import PATCH_SIZE, EncoderSpec

PRETRAIN_GRID = 37  # 518 / 14: the positional embedding is trained for a 37x37 patch grid
INTERPOLATE_OFFSET = 0.1  # upstream's work-around offset (dino issue #8)
CUBIC_A = -0.75  # PyTorch's (and OpenCV's) bicubic coefficient


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x):
        x = self.proj(x)  # B, C, H/14, W/14
        return x.flatten(2).transpose(1, 2)  # B, N, C


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        # softmax(q k^T / sqrt(d)) v, as upstream's Attention; the fused kernel is faster in eager
        # PyTorch (benchmarks/results/amd-epyc-2-cores-pytorch-modules.md) and both ONNX exporters
        # lower it to the same MatMul/Softmax ops
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * 4)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim * 4, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    """ViT-G's feed-forward: SiLU-gated, hidden size 2/3 of 4*dim rounded up to a multiple of 8."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = (int(dim * 4 * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLUFFN(dim) if ffn == "swiglu" else Mlp(dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def bicubic_matrix(n_out: torch.Tensor, n_in: int, inv_scale: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) matrix of PyTorch's bicubic resampling weights (align_corners=False).

    Output index i samples the source at (i + 0.5) * inv_scale - 0.5, with the cubic
    convolution kernel (a = -0.75) over four neighbours whose indices are clamped to the
    border, exactly as torch's upsample_bicubic2d does.
    """
    dst = torch.arange(n_out).to(torch.float32)  # integer Range: valid in FP16 graphs too
    src = (dst + 0.5) * inv_scale - 0.5
    left = torch.floor(src)
    t = src - left
    a = CUBIC_A
    weights = [
        ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1,
        ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a,
    ]
    columns = torch.arange(n_in).to(torch.float32)
    matrix = torch.zeros_like(src)[:, None] * columns[None, :]
    for offset, weight in zip((-1, 0, 1, 2), weights):
        index = torch.clamp(left + offset, 0, n_in - 1)
        matrix = matrix + weight[:, None] * (index[:, None] == columns[None, :]).to(torch.float32)
    return matrix


def identity_matrix(n_out: torch.Tensor, n_in: int) -> torch.Tensor:
    rows = torch.arange(n_out).to(torch.float32)
    columns = torch.arange(n_in).to(torch.float32)
    return (rows[:, None] == columns[None, :]).to(torch.float32)


def size_tensor(n) -> torch.Tensor:
    """A size (int, traced size or torch.export SymInt) as a 0-dim float tensor.

    Comparisons of sizes must stay in the graph so that one dynamic ONNX model takes the
    right branch at every input size; a Python bool would be frozen at the traced size.
    """
    return torch.ones(n, dtype=torch.float32).sum()


class DinoVisionTransformer(nn.Module):
    def __init__(self, spec: EncoderSpec):
        super().__init__()
        embed_dim, depth, num_heads, ffn = spec.embed_dim, spec.depth, spec.num_heads, spec.ffn
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, PRETRAIN_GRID * PRETRAIN_GRID + 1, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, ffn) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        # unused at inference, but part of every official checkpoint
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))

    def interpolate_pos_encoding(self, height, width):
        """Positional embedding for a (height, width) image, with upstream's arithmetic.

        Upstream keeps the 37x37 grid unchanged only when there are 37*37 patches and the
        image is square; otherwise it resamples with scale (n + 0.1) / 37 per axis.
        """
        pos_embed = self.pos_embed.float()
        class_pos = pos_embed[:, :1]
        channels = pos_embed.shape[-1]
        grid = pos_embed[0, 1:].reshape(PRETRAIN_GRID, PRETRAIN_GRID * channels)  # rows, (cols, C)
        n_h = height // PATCH_SIZE
        n_w = width // PATCH_SIZE
        inv_h = PRETRAIN_GRID / (n_h + INTERPOLATE_OFFSET)
        inv_w = PRETRAIN_GRID / (n_w + INTERPOLATE_OFFSET)
        unchanged = (size_tensor(n_h * n_w) == PRETRAIN_GRID * PRETRAIN_GRID) & (
            size_tensor(height) == size_tensor(width)
        )
        m_h = torch.where(unchanged, identity_matrix(n_h, PRETRAIN_GRID), bicubic_matrix(n_h, PRETRAIN_GRID, inv_h))
        m_w = torch.where(unchanged, identity_matrix(n_w, PRETRAIN_GRID), bicubic_matrix(n_w, PRETRAIN_GRID, inv_w))
        # two plain 2-D matrix products (rows, then columns): OpenVINO's CPU plugin cannot
        # compile the broadcasting (n, 37) @ (C, 37, 37) form once the sizes are dynamic
        rows = (m_h @ grid).reshape(n_h, PRETRAIN_GRID, channels)  # n_h, 37, C
        cols = rows.permute(1, 0, 2).reshape(PRETRAIN_GRID, n_h * channels)  # 37, (n_h, C)
        patch_pos = (m_w @ cols).reshape(n_w, n_h, channels).permute(1, 0, 2)  # n_h, n_w, C
        patch_pos = patch_pos.reshape(1, n_h * n_w, channels)
        return torch.cat((class_pos, patch_pos), dim=1).to(self.pos_embed.dtype)

    def prepare_tokens(self, x):
        height, width = x.shape[-2], x.shape[-1]
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        return x + self.interpolate_pos_encoding(height, width)

    def get_intermediate_layers(self, x, layer_indices: list[int]):
        """(patch tokens, class token) after the final norm, for each requested block."""
        x = self.prepare_tokens(x)
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in layer_indices:
                outputs.append(x)
        outputs = [self.norm(out) for out in outputs]
        return [(out[:, 1:], out[:, 0]) for out in outputs]
