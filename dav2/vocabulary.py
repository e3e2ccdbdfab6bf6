"""The project's words, declared once: encoders, model kinds, precisions, formats, backends,
tensor names and default sizes.

Everything else imports these instead of spelling them again. numpy-free and torch-free, so
the runtime, the CLI and the models can all use it.

The encoder table follows upstream: DINOv2 ViT sizes (embed_dim, depth, heads, FFN) from
`dinov2.py`, the tapped blocks and the DPT head's features/out_channels from
`depth_anything_v2/dpt.py`'s `model_configs` and `intermediate_layer_idx`.
"""

from dataclasses import dataclass
from enum import Enum


class Choice(str, Enum):
    """A string enum: compares equal to its value, prints as its value, serialises as JSON text."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)


class ModelKind(Choice):
    RELATIVE = "relative"  # affine-invariant disparity, larger = nearer
    METRIC = "metric"  # metres, smaller = nearer


class Precision(Choice):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class ArtifactFormat(Choice):
    ONNX = "onnx"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"
    PYTORCH = "pytorch"
    LITERT = "litert"  # .tflite (LiteRT, formerly TensorFlow Lite)
    EXECUTORCH = "executorch"  # .pte with the XNNPACK delegate
    COREML = "coreml"  # .mlpackage (ML Program); runs on Apple devices only


class BackendName(Choice):
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"
    TORCH = "torch"
    LITERT = "litert"
    EXECUTORCH = "executorch"


# what runs each format, and the file endings each format uses
FORMAT_BACKEND = {
    ArtifactFormat.ONNX: BackendName.ONNXRUNTIME,
    ArtifactFormat.OPENVINO: BackendName.OPENVINO,
    ArtifactFormat.TENSORRT: BackendName.TENSORRT,
    ArtifactFormat.PYTORCH: BackendName.TORCH,
    ArtifactFormat.LITERT: BackendName.LITERT,
    ArtifactFormat.EXECUTORCH: BackendName.EXECUTORCH,
}
SUFFIX_FORMAT = {
    ".onnx": ArtifactFormat.ONNX,
    ".xml": ArtifactFormat.OPENVINO,
    ".engine": ArtifactFormat.TENSORRT,
    ".plan": ArtifactFormat.TENSORRT,
    ".pth": ArtifactFormat.PYTORCH,
    ".pt": ArtifactFormat.PYTORCH,
    ".tflite": ArtifactFormat.LITERT,
    ".pte": ArtifactFormat.EXECUTORCH,
    ".mlpackage": ArtifactFormat.COREML,
}

# the graph's tensors, in every format
INPUT_NAME = "image"  # (B, 3, H, W) float32, ImageNet-normalised RGB
OUTPUT_NAME = "depth"  # (B, H, W) float32

PATCH_SIZE = 14  # ViT patch: network sides are multiples of it
DEFAULT_INPUT_SIZE = 518  # upstream's input_size: the short side fed to the network (37 patches)
# the sides a dynamic artifact accepts (a dynamic graph records this in its metadata)
DYNAMIC_MIN_SIDE = 28
DYNAMIC_MAX_SIDE = 7168

# ImageNet normalisation, as upstream's NormalizeImage
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# metric heads: the output is sigmoid * max_depth (metres); upstream ships two
METRIC_MAX_DEPTHS = {20.0: "hypersim", 80.0: "vkitti"}
DEFAULT_MAX_DEPTH = 20.0


@dataclass(frozen=True)
class EncoderSpec:
    """One ViT size: the DINOv2 encoder, the blocks the head taps, the DPT head, the weights."""

    name: str  # vits / vitb / vitl / vitg
    size_name: str  # Small / Base / Large / Giant (Hugging Face repository names)
    embed_dim: int
    depth: int
    num_heads: int
    ffn: str  # "mlp" or "swiglu" (ViT-G)
    tapped_layers: tuple[int, int, int, int]  # blocks whose outputs feed the DPT head
    features: int  # DPT head width
    out_channels: tuple[int, int, int, int]  # DPT projections, one per tapped block
    licence: str
    published: bool  # official weights exist (ViT-G was announced, never released)

    @property
    def non_commercial(self) -> bool:
        return self.licence.startswith("CC-BY-NC")


ENCODER_SPECS = {
    spec.name: spec
    for spec in (
        EncoderSpec("vits", "Small", 384, 12, 6, "mlp", (2, 5, 8, 11), 64, (48, 96, 192, 384), "Apache-2.0", True),
        EncoderSpec("vitb", "Base", 768, 12, 12, "mlp", (2, 5, 8, 11), 128, (96, 192, 384, 768), "CC-BY-NC-4.0", True),
        EncoderSpec(
            "vitl", "Large", 1024, 24, 16, "mlp", (4, 11, 17, 23), 256, (256, 512, 1024, 1024), "CC-BY-NC-4.0", True
        ),
        EncoderSpec(
            "vitg",
            "Giant",
            1536,
            40,
            24,
            "swiglu",
            (9, 19, 29, 39),
            384,
            (1536, 1536, 1536, 1536),
            "CC-BY-NC-4.0",
            False,
        ),
    )
}
ENCODERS = tuple(ENCODER_SPECS)


def encoder_spec(name: str) -> EncoderSpec:
    """The spec for `name`, or a ValueError naming the choices."""
    try:
        return ENCODER_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}") from None


def encoder_from_embed_dim(embed_dim: int) -> str | None:
    """vits/vitb/vitl/vitg from a checkpoint's embedding width; None if no encoder has it."""
    return next((spec.name for spec in ENCODER_SPECS.values() if spec.embed_dim == embed_dim), None)


def output_meaning(kind: str) -> str:
    """What the numbers in a depth map mean, for metadata and summaries."""
    return "metres (smaller = nearer)" if kind == ModelKind.METRIC else "disparity (relative, larger = nearer)"


def output_unit(kind: str) -> str:
    return "m" if kind == ModelKind.METRIC else "disparity"
