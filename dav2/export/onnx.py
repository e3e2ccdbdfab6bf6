"""PyTorch Depth Anything V2 -> ONNX (static or dynamic shapes, FP32 or FP16), checked.

Exporter: torch.onnx's TorchScript exporter (dynamo=False), opset 17. Both torch exporters
reproduce upstream at the traced size and, with the model's explicit bicubic positional
embedding, at any other size; we compared them on this project's model (docs/export.md, "Exporter")
and keep the TorchScript one as the default because its graph ran as fast in ONNX Runtime,
it exports faster and it needs no onnxscript. `exporter="dynamo"`
selects the other.

The FP32 graph written here is also the source of every other artifact (FP16 and INT8 ONNX,
OpenVINO IR, TensorRT engines). After export it is run in ONNX Runtime on a real image and
compared with PyTorch; a difference beyond tolerance fails the export. Dynamic graphs are
checked at two sizes, because a graph that bakes in the traced size still runs at the traced
one.
"""

import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import dav2
from dav2 import console, processing
from dav2.errors import Dav2Error
from dav2.export.context import DYNAMIC_RANGE, EXPORTERS, OPSET, Built, ExportContext, ExportRequest, GraphOptions
from dav2.export.target import ExportTarget
from dav2.models.dpt import DepthAnythingV2
from dav2.models.registry import checkpoint_info
from dav2.vocabulary import INPUT_NAME, OUTPUT_NAME, ArtifactFormat, Precision

__all__ = ["DYNAMIC_RANGE", "GraphOptions", "OnnxTarget", "export_fp32_onnx"]

# max |artifact - torch| / max(1, max |torch|) for artifacts that claim FP32 or FP16 parity:
# FP32 graphs agree far within their bound (the difference each export measures is printed and
# recorded in the sidecar's `parity`); FP16 graphs need the looser one. INT8 artifacts get the
# accuracy report instead.
PARITY_TOLERANCE = {Precision.FP32: 1e-3, Precision.FP16: 1e-2}
EXTERNAL_DATA_SUFFIX = ".data"
# protobuf cannot serialise 2 GiB; weights above this go to an external data file
PROTOBUF_SAFE_BYTES = 1_800_000_000
DATA_ALIGNMENT = 4096

Runner = Callable[[np.ndarray], np.ndarray]


def artifact_stem(model: DepthAnythingV2, options: GraphOptions, precision: str = Precision.FP32) -> str:
    """depth_anything_v2_vits_dynamic, ..._metric_hypersim_vitl_518x518_fp16, ..._int8."""
    kind = "metric" if model.metric else "relative"
    base = Path(checkpoint_info(model.encoder, kind, model.max_depth if model.metric else None).filename).stem
    suffix = "" if precision == Precision.FP32 else f"_{precision}"
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
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes,
        )
        program.save(str(path))
        return
    dynamic_axes = None
    if options.dynamic:
        dynamic_axes = {
            INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 1: "height", 2: "width"},
        }
    torch.onnx.export(
        model,
        (example,),
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes=dynamic_axes,
        do_constant_folding=True,
    )


def external_data_path(artifact: Path) -> Path:
    """`m.onnx` -> `m.onnx.data`: the one file holding an artifact's external weights."""
    return artifact.with_name(artifact.name + EXTERNAL_DATA_SUFFIX)


def save_onnx(model, path: Path, external_data: bool) -> None:
    """Write an onnx.ModelProto; weights go to `<path>.data` when asked or near protobuf's 2 GB.

    Everything the artifact needs is then `path` plus at most one data file named after it,
    so two exports into one folder never share or overwrite weight files, and the pair can
    be moved together.
    """
    import onnx

    if external_data or _tensor_bytes(model) > PROTOBUF_SAFE_BYTES:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=external_data_path(path).name,
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))


