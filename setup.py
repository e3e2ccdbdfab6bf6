"""dav2: export and run Depth Anything V2 on edge hardware.

Install by role (docs/install.md has the details and the reasons):

- runtime only (`pip install dav2`): numpy, OpenCV, click, ONNX Runtime. Runs artifacts.
- export (`dav2[export]`): PyTorch and ONNX, for `dav2-export`. PyTorch from PyPI is the CUDA
  build on Linux x86-64 (about 17 NVIDIA packages, gigabytes). On a CPU-only machine install
  PyTorch's CPU build first, from PyTorch's own index:
      pip install torch --index-url https://download.pytorch.org/whl/cpu
  then `pip install 'dav2[export]'` keeps it. On an NVIDIA GPU machine PyPI's torch is the
  CUDA build (or pick one at https://pytorch.org/get-started/locally/).
- workstation (`dav2[workstation]`): export plus NVIDIA Model Optimizer, for the
  precision-explicit FP16/INT8 graphs TensorRT engines are built from. Python >= 3.11 only:
  ONNX Runtime >= 1.24 has no wheels for 3.10, and 1.23 truncates FP16 QuantizeLinear; on 3.10
  the Model Optimizer part is left out (environment markers) and those commands say so.
- TensorRT target: `dav2[trt-cu12]` (driver for CUDA 12) or `dav2[trt-cu13]` (CUDA 13, driver
  R580 or newer): TensorRT's pip packages (x86-64 Linux/Windows) and NVIDIA's CUDA binding.
  `nvidia-smi` prints the driver's "CUDA Version" in its header. `dav2[jetson]`: the CUDA
  binding only; TensorRT comes with JetPack (python3-libnvinfer), so make the virtual
  environment with `--system-site-packages`.
- OpenVINO target: `dav2[openvino]`. Tests: `dav2[test]` (every extra the tests exercise).
"""

from setuptools import find_packages, setup

RUNTIME = ["numpy>=1.24", "opencv-python>=4.8", "click>=8.1", "onnxruntime>=1.17"]
EXPORT = ["torch>=2.4", "onnx>=1.16", "onnxscript>=0.2", "huggingface_hub>=0.23", "safetensors>=0.4"]

# NVIDIA Model Optimizer's ONNX API makes the precision-explicit FP16/INT8 graphs on any CPU.
# Not nvidia-modelopt[onnx]: on Linux that extra pulls onnxruntime-gpu, which overwrites
# onnxruntime's files; these are the packages its ONNX modules import.
# Python >= 3.11: ONNX Runtime >= 1.24 ships no 3.10 wheels, and 1.23 (the last for 3.10)
# truncates FP16 QuantizeLinear; nvidia-modelopt 0.47 needs torch >= 2.8.
MODELOPT_PYTHON = "python_version >= '3.11'"
MODELOPT = [
    f"{requirement}; {MODELOPT_PYTHON}"
    for requirement in (
        "nvidia-modelopt>=0.40",
        "torch>=2.8",
        "onnx-graphsurgeon",
        "onnxconverter-common",
        "onnxslim",
        "polygraphy",
        "lief",
        "cppimport",
        "ml_dtypes",
        "onnxruntime>=1.32",
    )
]

# TensorRT 10.3..11.x (strongly typed engines). Its pip packages are x86-64 only (Linux, Windows)
# and download their libraries at install time; on a Jetson TensorRT comes with JetPack.
# The CUDA binding (buffers, streams) is NVIDIA's cuda-bindings, which has wheels for every
# Python and both architectures; its major version must match the driver's CUDA major.
X86_64 = "platform_machine == 'x86_64' or platform_machine == 'AMD64'"
TRT_CU12 = [f"tensorrt-cu12>=10.3,<12; {X86_64}", "cuda-bindings>=12.8,<13"]
TRT_CU13 = [f"tensorrt-cu13>=10.3,<12; {X86_64}", "cuda-bindings>=13,<14"]
JETSON = ["cuda-bindings>=12.8,<13"]  # JetPack 6.1/6.2: CUDA 12.6, TensorRT 10.3 from the system

