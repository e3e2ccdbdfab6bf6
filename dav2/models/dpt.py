"""Depth Anything V2: DINOv2 encoder + DPT head, relative (disparity) or metric (metres).

Follows upstream depth_anything_v2/dpt.py and metric_depth/depth_anything_v2/dpt.py, with
the same module names so official checkpoints load strictly. Relative models end in ReLU and
give disparity (larger = nearer); metric models end in Sigmoid scaled by max_depth and give
metres (smaller = nearer).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from dav2.models.dinov2 import DinoVisionTransformer
from dav2.vocabulary import DEFAULT_INPUT_SIZE, DEFAULT_MAX_DEPTH, PATCH_SIZE, EncoderSpec, ModelKind, encoder_spec


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, stride=1, padding=1, bias=True)
        self.activation = nn.ReLU(False)

    def forward(self, x):
        out = self.conv1(self.activation(x))
        out = self.conv2(self.activation(out))
        return out + x


class FeatureFusionBlock(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, stride=1, padding=0, bias=True)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, *xs, size=None):
        output = xs[0]
        if len(xs) == 2:
            output = output + self.resConfUnit1(xs[1])
        output = self.resConfUnit2(output)
        if size is None:
            # upstream's scale_factor=2; with align_corners=True the sampling depends only on the
            # two sizes, so this is the same arithmetic, and exports as integer sizes (FP16-safe)
            size = (output.shape[-2] * 2, output.shape[-1] * 2)
        output = F.interpolate(output, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(output)


class DPTHead(nn.Module):
    def __init__(self, in_channels: int, features: int, out_channels: list[int], metric: bool):
        super().__init__()
        self.projects = nn.ModuleList(
            [nn.Conv2d(in_channels, out_channel, kernel_size=1, stride=1, padding=0) for out_channel in out_channels]
        )
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], kernel_size=4, stride=4, padding=0),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], kernel_size=2, stride=2, padding=0),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], kernel_size=3, stride=2, padding=1),
            ]
        )

        self.scratch = nn.Module()
        for i, channels in enumerate(out_channels, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(channels, features, kernel_size=3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FeatureFusionBlock(features))

        head_features_1 = features
        head_features_2 = 32
        self.scratch.output_conv1 = nn.Conv2d(head_features_1, head_features_1 // 2, kernel_size=3, stride=1, padding=1)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(head_features_1 // 2, head_features_2, kernel_size=3, stride=1, padding=1),
            nn.ReLU(True),
            nn.Conv2d(head_features_2, 1, kernel_size=1, stride=1, padding=0),
            nn.Sigmoid() if metric else nn.ReLU(True),
        )

    def forward(self, out_features, patch_h, patch_w):
        out = []
        for i, (x, _cls_token) in enumerate(out_features):
            x = x.permute(0, 2, 1).reshape((x.shape[0], x.shape[-1], patch_h, patch_w))
            x = self.projects[i](x)
            x = self.resize_layers[i](x)
            out.append(x)

        layer_1, layer_2, layer_3, layer_4 = out
        scratch = self.scratch
        layer_1_rn = scratch.layer1_rn(layer_1)
        layer_2_rn = scratch.layer2_rn(layer_2)
        layer_3_rn = scratch.layer3_rn(layer_3)
        layer_4_rn = scratch.layer4_rn(layer_4)

        path_4 = scratch.refinenet4(layer_4_rn, size=layer_3_rn.shape[2:])
        path_3 = scratch.refinenet3(path_4, layer_3_rn, size=layer_2_rn.shape[2:])
        path_2 = scratch.refinenet2(path_3, layer_2_rn, size=layer_1_rn.shape[2:])
        path_1 = scratch.refinenet1(path_2, layer_1_rn)

        out = scratch.output_conv1(path_1)
        out = F.interpolate(out, (patch_h * PATCH_SIZE, patch_w * PATCH_SIZE), mode="bilinear", align_corners=True)
        return scratch.output_conv2(out)


class DepthAnythingV2(nn.Module):
    """forward(x: B,3,H,W normalised RGB, H and W multiples of 14) -> B,H,W depth."""

    def __init__(self, encoder: str | EncoderSpec = "vits", metric: bool = False, max_depth: float = DEFAULT_MAX_DEPTH):
        super().__init__()
        spec = encoder if isinstance(encoder, EncoderSpec) else encoder_spec(encoder)
        self.spec = spec
        self.encoder = spec.name
        self.metric = metric
        self.max_depth = max_depth
        self.pretrained = DinoVisionTransformer(spec)
        self.depth_head = DPTHead(spec.embed_dim, spec.features, list(spec.out_channels), metric)

    @property
    def kind(self) -> ModelKind:
        """relative or metric: the one place the head's `metric` flag becomes a ModelKind."""
        return ModelKind.METRIC if self.metric else ModelKind.RELATIVE

    @property
    def metric_max_depth(self) -> float | None:
        """max_depth where it means something (metric models), else None: what sidecars record."""
        return self.max_depth if self.metric else None

    def forward(self, x):
        patch_h, patch_w = x.shape[-2] // PATCH_SIZE, x.shape[-1] // PATCH_SIZE
        features = self.pretrained.get_intermediate_layers(x, self.spec.tapped_layers)
        depth = self.depth_head(features, patch_h, patch_w)
        if self.metric:
            depth = depth * self.max_depth
        else:
            depth = F.relu(depth)
        return depth.squeeze(1)

    @torch.no_grad()
    def infer_image(self, bgr_image, input_size: int = DEFAULT_INPUT_SIZE):
        """Upstream's infer_image: BGR uint8 image -> float32 depth at the image's resolution."""
        from dav2 import processing

        tensor = processing.preprocess(bgr_image, input_size)
        depth = self.forward(torch.from_numpy(tensor).to(next(self.parameters()).device))
        return processing.postprocess(depth.float().cpu().numpy(), bgr_image.shape[:2])
