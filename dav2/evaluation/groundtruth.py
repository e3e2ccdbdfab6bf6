"""Reading measured depth in the encodings public datasets use, as metres plus a valid mask.

png-mm     uint16 PNG, metres = v / 1000, 0 invalid (NYU Depth V2 exports, UniDepth, ARKit)
png-kitti  uint16 PNG, metres = v / 256, 0 invalid (KITTI LiDAR)
png-tum    uint16 PNG, metres = v / 5000, 0 invalid (TUM RGB-D)
sun        uint16 PNG with its bits rotated: d = ((v >> 3) | (v << 13)) & 0xFFFF, metres = d / 1000
nyu-raw    PGM of raw Kinect disparity, little-endian uint16: metres = 351.3 / (1092.5 - d),
           2047 invalid
"""

from pathlib import Path

import cv2
import numpy as np

from dav2.errors import Dav2Error

FORMATS = ("png-mm", "png-kitti", "png-tum", "sun", "nyu-raw")
SCALE = {"png-mm": 1000.0, "png-kitti": 256.0, "png-tum": 5000.0}


def read_uint16(path: Path) -> np.ndarray:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
        raise Dav2Error(f"{path} is not a single-channel 16-bit depth image")
    return raw


def read_little_endian_pgm(path: Path) -> np.ndarray:
    """A binary 16-bit PGM whose samples are little-endian (raw Kinect dumps), which
    OpenCV would read as big-endian as the PGM format says."""
    data = path.read_bytes()
    fields, position = [], 0
    while len(fields) < 4:
        while data[position : position + 1].isspace():
            position += 1
        if data[position : position + 1] == b"#":
            position = data.index(b"\n", position) + 1
            continue
        end = position
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[position:end])
        position = end
    if fields[0] != b"P5" or int(fields[3]) != 65535:
        raise Dav2Error(f"{path} is not a 16-bit binary PGM")
    width, height = int(fields[1]), int(fields[2])
    pixels = np.frombuffer(data, dtype="<u2", count=width * height, offset=position + 1)
    return pixels.reshape(height, width)


def read_depth(path: str | Path, fmt: str = "png-mm") -> tuple[np.ndarray, np.ndarray]:
    """(metres float32, valid bool mask) of a ground-truth depth file."""
    path = Path(path)
    if fmt not in FORMATS:
        raise Dav2Error(f"unknown depth format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "nyu-raw":
        raw = read_little_endian_pgm(path).astype(np.float64)
        valid = (raw < 2047) & (raw < 1092.5)
        metres = np.where(valid, 351.3 / np.maximum(1092.5 - raw, 1e-6), 0.0)
        return metres.astype(np.float32), valid & (metres > 0)
    raw = read_uint16(path)
    if fmt == "sun":
        raw = ((raw >> 3) | (raw << 13)) & 0xFFFF
        scale = 1000.0
    else:
        scale = SCALE[fmt]
    metres = (raw.astype(np.float64) / scale).astype(np.float32)
    return metres, raw > 0
