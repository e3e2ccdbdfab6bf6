"""What is known about the official Depth Anything V2 checkpoints: names, hub repos, licences.

The relative models come from depth-anything/Depth-Anything-V2-{Small,Base,Large}; the metric
ones were fine-tuned on Hypersim (indoor, max_depth 20 m) and Virtual KITTI 2 (outdoor,
max_depth 80 m). ViT-G weights were announced but never published: exporting vitg needs
--checkpoint.
"""

from dataclasses import dataclass

ENCODERS = ("vits", "vitb", "vitl", "vitg")
KINDS = ("relative", "metric")
METRIC_DATASETS = {20.0: "hypersim", 80.0: "vkitti"}
_SIZE_NAMES = {"vits": "Small", "vitb": "Base", "vitl": "Large", "vitg": "Giant"}
_EMBED_DIMS = {384: "vits", 768: "vitb", 1024: "vitl", 1536: "vitg"}


@dataclass(frozen=True)
class CheckpointInfo:
    encoder: str
    kind: str
    max_depth: float | None
    filename: str
    hub_repo: str | None  # None: not published
    licence: str

    @property
    def non_commercial(self) -> bool:
        return self.licence.startswith("CC-BY-NC")


def checkpoint_info(encoder: str, kind: str = "relative", max_depth: float | None = None) -> CheckpointInfo:
    """The official checkpoint for this encoder/kind (metric: max_depth 20 = Hypersim, 80 = VKITTI2)."""
    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r}; choose one of {', '.join(ENCODERS)}")
    licence = "Apache-2.0" if encoder == "vits" else "CC-BY-NC-4.0"
    size = _SIZE_NAMES[encoder]
    published = encoder != "vitg"
    if kind == "relative":
        return CheckpointInfo(
            encoder,
            kind,
            None,
            f"depth_anything_v2_{encoder}.pth",
            f"depth-anything/Depth-Anything-V2-{size}" if published else None,
            licence,
        )
    if kind != "metric":
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    max_depth = 20.0 if max_depth is None else float(max_depth)
    dataset = METRIC_DATASETS.get(max_depth, "hypersim" if max_depth <= 40 else "vkitti")
    hub_name = {"hypersim": "Hypersim", "vkitti": "VKITTI"}[dataset]
    return CheckpointInfo(
        encoder,
        kind,
        max_depth,
        f"depth_anything_v2_metric_{dataset}_{encoder}.pth",
        f"depth-anything/Depth-Anything-V2-Metric-{hub_name}-{size}" if published else None,
        licence,
    )


def encoder_from_embed_dim(embed_dim: int) -> str | None:
    return _EMBED_DIMS.get(embed_dim)
