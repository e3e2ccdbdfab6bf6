#!/usr/bin/env python3
"""Deterministic stand-in weights for a Depth Anything V2 checkpoint (no download needed).

No pretrained weights can be fetched on build machines, so the project checks itself with
weights that anyone can regenerate bit for bit from the names and shapes of the tensors:

    value(key, shape) = rng.standard_normal(shape) * scale(key, shape) + offset(key)
    rng = numpy.random.default_rng(zlib.crc32(key.encode()))

This is the seeding rule of the upstream conformance reference (the outputs stored in
tests/data/reference were computed by upstream's code with these weights). The key list comes
from this project's own model, built on the meta device (no memory, no weights); its names,
shapes and order equal upstream's (tests/test_checkpoint.py checks them against the manifests).

    python scripts/seeded_checkpoint.py vits relative OUT.pth

writes an official-format checkpoint: a plain state_dict saved by torch.save, as
depth_anything_v2_vits.pth is.
"""

from __future__ import annotations

import argparse
import math
import sys
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

ENCODERS = ("vits", "vitb", "vitl", "vitg")
KINDS = ("relative", "metric")


def scale_and_offset(key: str, shape: Sequence[int]) -> tuple[float, float]:
    """Standard deviation and mean of one tensor's values."""
    name = key.rsplit(".", 1)[-1]
    if key.endswith(("cls_token", "pos_embed", "mask_token")):
        return 0.02, 0.0
    if ".ls1." in key or ".ls2." in key:  # DINOv2 layer scale: small positive gammas
        return 0.05, 0.1
    if name == "weight" and len(shape) == 1:  # LayerNorm gamma around 1
        return 0.1, 1.0
    if name == "bias":
        if key.endswith("output_conv2.2.bias"):  # the last conv before the final ReLU stays positive
            return 0.02, 2.0
        if ".output_conv2." in key:
            return 0.02, 0.5
        return 0.02, 0.0
    if len(shape) == 4 and ("resize_layers.0" in key or "resize_layers.1" in key):
        fan_in = shape[0]  # ConvTranspose2d weights are (in, out, kh, kw)
    elif len(shape) > 1:
        fan_in = math.prod(shape[1:])
    else:
        fan_in = shape[0]
    return 1.0 / math.sqrt(fan_in), 0.0


def seeded_tensor(key: str, shape: Sequence[int]) -> np.ndarray:
    """The float32 values of one tensor, from its name and shape only."""
    shape = tuple(int(s) for s in shape)
    generator = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    scale, offset = scale_and_offset(key, shape)
    values = generator.standard_normal(shape) * scale + offset  # float64, then one rounding
    return values.astype(np.float32)


def seeded_arrays(entries: Iterable[tuple[str, Sequence[int]]]) -> dict[str, np.ndarray]:
    """{key: float32 array} for (key, shape) pairs, in the order given."""
    return {key: seeded_tensor(key, shape) for key, shape in entries}


def model_keys(encoder: str, kind: str = "relative") -> list[tuple[str, list[int]]]:
    """(key, shape) of every tensor of this project's model, in state_dict order, built on the meta device."""
    import torch

    from dav2.models.dpt import DepthAnythingV2

    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r} (choose from {', '.join(ENCODERS)})")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (choose from {', '.join(KINDS)})")
    with torch.device("meta"):
        model = DepthAnythingV2(encoder, metric=kind == "metric")
    return [(key, list(tensor.shape)) for key, tensor in model.state_dict().items()]


def seeded_state_dict(encoder: str, kind: str = "relative") -> dict:
    """The seeded weights as torch tensors (sharing numpy's memory), ready for torch.save or load_state_dict."""
    import torch

    return {key: torch.from_numpy(array) for key, array in seeded_arrays(model_keys(encoder, kind)).items()}


def write_checkpoint(encoder: str, kind: str, out: str | Path) -> dict:
    """Write the seeded checkpoint to out (atomically) and return the state_dict written."""
    import torch

    out = Path(out)
    state_dict = seeded_state_dict(encoder, kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    torch.save(state_dict, partial)
    partial.replace(out)
    return state_dict


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a Depth Anything V2 checkpoint with seeded stand-in weights.")
    parser.add_argument("encoder", choices=ENCODERS)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("out", help="the .pth file to write")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
    state_dict = write_checkpoint(args.encoder, args.kind, args.out)
    count = sum(t.numel() for t in state_dict.values())
    print(f"wrote {args.out}: {len(state_dict)} tensors, {count} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
