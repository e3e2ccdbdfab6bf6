"""ONNX files as artifacts, torch-free: names, weights in one external data file, the runner
ONNX Runtime checks them with, the tool versions every sidecar records.

Every target that writes an ONNX graph (FP32, the precision-explicit FP16/INT8 graphs, ONNX
Runtime INT8, uint8-input wrappers) uses these; the FP32 export itself is dav2.export.onnx.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np

import dav2
from dav2 import optional, processing
from dav2.export.context import Built, GraphOptions
from dav2.models.registry import checkpoint_info
from dav2.vocabulary import INPUT_NAME, Precision

EXTERNAL_DATA_SUFFIX = ".data"
# protobuf cannot serialise 2 GiB; weights above this go to an external data file
PROTOBUF_SAFE_BYTES = 1_800_000_000
DATA_ALIGNMENT = 4096

Runner = Callable[[np.ndarray], np.ndarray]


def artifact_stem(model, options: GraphOptions, precision: str = Precision.FP32) -> str:
    """depth_anything_v2_vits_dynamic, ..._metric_hypersim_vitl_518x518_fp16, ..._int8."""
    base = Path(checkpoint_info(model.encoder, model.kind, model.metric_max_depth).filename).stem
    suffix = "" if precision == Precision.FP32 else f"_{precision}"
    return f"{base}_{options.shape_label}{suffix}"


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


def tool_versions() -> dict[str, str]:
    """The libraries behind every artifact of an export, as its sidecars record them."""
    import platform

    versions = {name: optional.version(name) for name in ("torch", "onnx", "onnxruntime")}
    return {"dav2": dav2.__version__, **versions, "python": platform.python_version()}


def onnx_built(path: Path, metadata) -> Built:
    """An ONNX artifact with its weights file (if any) recorded and listed as a companion."""
    metadata.weights_file = weights_file(path)
    companions = [path.with_name(metadata.weights_file)] if metadata.weights_file else []
    return Built(path, metadata, companions)
