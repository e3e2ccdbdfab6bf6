"""Reading measured depth in the encodings public datasets use, as metres plus a valid mask.

png-mm     uint16 PNG, metres = v / 1000, 0 invalid (NYU Depth V2 exports, UniDepth, ARKit)
png-kitti  uint16 PNG, metres = v / 256, 0 invalid (KITTI LiDAR)
png-tum    uint16 PNG, metres = v / 5000, 0 invalid (TUM RGB-D)
sun        uint16 PNG with its bits rotated: d = ((v >> 3) | (v << 13)) & 0xFFFF, metres = d / 1000
nyu-raw    PGM of raw Kinect disparity, little-endian uint16: metres = 351.3 / (1092.5 - d),
           2047 invalid

Files are read and measured as every image in dav2 (dav2.media: a regular file within
ImageLimits, its size taken from the header before decoding).
"""

from pathlib import Path

import cv2
import numpy as np

from dav2.errors import Dav2Error, quote
from dav2.media import DEFAULT_LIMITS, decode_image, read_image_file

FORMATS = ("png-mm", "png-kitti", "png-tum", "sun", "nyu-raw")
SCALE = {"png-mm": 1000.0, "png-kitti": 256.0, "png-tum": 5000.0}


def read_uint16(path: Path) -> np.ndarray:
    raw = decode_image(read_image_file(path), quote(path), DEFAULT_LIMITS, cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
        raise Dav2Error(f"{quote(path)} is not a single-channel 16-bit depth image")
    return raw


def read_little_endian_pgm(path: Path) -> np.ndarray:
    """A binary 16-bit PGM whose samples are little-endian (raw Kinect dumps), which
    OpenCV would read as big-endian as the PGM format says."""
    data = read_image_file(path)
    fields, position = [], 0
    while len(fields) < 4 and position < len(data):
        while data[position : position + 1].isspace():
            position += 1
        if data[position : position + 1] == b"#":
            position = data.find(b"\n", position) + 1 or len(data)
            continue
        end = position
        while end < len(data) and not data[end : end + 1].isspace():
            end += 1
        fields.append(data[position:end])
        position = end
    if len(fields) < 4 or fields[0] != b"P5" or not all(f.isdigit() for f in fields[1:]) or int(fields[3]) != 65535:
        raise Dav2Error(f"{quote(path)} is not a 16-bit binary PGM")
    width, height = int(fields[1]), int(fields[2])
    DEFAULT_LIMITS.check(width, height, quote(path))
    if len(data) < position + 1 + 2 * width * height:
        raise Dav2Error(f"{quote(path)} is shorter than its {width}x{height} header says")
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
