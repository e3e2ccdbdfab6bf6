"""PyTorch Depth Anything V2 -> ONNX (static or dynamic shapes, FP32 or FP16), checked.

Exporter: torch.onnx's TorchScript exporter (dynamo=False), opset 17. Both torch exporters
reproduce upstream at the traced size and, with the model's explicit bicubic positional
embedding, at any other size; we measured them on this project's model (see README, "Export")
and keep the TorchScript one as the default because its graph ran as fast or faster in ONNX
Runtime, exports in a third of the time and has no onnxscript dependency. `exporter="dynamo"`
selects the other.

After export the graph is run in ONNX Runtime on a real image and compared with PyTorch; a
difference beyond tolerance fails the export (and no artifact is left behind). Dynamic graphs
are checked at two sizes, because a graph that bakes in the traced size still runs at the
traced one.
"""

import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import dav2
from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.metadata import output_meaning, write_metadata
from dav2.models.dpt import DepthAnythingV2
from dav2.models.registry import checkpoint_info

OPSET = 17
EXPORTERS = ("torchscript", "dynamo")
# max |onnx - torch| / max(1, max |torch|): FP32 graphs agree to ~1e-5 (upstream's own CPU
# rounding is ~6e-5 on values of order 5); FP16 measured 1.3e-3 on vits (seeded weights).
PARITY_TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2}


@dataclass
class OnnxExportOptions:
    height: int = 518
    width: int = 518
    dynamic: bool = False
    fp16: bool = False
    exporter: str = "torchscript"


def artifact_stem(encoder: str, kind: str, max_depth: float | None, options: OnnxExportOptions) -> str:
    """depth_anything_v2_vits_518x518, ..._metric_hypersim_vitl_dynamic_fp16, ..."""
    base = Path(checkpoint_info(encoder, kind, max_depth).filename).stem
    shape = "dynamic" if options.dynamic else f"{options.height}x{options.width}"
    precision = "_fp16" if options.fp16 else ""
    return f"{base}_{shape}{precision}"


def export_graph(model: DepthAnythingV2, path: Path, options: OnnxExportOptions) -> None:
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


def convert_to_fp16(path: Path) -> None:
    """FP16 weights and activations, FP32 input and output (so runtimes feed the same tensors)."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(path))
    # the positional-embedding resampling builds index arithmetic (Range, Floor, comparisons)
    # that has no FP16 kernels; those few small ops stay FP32
    block = list(DEFAULT_OP_BLOCK_LIST) + ["Range", "Floor", "Equal", "Clip", "Where", "ReduceSum"]
    model = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True, op_block_list=block)
    onnx.save(model, str(path))


def check_sizes(image_hw: tuple[int, int], options: OnnxExportOptions) -> list[tuple[int, int]]:
    """Network sizes to check: the fixed one, or for dynamic graphs two different ones."""
    if not options.dynamic:
        return [(options.height, options.width)]
    first = processing.network_size(image_hw, min(options.height, options.width))
    second = processing.network_size(image_hw, 364 if min(first) != 364 else 308)
    return [first, second]


def parity_check(path: Path, model: DepthAnythingV2, image: np.ndarray, options: OnnxExportOptions) -> dict[str, float]:
    """Max |ONNX Runtime - PyTorch| / max(1, max |PyTorch|) at each check size ("HxW" -> diff)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = {}
    for net_hw in check_sizes(image.shape[:2], options):
        tensor = processing.preprocess(image, fixed_hw=net_hw)
        with torch.no_grad():
            expected = model(torch.from_numpy(tensor)).numpy()
        actual = session.run(None, {"image": tensor})[0]
        if actual.shape != expected.shape:
            raise Dav2Error(
                f"the exported graph returned shape {actual.shape} for input {tensor.shape} "
                f"(PyTorch: {expected.shape}): it does not follow the input size"
            )
        scale = max(1.0, float(np.abs(expected).max()))
        diffs[f"{net_hw[0]}x{net_hw[1]}"] = float(np.abs(actual - expected).max()) / scale
    return diffs


def export_onnx(
    model: DepthAnythingV2,
    output_dir: Path,
    options: OnnxExportOptions,
    check_image: np.ndarray,
    provenance: dict,
) -> Path:
    """Export, convert, check, then move `<stem>.onnx` and `<stem>.json` into `output_dir`."""
    if options.exporter not in EXPORTERS:
        raise Dav2Error(f"unknown exporter {options.exporter!r}; choose one of {', '.join(EXPORTERS)}")
    kind = "metric" if model.metric else "relative"
    max_depth = model.max_depth if model.metric else None
    stem = artifact_stem(model.encoder, kind, max_depth, options)
    precision = "fp16" if options.fp16 else "fp32"
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / f"{stem}.onnx"

    with tempfile.TemporaryDirectory(dir=output_dir, prefix=".export-") as tmp:
        work = Path(tmp) / f"{stem}.onnx"
        shape = "dynamic batch/H/W" if options.dynamic else f"{options.height}x{options.width}"
        with console.step(
            f"exporting {model.encoder} {kind} to ONNX ({shape}, {options.exporter} exporter, opset {OPSET})"
        ):
            export_graph(model, work, options)
        if options.fp16:
            with console.step("converting to FP16 (FP32 input/output)"):
                convert_to_fp16(work)
        with console.step("checking the ONNX graph against PyTorch in ONNX Runtime"):
            diffs = parity_check(work, model, check_image, options)
        for size, value in diffs.items():
            console.info(f"  max abs difference at {size}: {value:.2e} (relative to the output's scale)")
        diff = max(diffs.values())
        tolerance = PARITY_TOLERANCE[precision]
        if not diff <= tolerance:
            raise Dav2Error(
                f"the exported model differs from PyTorch by {diff:.2e} (tolerance {tolerance:.0e}); nothing written"
            )
        # large models (vitg) come with external weight files: move those first, the graph last
        for extra in sorted(Path(tmp).iterdir()):
            if extra != work:
                shutil.move(str(extra), output_dir / extra.name)
        shutil.move(str(work), final)

    metadata = {
        "artifact": final.name,
        "format": "onnx",
        "encoder": model.encoder,
        "kind": kind,
        "max_depth": max_depth,
        "output": output_meaning(kind),
        "input_name": "image",
        "output_name": "depth",
        "input_shape": ["batch", 3, "height", "width"] if options.dynamic else [1, 3, options.height, options.width],
        "dynamic": options.dynamic,
        "dynamic_range": {"multiple_of": 14, "min": 28, "max": 7168} if options.dynamic else None,
        "traced_hw": [options.height, options.width],
        "mean": list(processing.MEAN),
        "std": list(processing.STD),
        "precision": precision,
        "calibration": None,
        "exporter": options.exporter,
        "opset": OPSET,
        "parity": {"max_abs_diff_relative": diffs, "tolerance": tolerance, "against": "PyTorch FP32 (CPU)"},
        "tools": tool_versions(),
        **provenance,
    }
    write_metadata(final, metadata)
    return final


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
