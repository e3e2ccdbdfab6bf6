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

from pathlib import Path

import torch

from dav2 import console
from dav2.errors import Dav2Error
from dav2.export import parity
from dav2.export.context import EXPORTERS, OPSET, Built, ExportContext, ExportRequest, GraphOptions
from dav2.export.explicit import check_fp32_groups, explicit_onnx, require_modelopt
from dav2.export.graph import artifact_stem, gather_external_data, onnx_built, onnxruntime_runner
from dav2.export.target import ExportTarget
from dav2.metadata import ParityReport
from dav2.models.dpt import DepthAnythingV2
from dav2.vocabulary import INPUT_NAME, OUTPUT_NAME, ArtifactFormat, Precision

__all__ = ["OnnxTarget", "export_fp32_onnx"]


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


def export_fp32_onnx(model: DepthAnythingV2, work_dir: Path, options: GraphOptions, image) -> tuple[Path, ParityReport]:
    """Export and check the FP32 graph into `work_dir`; return its path and its parity report."""
    if options.exporter not in EXPORTERS:
        raise Dav2Error(f"unknown exporter {options.exporter!r}; choose one of {', '.join(EXPORTERS)}")
    path = work_dir / f"{artifact_stem(model, options)}.onnx"
    shape = "dynamic batch/H/W" if options.dynamic else options.shape_label
    with console.step(
        f"exporting {model.encoder} {model.kind} to ONNX ({shape}, {options.exporter} exporter, opset {OPSET})"
    ):
        export_graph(model, path, options)
        gather_external_data(path, options.external_data)
    with console.step("checking the ONNX graph against PyTorch in ONNX Runtime"):
        report = parity.against_pytorch(
            onnxruntime_runner(path), model, image, options, Precision.FP32, "the exported graph"
        )
    return path, report


class OnnxTarget(ExportTarget):
    """The checked FP32 graph, or the precision-explicit FP16 graph (FP32 islands, FP32 I/O)."""

    def __init__(self, row, precision: str):
        super().__init__(row, precision)
        if self.precision == Precision.INT8:
            raise ValueError("ONNX INT8 is OnnxInt8Target")

    def preflight(self, request: ExportRequest) -> None:
        """onnx and onnxruntime come with the export extra (checked with torch by the CLI);
        FP16 is made by Model Optimizer."""
        if self.precision == Precision.FP16:
            require_modelopt()
            check_fp32_groups(request.keep_fp32)

    def build(self, context: ExportContext) -> list[Built]:
        if self.precision == Precision.FP16:
            return [explicit_onnx(context, self.precision)]
        # the FP32 graph is published as it is, after every other target used it
        metadata = context.describe(context.fp32_onnx, ArtifactFormat.ONNX, self.precision)
        metadata.parity = context.parity
        return [onnx_built(context.fp32_onnx, metadata)]
