"""What is known about the official Depth Anything V2 checkpoints: file names, hub repos, licences.

The relative models come from depth-anything/Depth-Anything-V2-{Small,Base,Large}; the metric
ones were fine-tuned on Hypersim (indoor, max_depth 20 m) and Virtual KITTI 2 (outdoor,
max_depth 80 m). The same weights converted for transformers live in the `-hf` repositories
(Depth-Anything-V2-Small-hf, Depth-Anything-V2-Metric-Indoor-Small-hf, ...), which
dav2.models.hf reads. ViT-G weights were announced but never published: exporting vitg needs
--checkpoint. The encoders themselves are described once, in dav2.vocabulary.ENCODER_SPECS.
"""

from dataclasses import dataclass

from dav2.vocabulary import DEFAULT_MAX_DEPTH, METRIC_MAX_DEPTHS, ModelKind, encoder_spec


@dataclass(frozen=True)
class CheckpointInfo:
    encoder: str
    kind: ModelKind
    max_depth: float | None
    filename: str
    hub_repo: str | None  # None: not published
    licence: str

    @property
    def non_commercial(self) -> bool:
        return self.licence.startswith("CC-BY-NC")

    @property
    def transformers_repo(self) -> str | None:
        """The same weights converted for Hugging Face transformers (`--checkpoint` takes this id too)."""
        if self.hub_repo is None:
            return None
        return (
            self.hub_repo.replace("Metric-Hypersim", "Metric-Indoor").replace("Metric-VKITTI", "Metric-Outdoor") + "-hf"
        )


def checkpoint_info(encoder: str, kind: str = "relative", max_depth: float | None = None) -> CheckpointInfo:
    """The official checkpoint for this encoder/kind (metric: max_depth 20 = Hypersim, 80 = VKITTI2)."""
    spec = encoder_spec(encoder)
    kind = ModelKind(kind)
    if kind == ModelKind.RELATIVE:
        hub = f"depth-anything/Depth-Anything-V2-{spec.size_name}" if spec.published else None
        return CheckpointInfo(spec.name, kind, None, f"depth_anything_v2_{spec.name}.pth", hub, spec.licence)
    max_depth = DEFAULT_MAX_DEPTH if max_depth is None else float(max_depth)
    dataset = METRIC_MAX_DEPTHS.get(max_depth, "hypersim" if max_depth <= 40 else "vkitti")
    hub_name = {"hypersim": "Hypersim", "vkitti": "VKITTI"}[dataset]
    hub = f"depth-anything/Depth-Anything-V2-Metric-{hub_name}-{spec.size_name}" if spec.published else None
    filename = f"depth_anything_v2_metric_{dataset}_{spec.name}.pth"
    return CheckpointInfo(spec.name, kind, max_depth, filename, hub, spec.licence)
