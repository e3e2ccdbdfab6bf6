"""ONNX -> OpenVINO IR (.xml + .bin): FP32, FP16 (compressed weights) or INT8 (NNCF).

The IR is converted from the checked FP32 ONNX graph, not from the torch module: that graph
has already been compared with PyTorch at one or two sizes, its dynamic dimensions carry
over as they are, and one graph stays behind every artifact. Converting the torch module was
measured too: also exact (1.3e-6 at 518 and 364) but 8.5 s instead of 1.1 s.

Precision on the CPU: OpenVINO runs an FP32 IR in BF16 on CPUs that have it (this project's
CI machine does) unless told otherwise, so the FP32 artifact records the inference precision
hint "f32" and the backend applies it: FP32 means FP32. FP16 and INT8 artifacts leave the
device's own reduced precision (BF16 or FP16) in place; the accuracy report measures it.
"""

import platform
from pathlib import Path

import numpy as np

import dav2
from dav2 import console
from dav2.calibration.dataset import CalibrationSet
from dav2.errors import Dav2Error
from dav2.export.onnx import GraphOptions, Runner, artifact_stem, parity_check, require_parity
from dav2.models.dpt import DepthAnythingV2

PRECISIONS = ("fp32", "fp16", "int8")
# what the artifact asks the runtime for (None: the device's default)
INFERENCE_PRECISION = {"fp32": "f32", "fp16": None, "int8": None}


def require_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise Dav2Error("OpenVINO export needs openvino: pip install 'dav2[openvino]'") from exc
    return openvino


def openvino_runner(path: Path, inference_precision: str | None) -> Runner:
    """A function that runs the IR at `path` on the CPU with the given precision hint
    (the openvino runtime backend, before the artifact has its metadata)."""
    from dav2.runtime.backends.openvino import OpenVinoBackend

    return OpenVinoBackend(path, {"inference_precision": inference_precision}).infer


def export_openvino(
    fp32_onnx: Path,
    work_dir: Path,
    model: DepthAnythingV2,
    options: GraphOptions,
    precision: str,
    image: np.ndarray,
    calibration: CalibrationSet | None = None,
    keep_head: bool = False,
) -> tuple[Path, dict]:
    """Write `<stem>.xml/.bin` into `work_dir`; return the .xml and its format-specific metadata."""
    if precision not in PRECISIONS:
        raise Dav2Error(f"OpenVINO precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    ov = require_openvino()
    path = work_dir / f"{artifact_stem(model, options, precision)}.xml"
    with console.step(f"converting to OpenVINO IR ({precision.upper()})"):
        ov_model = ov.convert_model(str(fp32_onnx))
    if precision == "int8":
        if calibration is None:
            raise Dav2Error("OpenVINO INT8 needs calibration images: add --calib-dir DIR")
        from dav2.calibration.nncf import quantize_openvino

        head = ", DPT head kept in float" if keep_head else ""
        with console.step(f"quantizing with NNCF on {len(calibration)} calibration images{head}"):
            ov_model = quantize_openvino(ov_model, calibration, keep_head)
    ov.save_model(ov_model, str(path), compress_to_fp16=precision == "fp16")
    extra = {
        "inference_precision": INFERENCE_PRECISION[precision],
        "weights": path.with_suffix(".bin").name,
        "keep_head": keep_head if precision == "int8" else None,
        "tools": {"openvino": ov.__version__, "dav2": dav2.__version__, "python": platform.python_version()},
    }
    if precision == "fp32":
        # FP32 promises parity with PyTorch, like the ONNX graph it came from
        with console.step("checking the IR against PyTorch in OpenVINO (f32)"):
            diffs = parity_check(openvino_runner(path, "f32"), model, image, options)
        extra["parity"] = require_parity(diffs, "fp32", "OpenVINO IR")
    return path, extra
