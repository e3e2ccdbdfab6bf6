"""Importing the optional libraries (torch, openvino, nncf, tensorrt, pycuda, gradio, ...).

`pip install dav2` brings only the runtime (numpy, OpenCV, click, ONNX Runtime); everything
else is an extra. Every optional import goes through `require`, so a missing library ends in
one line naming the extra to install instead of an ImportError traceback, and `available`
answers "is it here?" without importing it.
"""

import importlib
import importlib.metadata
import importlib.util
from types import ModuleType

from dav2.errors import Dav2Error

# module -> how to get it
EXTRAS = {
    "torch": "pip install torch==2.13.0 'dav2[export]' (pin the CPU wheel on machines without a GPU)",
    "onnx": "pip install 'dav2[export]'",
    "onnxruntime": "pip install onnxruntime",
    "huggingface_hub": "pip install 'dav2[export]'",
    "openvino": "pip install 'dav2[openvino]'",
    "nncf": "pip install 'dav2[openvino]'",
    "tensorrt": (
        "pip install 'dav2[tensorrt]' on an x86-64 machine with an NVIDIA GPU; "
        "on a Jetson it comes with JetPack (sudo apt install python3-libnvinfer)"
    ),
    "pycuda": "pip install 'dav2[tensorrt]'",
    "gradio": "pip install 'dav2[app]'",
    "matplotlib": "pip install 'dav2[plot]'",
    "modelopt": "pip install 'dav2[modelopt]' (nvidia-modelopt without its [onnx] extra, see README)",
    "onnx_graphsurgeon": "pip install 'dav2[modelopt]'",
    "plyfile": "pip install 'dav2[3d]'",
    "rerun": "pip install 'dav2[viewer]'",
    "safetensors": "pip install 'dav2[export]'",
    "transformers": "pip install 'dav2[oracle]' (tests only)",
}


def install_hint(module: str) -> str:
    top = module.split(".")[0]
    return EXTRAS.get(top, f"pip install {top}")


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
