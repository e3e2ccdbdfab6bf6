"""dav2: export and run Depth Anything V2 on edge hardware (ONNX, TensorRT, OpenVINO)."""

__version__ = "0.1.0"