OPENVINO = ["openvino>=2024.4", "nncf>=2.14"]  # NNCF 3.x pins openvino < 2026.6 and numpy < 2.5
# Edge targets (docs/litert.md, docs/executorch.md, docs/coreml.md). `litert` is the LiteRT
# interpreter alone, what a Raspberry Pi or a phone-side Python installs to run .tflite files;
# `litert-export` converts (litert-torch supports torch < 2.15). ExecuTorch's export and its
# Python runtime are one package. coremltools converts on Linux; Core ML runs on Apple devices.
LITERT = ["ai-edge-litert>=2.3"]
LITERT_EXPORT = [*EXPORT, "litert-torch>=0.10", "ai-edge-litert>=2.3"]
EXECUTORCH = [*EXPORT, "executorch>=1.5"]
COREML = [*EXPORT, "coremltools>=9.0"]
PLY = ["plyfile>=1.0"]
# rerun-sdk 0.41 has wheels for Python >= 3.11 only: on 3.10 `viewer` adds plyfile alone and
# --viewer says what is missing
VIEWER = ["rerun-sdk>=0.41; python_version >= '3.11'", *PLY]
# dav2-run --format rosbag: rosbags writes rosbag2 folders with MCAP storage (pure Python, no ROS install)
ROSBAG = ["rosbags>=0.10"]
# the tests read the bags back with a second, independent implementation: MCAP's own reader and its
# ROS 2 decoder (mcap-ros2-support), and metadata.yaml with PyYAML
ROSBAG_CHECK = ["mcap>=1.2", "mcap-ros2-support>=0.5", "pyyaml>=6"]
# dav2-run --serve: Foxglove's WebSocket server (one native wheel, abi3, no dependencies; aarch64 too)
LIVE = ["foxglove-sdk>=0.30"]
# the tests watch it with a second implementation: a websockets client, protobuf decoding the advertised schemas
LIVE_CHECK = ["websockets>=12", "protobuf>=4.21"]
APP = ["gradio>=5.0"]
BATCH = ["ray[data]>=2.40", "pyarrow>=14"]  # dav2-batch: a corpus on Ray Data, one laptop to a cluster
PLOT = ["matplotlib>=3.7"]
ORACLE = ["transformers>=5", "safetensors>=0.4"]  # transformers' own model as an independent check
# the browser test drives the app with Selenium and the system's chromium-driver;
# moto[server] is a local S3 server for dav2-batch's s3:// test (pyarrow's own client talks to it)
TEST_TOOLS = ["pytest>=8", "pytest-xdist>=3.5", "filelock>=3.12", "ruff>=0.5", "selenium>=4.10", "moto[server]>=5.2"]

EXTRAS = {
    "export": EXPORT,
    "modelopt": MODELOPT,
    "workstation": [*EXPORT, *MODELOPT],
    "trt-cu12": TRT_CU12,
    "trt-cu13": TRT_CU13,
    # kept for old commands: NVIDIA's own `tensorrt` package is the CUDA 13 build since 11.x
    "tensorrt": TRT_CU13,
    "jetson": JETSON,
    "openvino": OPENVINO,
    "litert": LITERT,
    "litert-export": LITERT_EXPORT,
    "executorch": EXECUTORCH,
    "coreml": COREML,
    "3d": PLY,  # --format ply (point clouds)
    "viewer": VIEWER,  # the Rerun 3D view, live or recorded to .rrd
    "app": APP,
    "rosbag": ROSBAG,
    "live": LIVE,  # dav2-run --serve: a live view in Foxglove from another machine
    # dav2-ros2: rclpy and the message packages come from the ROS 2 install (Humble or newer), not PyPI
    "ros2": [],
    "batch": BATCH,
    "plot": PLOT,
    "oracle": ORACLE,
    # README command 2: everything the tests exercise (TensorRT and a GPU aside: those tests skip)
    "test": [
        *TEST_TOOLS,
        *EXPORT,
        *MODELOPT,
        *OPENVINO,
        *VIEWER,
        *APP,
        *BATCH,
        *PLOT,
        *ORACLE,
        *ROSBAG,
        *ROSBAG_CHECK,
        *LIVE,
        *LIVE_CHECK,
    ],
}

if __name__ == "__main__":  # setuptools runs this file as __main__; scripts/check_resolution.py reads EXTRAS
    setup(
        name="dav2",
        version="0.1.0",
        description="Edge deployment toolkit for Depth Anything V2: ONNX export and a fast, honest runtime",
        long_description=open("README.md", encoding="utf-8").read(),
        long_description_content_type="text/markdown",
        license="Apache-2.0",
        python_requires=">=3.10",
        packages=find_packages(include=["dav2", "dav2.*"]),
        install_requires=RUNTIME,
        extras_require=EXTRAS,
        entry_points={
            "console_scripts": [
                "dav2-export=dav2.cli:export_main",
                "dav2-run=dav2.cli:run_main",
                "dav2-bench=dav2.cli:bench_main",
                "dav2-eval=dav2.cli:eval_main",
                "dav2-app=dav2.cli:app_main",
                "dav2-batch=dav2.cli.batch:batch_main",
                "dav2-calibrate=dav2.cli.calibrate:calibrate_main",
                "dav2-ros2=dav2.cli.ros2:ros2_entry",
            ],
        },
    )
