"""The FP32 reference that travels with a precision-explicit ONNX graph.

`dav2-export --trt P --from model_P.onnx` builds the engine on the target (a Jetson), where
neither PyTorch nor the FP32 graph is, and where ONNX Runtime is at most 1.23.2 (Python 3.10),
which computes FP16 QuantizeLinear wrongly: running the graph there gives a wrong reference.
So the export computes the reference where it can be trusted, on its held-out images, and
writes it beside the graph (`<artifact>.reference.npz`): each image (PNG, lossless, so the
target preprocesses exactly the same input), the network size it runs at, the FP32 graph's
output there, and the precision-explicit graph's own AbsRel there (ONNX Runtime >= 1.32).
The engine is then checked against the FP32 outputs, and its AbsRel set beside the graph's.

Sizes: each held-out image at its upstream network size (aspect ratio kept) and the first one
stretched to the traced square (and to the camera's network size with --camera-size), so the
`batch` and `camera` profiles find a reference inside them too. torch-free (used by --from).
"""

import io
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dav2 import accuracy, optional, processing
from dav2.errors import Dav2Error

SUFFIX = ".reference.npz"
MAX_IMAGES = 2  # held-out images carried (each adds its PNG and one FP32 output per size)
TRUSTED_ONNXRUNTIME = (1, 32)  # older versions truncate FP16 QuantizeLinear (see the module docstring)


def reference_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + SUFFIX)


@dataclass
class ReferenceCase:
    """One input the engine is checked on, and the FP32 graph's output for it."""

    name: str
    image: np.ndarray  # BGR uint8
    hw: tuple[int, int]  # network size the image is preprocessed to
    expected: np.ndarray  # (1, H, W) FP32 output
    graph_abs_rel: float | None = None  # the precision-explicit graph's AbsRel here

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (1, 3, *self.hw)

    def tensor(self) -> np.ndarray:
        return processing.preprocess(self.image, fixed_hw=self.hw)


@dataclass
class Reference:
    cases: list[ReferenceCase]
    onnxruntime: str | None  # the version that computed the outputs

    def write(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        index = []
        for i, case in enumerate(self.cases):
            ok, png = cv2.imencode(".png", case.image)
            if not ok:
                raise Dav2Error(f"could not encode the reference image {case.name}")
            arrays[f"image_{i}"] = np.frombuffer(png.tobytes(), dtype=np.uint8)
            arrays[f"expected_{i}"] = case.expected.astype(np.float32)
            index.append({"name": case.name, "hw": list(case.hw), "graph_abs_rel": case.graph_abs_rel})
        meta = {"cases": index, "onnxruntime": self.onnxruntime}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path.write_bytes(buffer.getvalue())

    @classmethod
    def read(cls, path: Path) -> "Reference":
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(data["meta"].tobytes().decode())
                cases = [
                    ReferenceCase(
                        entry["name"],
                        cv2.imdecode(data[f"image_{i}"], cv2.IMREAD_COLOR),
                        (int(entry["hw"][0]), int(entry["hw"][1])),
                        data[f"expected_{i}"],
                        entry.get("graph_abs_rel"),
                    )
                    for i, entry in enumerate(meta["cases"])
                ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise Dav2Error(f"{path.name} is not a dav2 reference file ({exc}); re-export the graph") from exc
        return cls(cases, meta.get("onnxruntime"))

    def inside(self, fits) -> list[ReferenceCase]:
        """The cases whose input shape `fits(shape)` accepts (an engine's profile)."""
        return [case for case in self.cases if fits(case.shape)]


def reference_sizes(image_hw: tuple[int, int], traced: int, extra: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Upstream's network size for the image, the traced square, and any `extra` sizes."""
    sizes = [processing.network_size(image_hw, traced), (traced, traced), *extra]
    return list(dict.fromkeys(sizes))


def make_reference(
    fp32_graph: Path,
    graph: Path | None,
    images: list[tuple[str, np.ndarray]],
    traced: int,
    kind: str,
    extra_sizes: tuple[tuple[int, int], ...] = (),
    fixed_hw: tuple[int, int] | None = None,
) -> Reference:
    """FP32 outputs of `fp32_graph` (and the AbsRel of `graph`, the precision-explicit one) in
    ONNX Runtime on the first MAX_IMAGES `images`; the extra sizes for the first image only.
    A static graph (`fixed_hw`) is checked at its one size."""
    from dav2.runtime.backends.onnxruntime import OnnxRuntimeBackend

    cases = []
    with OnnxRuntimeBackend(fp32_graph, None) as fp32:
        explicit = OnnxRuntimeBackend(graph, None) if graph is not None else None
        try:
            for number, (name, image) in enumerate(images[:MAX_IMAGES]):
                if fixed_hw is not None:
                    sizes = [fixed_hw]
                else:
                    sizes = reference_sizes(image.shape[:2], traced, list(extra_sizes) if number == 0 else [])
                for hw in sizes if number == 0 else sizes[:1]:
                    case = ReferenceCase(name, image, hw, np.empty(0, np.float32))
                    tensor = case.tensor()
                    case.expected = fp32.infer(tensor)
                    if explicit is not None:
                        case.graph_abs_rel = accuracy.compare(explicit.infer(tensor)[0], case.expected[0], kind)[
                            "abs_rel"
                        ]
                    cases.append(case)
        finally:
            if explicit is not None:
                explicit.close()
    return Reference(cases, optional.version("onnxruntime"))


def trusted_onnxruntime(version: str | None) -> bool:
    if not version:
        return False
    parts = [int("".join(c for c in p if c.isdigit()) or 0) for p in version.split(".")[:2]]
    return tuple(parts) >= TRUSTED_ONNXRUNTIME
