"""The machine record saved with every result: what ran the numbers, and how it was asked."""

import datetime
import os
import platform
import shutil
import subprocess

import dav2
from dav2.benchmarks.discovery import Machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def cuda_runtime() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.version.cuda


def machine_record(machine: Machine, threads: int, label: str | None = None, command: str | None = None) -> dict:
    gpus = machine.gpus
    cpu = cpu_model()
    cores = os.cpu_count()
    return {
        "label": label or (f"{gpus[0]}" if gpus else f"{cpu}, {cores} cores"),
        "cpu": cpu,
        "cores": cores,
        "memory_gb": memory_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "gpus": gpus,
        "nvidia_driver": nvidia_driver() if gpus else None,
        "cuda": cuda_runtime() if gpus else None,
        "openvino_devices": machine.openvino_devices,
        "libraries": machine.libraries,
        "dav2": dav2.__version__,
        "threads": threads,
        "command": command or "dav2.benchmarks.runner.run_bench (Python API)",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
