"""TensorRT INT8 entropy calibrator fed by the calibration set, with a cache file.

TensorRT asks for batches through `get_batch(names)` and expects device pointers back; the
batches come from CalibrationSet.batches (the shared preprocessing at the engine's calibration
shape). The scales TensorRT computes are written to a cache file whose name carries the
calibration set's hash, so the next build with the same images skips calibration and a build
with other images does not pick up stale scales.

TensorRT 10.1 deprecates implicit (calibrator) quantization in favour of explicit Q/DQ; it
still works in every 10.x release and is the only INT8 path on TensorRT 8.6 (JetPack 5).
"""

from pathlib import Path

from dav2.calibration.dataset import CalibrationSet
from dav2.files import atomic_write_bytes


def cache_path(folder: Path, stem: str, calibration: CalibrationSet) -> Path:
    """`<engine stem>.<first 12 hex of the set's hash>.calib`: one cache per image set."""
    return folder / f"{stem}.{calibration.identity()['sha256'][:12]}.calib"


def make_calibrator(trt, calibration: CalibrationSet, cache: Path, batch_size: int, input_hw: tuple[int, int]):
    """An IInt8EntropyCalibrator2 over `calibration` (needs a CUDA context: pycuda)."""
    import numpy as np
    import pycuda.driver as cuda

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = calibration.batches(batch_size, input_hw)
            height, width = input_hw
            self.device_input = cuda.mem_alloc(batch_size * 3 * height * width * np.dtype(np.float32).itemsize)

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names):
            batch = next(self.batches, None)
            if batch is None:
                return None
            cuda.memcpy_htod(self.device_input, batch)
            return [int(self.device_input)]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            atomic_write_bytes(cache, bytes(data))

    return EntropyCalibrator()
