"""INT8 calibration: one image set (calibration.dataset) feeds TensorRT, NNCF and ONNX Runtime."""
