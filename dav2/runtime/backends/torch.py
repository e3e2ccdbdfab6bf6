"""PyTorch backend: the FP32 reference model itself, to compare artifacts against.

Opened on a checkpoint (.pth); the encoder is read from the weights, relative/metric comes
from the caller (a checkpoint does not record it). torch is imported here and nowhere else in
the runtime.
"""

import time
from pathlib import Path

import numpy as np

from dav2 import optional
from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata
from dav2.runtime.backends.base import Backend
from dav2.vocabulary import DEFAULT_MAX_DEPTH, ArtifactFormat, ModelKind, Precision


class TorchBackend(Backend):
    name = "torch"

    def __init__(
        self, path: Path, kind: str = "relative", max_depth: float | None = None, device: str = "cpu", threads: int = 0
    ):
        torch = optional.require("torch", "the torch backend")
        from dav2.models.checkpoint import build_model, detect_encoder, read_state_dict

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise Dav2Error("--device cuda was asked for, but PyTorch sees no CUDA GPU")
        if threads:
            torch.set_num_threads(threads)
        state_dict = read_state_dict(path)
        encoder = detect_encoder(state_dict)
        if encoder is None:
            raise Dav2Error(f"{path} is not a Depth Anything V2 checkpoint")
        kind = ModelKind(kind)
        max_depth = float(max_depth or DEFAULT_MAX_DEPTH)
        metric = kind == ModelKind.METRIC
        self.model = build_model(state_dict, encoder, metric, max_depth, source=str(path)).to(device)
        self.device = device
        self._torch = torch
        metadata = ArtifactMetadata(
            artifact=path.name,
            format=ArtifactFormat.PYTORCH,
            encoder=encoder,
            kind=kind,
            precision=Precision.FP32,
            dynamic=True,
            input_shape=None,
            max_depth=max_depth if metric else None,
            from_sidecar=False,
        )
        super().__init__(path, metadata)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        start = time.perf_counter()
        with torch.inference_mode():
            tensor = torch.from_numpy(batch).to(self.device)
            copied = time.perf_counter()
            depth = self.model(tensor)
            if self.device != "cpu":
                torch.cuda.synchronize()
            computed = time.perf_counter()
            result = depth.float().cpu().numpy()
        end = time.perf_counter()
        self.last_timing = {
            "h2d_ms": (copied - start) * 1000.0,
            "infer_ms": (computed - copied) * 1000.0,
            "d2h_ms": (end - computed) * 1000.0,
        }
        return result

    def close(self) -> None:
        self.model = None
