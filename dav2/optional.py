"""Importing the optional libraries (torch, openvino, nncf, tensorrt, cuda-bindings, gradio, ...).

`pip install dav2` brings only the runtime (numpy, OpenCV, click, ONNX Runtime); everything
else is an extra (setup.py lists them by role). Every optional import goes through `require`,
so a missing library ends in one line naming the extra to install instead of an ImportError
traceback, and `available` answers "is it here?" without importing it.
"""

import importlib
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
from types import ModuleType

from dav2.errors import Dav2Error

TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TENSORRT_HINT = (
    "pip install 'dav2[trt-cu12]' (NVIDIA driver for CUDA 12) or 'dav2[trt-cu13]' (CUDA 13, driver R580+) "
    "on an x86-64 machine; on a Jetson TensorRT comes with JetPack (sudo apt install python3-libnvinfer, "
    "a venv made with --system-site-packages) plus pip install 'dav2[jetson]'"
)

# module -> how to get it
EXTRAS = {
    "torch": (
        f"pip install 'dav2[export]'; on a machine without an NVIDIA GPU first pip install torch "
        f"--index-url {TORCH_CPU_INDEX} (PyPI's torch is the CUDA build, gigabytes)"
    ),
    "onnx": "pip install 'dav2[export]'",
    "onnxruntime": "pip install onnxruntime",
    "huggingface_hub": "pip install 'dav2[export]'",
    "openvino": "pip install 'dav2[openvino]'",
    "nncf": "pip install 'dav2[openvino]'",
    "tensorrt": TENSORRT_HINT,
    "cuda": TENSORRT_HINT,  # cuda-bindings (cuda.bindings): TensorRT's buffers and streams
    "pycuda": TENSORRT_HINT,
    "gradio": "pip install 'dav2[app]'",
    "matplotlib": "pip install 'dav2[plot]'",
    "modelopt": "pip install 'dav2[workstation]' (NVIDIA Model Optimizer; Python >= 3.11, see docs/install.md)",
    "onnx_graphsurgeon": "pip install 'dav2[workstation]' (Python >= 3.11)",
    "plyfile": "pip install 'dav2[3d]'",
    "rosbags": "pip install 'dav2[rosbag]'",
    "rclpy": (
        "rclpy comes with ROS 2 (Humble or newer), not from pip: source /opt/ros/$ROS_DISTRO/setup.bash "
        "and run dav2 from a Python that sees both (a venv made with --system-site-packages)"
    ),
    "rerun": "pip install 'dav2[viewer]' (Python >= 3.11)",
    "safetensors": "pip install 'dav2[export]'",
    "transformers": "pip install 'dav2[oracle]' (tests only)",
    "ai_edge_litert": "pip install 'dav2[litert]'",
    "ai-edge-litert": "pip install 'dav2[litert]'",  # the distribution's name, as dav2-bench asks
    "litert_torch": "pip install 'dav2[litert-export]' (x86-64 Linux or Apple-silicon macOS; PyTorch < 2.15)",
    "ai_edge_quantizer": "pip install 'dav2[litert-export]'",
    "executorch": "pip install 'dav2[executorch]'",
    "coremltools": "pip install 'dav2[coreml]' (converts on Linux; Core ML runs on Apple devices only)",
}


def install_hint(module: str) -> str:
    top = module.split(".")[0]
    hint = EXTRAS.get(top, f"pip install {top}")
    if hint is TENSORRT_HINT and (major := driver_cuda_major()) in (12, 13):
        hint = f"pip install 'dav2[trt-cu{major}]' (nvidia-smi says this driver runs CUDA {major})"
    return hint


def driver_cuda_major() -> int | None:
    """The CUDA major version the NVIDIA driver supports ("CUDA Version: 12.8" in nvidia-smi), or None."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"CUDA Version:\s*(\d+)\.", header)
    return int(found.group(1)) if found else None


def available(module: str) -> bool:
    """True when `module` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def version(distribution: str) -> str | None:
    """The installed version of a distribution (pip name), or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def require(module: str, purpose: str) -> ModuleType:
    """Import `module`, or raise Dav2Error: '<purpose> needs <module>: <how to install>'."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise Dav2Error(f"{purpose} needs {top}: {install_hint(module)}") from exc
