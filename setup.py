"""dav2: export and run Depth Anything V2 on edge hardware.

The runtime needs numpy, OpenCV, click and ONNX Runtime only; the extras `openvino` and
`tensorrt` add those backends (and their exports). Exporting needs PyTorch: on a
CPU-only machine install it first as `pip install torch==2.13.0` (see README), because an
unpinned torch pulls gigabytes of CUDA packages.
"""

from setuptools import find_packages, setup

MODELOPT = [
    "nvidia-modelopt>=0.40",
    "onnx-graphsurgeon",
    "onnxconverter-common",
    "onnxslim",
    "polygraphy",
    "lief",
    "cppimport",
    "ml_dtypes",
    "onnxruntime>=1.32",  # 1.24 truncates FP16 QuantizeLinear (AbsRel 0.16 instead of 0.065)
]

setup(
    name="dav2",
    version="0.1.0",
    description="Edge deployment toolkit for Depth Anything V2: ONNX export and a fast, honest runtime",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["dav2", "dav2.*"]),
    install_requires=[
        "numpy>=1.24",
        "opencv-python>=4.8",
        "click>=8.1",
        "onnxruntime>=1.17",
    ],
    extras_require={
        "export": ["torch>=2.4", "onnx>=1.16", "onnxscript>=0.2", "huggingface_hub>=0.23", "safetensors>=0.4"],
        # --format ply (point clouds); the 3D view (Rerun) draws them live or records an .rrd
        "3d": ["plyfile>=1.0"],
        "viewer": ["rerun-sdk>=0.41", "plyfile>=1.0"],
        # tests only: transformers' own DepthAnythingForDepthEstimation as an independent oracle
        "oracle": ["transformers>=5", "safetensors>=0.4"],
        # NNCF 3.x pins openvino < 2026.6 and numpy < 2.5
        "openvino": ["openvino>=2024.4", "nncf>=2.14"],
        # NVIDIA Model Optimizer's ONNX API makes the precision-explicit FP16/INT8 graphs on any CPU.
        # Not nvidia-modelopt[onnx]: on Linux that extra pulls onnxruntime-gpu, which overwrites
        # onnxruntime's files; these are the packages its ONNX modules import.
        "modelopt": MODELOPT,
        # strongly typed engines need TensorRT 10.3..11.x: x86-64 Linux/Windows wheels; on a Jetson
        # (JetPack 6.1+, TensorRT 10.3) TensorRT comes with JetPack (python3-libnvinfer)
        "tensorrt": [
            "tensorrt>=10.3,<12; platform_machine == 'x86_64' or platform_machine == 'AMD64'",
            "pycuda>=2022.2",
            *MODELOPT,
        ],
        "plot": ["matplotlib>=3.7"],
        "app": ["gradio>=5.0"],
        # dav2-batch: a corpus on Ray Data, one laptop to a cluster (DESIGN rule 7)
        "batch": ["ray[data]>=2.40", "pyarrow>=14"],
        # the browser test drives the app with Selenium and the system's chromium-driver
        # moto[server]: a local S3 server for dav2-batch's s3:// test (pyarrow's own client talks to it)
        "test": ["pytest>=8", "ruff>=0.5", "selenium>=4.10", "moto[server]>=5.2"],
    },
    entry_points={
        "console_scripts": [
            "dav2-export=dav2.cli:export_main",
            "dav2-run=dav2.cli:run_main",
            "dav2-bench=dav2.cli:bench_main",
            "dav2-eval=dav2.cli:eval_main",
            "dav2-app=dav2.cli:app_main",
            "dav2-batch=dav2.cli.batch:batch_main",
        ],
    },
)