def gather_external_data(path: Path, external_data: bool) -> None:
    """Rewrite a freshly exported graph so its weights sit in at most one file, `<path>.data`.

    torch.onnx writes a graph over 2 GB (ViT-G) as hundreds of loose tensor files named after
    parameters. They are appended one by one to `<path>.data` (streamed: a 5 GB model is
    never held twice in memory) and the graph is pointed at it; then the loose files go. The
    export writes into a folder of its own, so every other file there is one of them.
    """
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    loose = [p for p in path.parent.iterdir() if p != path]
    if not loose:
        if external_data:
            save_onnx(onnx.load(str(path)), path, external_data=True)
        return
    model = onnx.load(str(path), load_external_data=False)
    data_path = external_data_path(path)
    with open(data_path, "wb") as out:
        for tensor in _graph_tensors(model.graph):
            if not uses_external_data(tensor):
                continue
            info = ExternalDataInfo(tensor)
            with open(path.parent / info.location, "rb") as source:
                source.seek(info.offset or 0)
                data = source.read(info.length) if info.length else source.read()
            out.write(b"\0" * (-out.tell() % DATA_ALIGNMENT))  # page-aligned, so runtimes can mmap it
            offset = out.tell()
            out.write(data)
            del tensor.external_data[:]
            for key, value in (("location", data_path.name), ("offset", offset), ("length", len(data))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, str(value)
    onnx.save_model(model, str(path))
    for file in loose:
        if file != data_path:
            file.unlink()


def _graph_tensors(graph):
    """Every TensorProto of a graph: initializers and Constant/attribute tensors, subgraphs too."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for subgraph in [attribute.g] if attribute.HasField("g") else []:
                yield from _graph_tensors(subgraph)


def _tensor_bytes(model) -> int:
    return sum(len(t.raw_data) + 4 * len(t.float_data) for t in _graph_tensors(model.graph))


def weights_file(path: Path) -> str | None:
    data = external_data_path(path)
    return data.name if data.is_file() else None


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
    return lambda tensor: session.run(None, {INPUT_NAME: tensor})[0]


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
    tolerance = PARITY_TOLERANCE[Precision(precision)]
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
    kind = "metric" if model.metric else "relative"
    path = work_dir / f"{artifact_stem(model, options)}.onnx"
    shape = "dynamic batch/H/W" if options.dynamic else options.shape_label
    with console.step(
        f"exporting {model.encoder} {kind} to ONNX ({shape}, {options.exporter} exporter, opset {OPSET})"
    ):
        export_graph(model, path, options)
        gather_external_data(path, options.external_data)
    with console.step("checking the ONNX graph against PyTorch in ONNX Runtime"):
        diffs = parity_check(onnxruntime_runner(path), model, image, options)
    return path, require_parity(diffs, Precision.FP32, "exported graph")


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {
        "dav2": dav2.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
    }


def onnx_built(path: Path, metadata) -> Built:
    """An ONNX artifact with its weights file (if any) recorded and listed as a companion."""
    metadata.weights_file = weights_file(path)
    companions = [path.with_name(metadata.weights_file)] if metadata.weights_file else []
    return Built(path, metadata, companions)


class OnnxTarget(ExportTarget):
    """The checked FP32 graph, or the precision-explicit FP16 graph (FP32 islands, FP32 I/O)."""

    name = "ONNX"
    suffix = ".onnx"

    def __init__(self, precision: str):
        super().__init__(precision)
        if self.precision == Precision.INT8:
            raise ValueError("ONNX INT8 is OnnxInt8Target")

    def preflight(self, request: ExportRequest) -> None:
        """onnx and onnxruntime come with the export extra (checked with torch by the CLI);
        FP16 is made by Model Optimizer."""
        if self.precision == Precision.FP16:
            from dav2.export.explicit import check_fp32_groups, require_modelopt

            require_modelopt()
            check_fp32_groups(request.keep_fp32)

    def build(self, context: ExportContext) -> list[Built]:
        if self.precision == Precision.FP16:
            from dav2.export.explicit import explicit_onnx

            return [explicit_onnx(context, self.precision)]
        # the FP32 graph is published as it is, after every other target used it
        metadata = context.describe(context.fp32_onnx, ArtifactFormat.ONNX, self.precision)
        metadata.parity = context.parity
        return [onnx_built(context.fp32_onnx, metadata)]
