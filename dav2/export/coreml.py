"""PyTorch -> Core ML (.mlpackage, ML Program) at one fixed size: FP16 or FP32 compute.

coremltools converts on Linux, but a Core ML model runs only on Apple's platforms (macOS,
iOS, iPadOS), so dav2 cannot run or measure it here. What is checked instead is structural:
the package loads in coremltools' spec API and its input and output (names, types, shapes)
are the ones the sidecar records (`check_package`). docs/coreml.md has the snippet a Mac user
runs to check and use it.

The package is converted from `torch.export` of the fixed-size copy of `dav2.export.edge`
(its positional embedding is a constant: Core ML's converter has no boolean `&`), with
decompositions run first; the TorchScript route (`jit.trace`) does not convert this model.
Input `image` (1, 3, H, W) float32, output `depth` (1, H, W) float32, minimum deployment
target iOS 16 / macOS 13 (ML Program with FP16 compute).
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from dav2 import console, optional
from dav2.errors import Dav2Error
from dav2.export.context import Built, ExportContext, ExportRequest
from dav2.export.edge import artifact_path, edge_metadata, example_input, fixed_size_model, require_fixed_size
from dav2.export.target import ExportTarget
from dav2.metadata import CoreMlRecord
from dav2.vocabulary import INPUT_NAME, OUTPUT_NAME, ArtifactFormat, Precision

SUFFIX = ".mlpackage"
PRECISIONS = (Precision.FP16, Precision.FP32)
EXTRA_HINT = "pip install 'dav2[coreml]'"
DEPLOYMENT_TARGET = "iOS16"


@dataclass(frozen=True)
class PackageFacts:
    """What a package's spec declares: its one input and one output, and the spec version."""

    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    output_shape: tuple[int, ...] | None  # ML Programs may leave the output shape undeclared
    spec_version: int


def require_coremltools():
    try:
        import coremltools
    except ImportError as exc:
        raise Dav2Error(f"Core ML export needs coremltools: {EXTRA_HINT}") from exc
    return coremltools


def convert_coreml(
    model: torch.nn.Module, path: Path, height: int, width: int, precision: str = Precision.FP16
) -> Path:
    """Write `model` as an ML Program package for height x width; return `path`.

    FP16: Core ML computes in float16 (what the Neural Engine runs); FP32: float32 throughout
    (CPU and GPU only)."""
    ct = require_coremltools()
    import numpy as np

    precision = Precision(precision)
    if precision not in PRECISIONS:
        raise Dav2Error(f"Core ML export is {' or '.join(PRECISIONS)}, not {precision}")
    example = example_input(height, width)
    program = torch.export.export(fixed_size_model(model, height, width), (example,)).run_decompositions({})
    compute = ct.precision.FLOAT16 if precision == Precision.FP16 else ct.precision.FLOAT32
    package = ct.convert(
        program,
        inputs=[ct.TensorType(name=INPUT_NAME, shape=tuple(example.shape), dtype=np.float32)],
        outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
        convert_to="mlprogram",
        compute_precision=compute,
        minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
    )
    package.save(str(path))
    return path


def package_facts(path: Path) -> PackageFacts:
    """The input and output a saved package declares, read with coremltools' spec API."""
    ct = require_coremltools()
    try:
        spec = ct.utils.load_spec(str(path))
    except Exception as exc:  # coremltools raises plain Exceptions for unreadable packages
        raise Dav2Error(f"{path.name} is not a loadable Core ML package ({exc})") from exc
    inputs, outputs = spec.description.input, spec.description.output
    if len(inputs) != 1 or len(outputs) != 1:
        raise Dav2Error(f"{path.name} has {len(inputs)} inputs and {len(outputs)} outputs; dav2 writes one of each")
    output_shape = tuple(outputs[0].type.multiArrayType.shape) or None
    return PackageFacts(
        inputs[0].name,
        tuple(inputs[0].type.multiArrayType.shape),
        outputs[0].name,
        output_shape,
        spec.specificationVersion,
    )


def check_package(path: Path, height: int, width: int) -> PackageFacts:
    """The package's facts, or one Dav2Error when they are not dav2's input and output."""
    facts = package_facts(path)
    expected_in, expected_out = (1, 3, height, width), (1, height, width)
    problems = []
    if (facts.input_name, facts.input_shape) != (INPUT_NAME, expected_in):
        problems.append(
            f"input {facts.input_name} {list(facts.input_shape)}, expected {INPUT_NAME} {list(expected_in)}"
        )
    if facts.output_name != OUTPUT_NAME or facts.output_shape not in (None, expected_out):
        shape = list(facts.output_shape) if facts.output_shape else "?"
        problems.append(f"output {facts.output_name} {shape}, expected {OUTPUT_NAME} {list(expected_out)}")
    if problems:
        raise Dav2Error(f"{path.name} does not declare dav2's tensors: {'; '.join(problems)}")
    return facts


class CoreMlTarget(ExportTarget):
    """`dav2-export --coreml P` (fixed size): converted and checked structurally, not run.

    There is no parity check or accuracy report: Core ML runs only on Apple devices (the
    format's row has no backend, so the pipeline says so instead of measuring). The sidecar's
    `coreml` record holds the compute precision, deployment target and spec version."""

    def preflight(self, request: ExportRequest) -> None:
        require_fixed_size(request, self.name)
        require_coremltools()

    def build(self, context: ExportContext) -> list[Built]:
        options = context.options
        path = artifact_path(context, self.format.key, self.precision, SUFFIX)
        with console.step(f"converting to Core ML ({self.precision.upper()} ML Program, {options.shape_label})"):
            convert_coreml(context.model, path, options.height, options.width, self.precision)
        facts = check_package(path, options.height, options.width)
        console.info(f"  package checked: {facts.input_name} {list(facts.input_shape)} -> {facts.output_name}; not run")
        tools = {"coremltools": optional.version("coremltools") or "?"}
        metadata = edge_metadata(context, path, ArtifactFormat.COREML, self.precision, tools)
        compute = "float16" if self.precision == Precision.FP16 else "float32"
        metadata.coreml = CoreMlRecord(compute, DEPLOYMENT_TARGET, facts.spec_version)
        return [Built(path, metadata)]
