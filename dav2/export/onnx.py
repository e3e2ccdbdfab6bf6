"""PyTorch Depth Anything V2 -> ONNX (static or dynamic shapes, FP32 or FP16), checked.

Exporter: torch.onnx's TorchScript exporter (dynamo=False), opset 17. Both torch exporters
reproduce upstream at the traced size and, with the model's explicit bicubic positional
embedding, at any other size; we measured them on this project's model (see README, "Export")
and keep the TorchScript one as the default because its graph ran as fast or faster in ONNX
Runtime, exports in a third of the time and has no onnxscript dependency. `exporter="dynamo"`
selects the other.

The FP32 graph written here is also the source of every other artifact (FP16 and INT8 ONNX,
OpenVINO IR, TensorRT engines). After export it is run in ONNX Runtime on a real image and
compared with PyTorch; a difference beyond tolerance fails the export. Dynamic graphs are
checked at two sizes, because a graph that bakes in the traced size still runs at the traced
one.
"""

import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import dav2
from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.metadata import output_meaning
from dav2.models.dpt import DepthAnythingV2
from dav2.models.registry import checkpoint_info

OPSET = 17
EXPORTERS = ("torchscript", "dynamo")
# max |artifact - torch| / max(1, max |torch|) for artifacts that claim FP32 or FP16 parity:
# FP32 graphs agree to ~1e-5 (upstream's own CPU rounding is ~6e-5 on values of order 5);
# FP16 ONNX measured 1.3e-3 on vits (seeded weights). INT8 artifacts get the accuracy report.
PARITY_TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2}
DYNAMIC_RANGE = {"multiple_of": 14, "min": 28, "max": 7168}

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class GraphOptions:
    """The input shape of the exported graph and the exporter that writes it."""

    height: int = 518
    width: int = 518
    dynamic: bool = False
    exporter: str = "torchscript"

    @property
    def shape_label(self) -> str:
        return "dynamic" if self.dynamic else f"{self.height}x{self.width}"


def model_kind(model: DepthAnythingV2) -> tuple[str, float | None]:
    return ("metric", model.max_depth) if model.metric else ("relative", None)


def artifact_stem(model: DepthAnythingV2, options: GraphOptions, precision: str = "fp32") -> str:
    """depth_anything_v2_vits_518x518, ..._metric_hypersim_vitl_dynamic_fp16, ..._int8."""
    kind, max_depth = model_kind(model)
    base = Path(checkpoint_info(model.encoder, kind, max_depth).filename).stem
    suffix = "" if precision == "fp32" else f"_{precision}"
    return f"{base}_{options.shape_label}{suffix}"


def export_graph(model: DepthAnythingV2, path: Path, options: GraphOptions) -> None:
    """Write the FP32 ONNX graph of `model` to `path`."""
    example = torch.randn(1, 3, options.height, options.width)
    if options.exporter == "dynamo":
        dynamic_shapes = None
        if options.dynamic:
            # torch.export specialises dimensions of size 1, so trace a batch of 2
            example = torch.randn(2, 3, options.height, options.width)
            patches_h = torch.export.Dim("patches_h", min=2, max=512)
            patches_w = torch.export.Dim("patches_w", min=2, max=512)
            batch = torch.export.Dim("batch", min=1, max=1024)
            dynamic_shapes = {"x": {0: batch, 2: 14 * patches_h, 3: 14 * patches_w}}
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=max(OPSET, 18),
            input_names=["image"],
            output_names=["depth"],
            dynamic_shapes=dynamic_shapes,
        )
        program.save(str(path))
        return
    dynamic_axes = None
    if options.dynamic:
        dynamic_axes = {"image": {0: "batch", 2: "height", 3: "width"}, "depth": {0: "batch", 1: "height", 2: "width"}}
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["image"],
        output_names=["depth"],
        dynamic_axes=dynamic_axes,
        do_constant_folding=True,
    )


def convert_to_fp16(source: Path, target: Path) -> None:
    """FP16 weights and activations, FP32 input and output (so runtimes feed the same tensors)."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(source))
    # the positional-embedding resampling builds index arithmetic (Range, Floor, comparisons)
    # that has no FP16 kernels; those few small ops stay FP32
    block = list(DEFAULT_OP_BLOCK_LIST) + ["Range", "Floor", "Equal", "Clip", "Where", "ReduceSum"]
    model = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True, op_block_list=block)
    onnx.save(model, str(target))


def check_sizes(image_hw: tuple[int, int], options: GraphOptions) -> list[tuple[int, int]]:
    """Network sizes to check: the fixed one, or for dynamic graphs two different ones."""
    if not options.dynamic:
        return [(options.height, options.width)]
    first = processing.network_size(image_hw, min(options.height, options.width))
    second = processing.network_size(image_hw, 364 if min(first) != 364 else 308)
    return [first, second]


def onnxruntime_runner(path: Path) -> Runner:
    """A function that runs the ONNX file at `path` on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda tensor: session.run(None, {"image": tensor})[0]


