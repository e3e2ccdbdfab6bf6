#!/usr/bin/env python3
"""Which PyTorch module is the baseline? dav2's DepthAnythingV2 against upstream's, side by side.

dav2-bench's speed-ups are against dav2's own PyTorch module in eager FP32. Upstream's module
(Depth-Anything-V2's `depth_anything_v2/dpt.py`) computes the same depth from the same
checkpoint but is slower on CPUs, so "N x faster than PyTorch" depends on which one is meant.
This script times both on one real photo at one size, in one process, round-robin (so a noisy
neighbour slows every variant alike), and prints a Markdown table with the command:

- upstream eager FP32, and upstream under torch.autocast(bfloat16)
- dav2 eager FP32, and dav2 under torch.autocast(bfloat16)
- with --compile, both under torch.compile as well (minutes of compilation on a small CPU)

It also checks that both modules give the same depth (max abs difference, relative to the
output's scale), so the comparison is between equals.

    git clone https://github.com/DepthAnything/Depth-Anything-V2 /tmp/upstream
    python scripts/seeded_checkpoint.py vits relative /tmp/vits.pth
    python benchmarks/pytorch_modules.py --upstream /tmp/upstream --checkpoint /tmp/vits.pth \\
        --image tests/data/images/<photo>.jpg --threads 2 --rounds 3
"""

import argparse
import contextlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dav2 import processing
from dav2.media import read_image
from dav2.models.checkpoint import load_model
from dav2.vocabulary import ENCODER_SPECS

Forward = Callable[[torch.Tensor], torch.Tensor]


def upstream_module(folder: Path, encoder: str, checkpoint: Path) -> torch.nn.Module:
    """Upstream's DepthAnythingV2 from a clone, with the checkpoint loaded strictly."""
    sys.path.insert(0, str(folder))
    without_torchvision()
    from depth_anything_v2.dpt import DepthAnythingV2

    spec = ENCODER_SPECS[encoder]
    model = DepthAnythingV2(encoder=encoder, features=spec.features, out_channels=list(spec.out_channels))
    model.load_state_dict(torch.load(checkpoint, map_location="cpu"), strict=True)
    return model.eval()


def without_torchvision() -> None:
    """Upstream's dpt.py imports torchvision.transforms.Compose for its image2tensor helper,
    which this script never calls (it feeds dav2's preprocessed tensor to both modules). Where
    torchvision is not installed (a CPU torch wheel has no matching one on the package index
    here), that one name is provided so the module imports; the network is upstream's as is."""
    try:
        import torchvision.transforms  # noqa: F401
    except (ImportError, RuntimeError):
        import types

        package, transforms = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
        transforms.Compose = object  # never called by the forward pass
        package.transforms = transforms
        sys.modules.update({"torchvision": package, "torchvision.transforms": transforms})


def variants(upstream: torch.nn.Module, ours: torch.nn.Module, compile_too: bool) -> dict[str, Forward]:
    table = {
        "upstream eager FP32": upstream,
        "upstream autocast BF16": bf16(upstream),
        "dav2 eager FP32": ours,
        "dav2 autocast BF16": bf16(ours),
    }
    if compile_too:
        table["upstream torch.compile FP32"] = torch.compile(upstream)
        table["dav2 torch.compile FP32"] = torch.compile(ours)
    return table


def bf16(module: torch.nn.Module) -> Forward:
    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return module(x).float()

    return forward


def time_once(forward: Forward, x: torch.Tensor) -> float:
    start = time.perf_counter()
    forward(x)
    return (time.perf_counter() - start) * 1000.0


def measure(table: dict[str, Forward], x: torch.Tensor, rounds: int, runs: int) -> dict[str, list[float]]:
    """Round-robin: each round times every variant `runs` times; the round's median is kept."""
    for forward in table.values():  # warm-up (and compilation)
        forward(x)
        forward(x)
    medians: dict[str, list[float]] = {name: [] for name in table}
    for _ in range(rounds):
        for name, forward in table.items():
            medians[name].append(statistics.median(time_once(forward, x) for _ in range(runs)))
    return medians


def markdown(medians: dict[str, list[float]], agreement: float, args: argparse.Namespace) -> str:
    baseline = statistics.median(medians["upstream eager FP32"])
    ours = statistics.median(medians["dav2 eager FP32"])
    lines = [
        f"Command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`",
        "",
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {args.encoder} at {args.size}x{args.size}, median of {args.rounds} rounds x {args.runs} runs "
        f"(round-robin). Both modules agree to {agreement:.1e} of the output's scale (FP32).",
        "",
        "| module | median ms | vs upstream eager FP32 | vs dav2 eager FP32 |",
        "|---|---|---|---|",
    ]
    for name, values in medians.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median:.0f} | {baseline / median:.2f}x | {ours / median:.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", type=Path, required=True, help="a clone of DepthAnything/Depth-Anything-V2")
    parser.add_argument("--checkpoint", type=Path, required=True, help="an official-format .pth")
    parser.add_argument("--encoder", default="vits", choices=sorted(ENCODER_SPECS))
    parser.add_argument("--image", type=Path, required=True, help="a real photo")
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per variant per round")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    image = read_image(args.image)
    x = torch.from_numpy(np.ascontiguousarray(processing.preprocess(image, fixed_hw=(args.size, args.size))))
    upstream = upstream_module(args.upstream, args.encoder, args.checkpoint)
    ours = load_model(args.encoder, "relative", checkpoint=str(args.checkpoint))[0].eval()
    with torch.inference_mode(), contextlib.suppress(KeyboardInterrupt):
        expected, actual = upstream(x), ours(x)
        agreement = float((expected - actual).abs().max() / expected.abs().max())
        medians = measure(variants(upstream, ours, args.compile), x, args.rounds, args.runs)
        print(markdown(medians, agreement, args))


if __name__ == "__main__":
    main()