def parity_check(run: Runner, model: DepthAnythingV2, image: np.ndarray, options: GraphOptions) -> dict[str, float]:
    """Max |artifact - PyTorch| / max(1, max |PyTorch|) at each check size ("HxW" -> diff)."""
    diffs = {}
    for net_hw in check_sizes(image.shape[:2], options):
        tensor = processing.preprocess(image, fixed_hw=net_hw)
        with torch.no_grad():
            expected = model(torch.from_numpy(tensor)).numpy()
        actual = run(tensor)
        if actual.shape != expected.shape:
            raise Dav2Error(
                f"the exported model returned shape {actual.shape} for input {tensor.shape} "
                f"(PyTorch: {expected.shape}): it does not follow the input size"
            )
        scale = max(1.0, float(np.abs(expected).max()))
        diffs[f"{net_hw[0]}x{net_hw[1]}"] = float(np.abs(actual - expected).max()) / scale
    return diffs


def require_parity(diffs: dict[str, float], precision: str, what: str) -> dict:
    """Print the parity numbers; fail when they exceed the tolerance. Returns the metadata entry."""
    for size, value in diffs.items():
        console.info(f"  max abs difference at {size}: {value:.2e} (relative to the output's scale)")
    tolerance = PARITY_TOLERANCE[precision]
    diff = max(diffs.values())
    if not diff <= tolerance:
        raise Dav2Error(f"the {what} differs from PyTorch by {diff:.2e} (tolerance {tolerance:.0e}); nothing written")
    return {"max_abs_diff_relative": diffs, "tolerance": tolerance, "against": "PyTorch FP32 (CPU)"}


def export_fp32_onnx(
    model: DepthAnythingV2, work_dir: Path, options: GraphOptions, image: np.ndarray
) -> tuple[Path, dict]:
    """Export and check the FP32 graph into `work_dir`; return its path and its parity entry."""
    if options.exporter not in EXPORTERS:
        raise Dav2Error(f"unknown exporter {options.exporter!r}; choose one of {', '.join(EXPORTERS)}")
    kind, _ = model_kind(model)
    path = work_dir / f"{artifact_stem(model, options)}.onnx"
    shape = "dynamic batch/H/W" if options.dynamic else options.shape_label
    with console.step(
        f"exporting {model.encoder} {kind} to ONNX ({shape}, {options.exporter} exporter, opset {OPSET})"
    ):
        export_graph(model, path, options)
    with console.step("checking the ONNX graph against PyTorch in ONNX Runtime"):
        diffs = parity_check(onnxruntime_runner(path), model, image, options)
    return path, require_parity(diffs, "fp32", "exported graph")


def export_fp16_onnx(
    fp32_path: Path, work_dir: Path, model: DepthAnythingV2, options: GraphOptions, image: np.ndarray
) -> tuple[Path, dict]:
    """FP16 copy of the checked FP32 graph, checked again."""
    path = work_dir / f"{artifact_stem(model, options, 'fp16')}.onnx"
    with console.step("converting to FP16 (FP32 input/output)"):
        convert_to_fp16(fp32_path, path)
    with console.step("checking the FP16 graph against PyTorch in ONNX Runtime"):
        diffs = parity_check(onnxruntime_runner(path), model, image, options)
    return path, require_parity(diffs, "fp16", "FP16 graph")


def describe_artifact(model: DepthAnythingV2, options: GraphOptions, path: Path, fmt: str, precision: str) -> dict:
    """The metadata fields every artifact carries (DESIGN rule 2)."""
    kind, max_depth = model_kind(model)
    return {
        "artifact": path.name,
        "format": fmt,
        "encoder": model.encoder,
        "kind": kind,
        "max_depth": max_depth,
        "output": output_meaning(kind),
        "input_name": "image",
        "output_name": "depth",
        "input_shape": ["batch", 3, "height", "width"] if options.dynamic else [1, 3, options.height, options.width],
        "dynamic": options.dynamic,
        "dynamic_range": DYNAMIC_RANGE if options.dynamic else None,
        "traced_hw": [options.height, options.width],
        "mean": list(processing.MEAN),
        "std": list(processing.STD),
        "precision": precision,
        "calibration": None,
        "exporter": options.exporter,
        "opset": OPSET,
    }


def tool_versions() -> dict:
    import onnx
    import onnxruntime

    return {
        "dav2": dav2.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }
