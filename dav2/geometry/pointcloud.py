"""Metric depth + pinhole intrinsics -> a coloured point cloud, and its binary PLY file.

The depth a metric Depth Anything V2 model predicts is the distance along the optical axis (z),
as upstream's depth_to_pointcloud.py treats it: pixel (u, v) with depth z is the point
((u - cx) z / fx, (v - cy) z / fy, z) in the camera's frame (x right, y down, z forward,
OpenCV's convention). Pixels without a valid depth (zero, negative, NaN, infinite) are left
out, so a cloud never holds points at the camera centre.

A relative model's output is disparity up to an unknown scale and shift: it has no 3D shape
until a metric scale is known (`dav2.geometry.anchors`), so asking for a cloud without one is
an error rather than a distorted cloud.

PLY files are written with `plyfile` (binary little-endian, float32 x/y/z and uint8
red/green/blue, the layout Open3D, MeshLab, CloudCompare and Rerun read), through
`dav2.files.atomic_path`, so a failed write leaves no half file.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dav2.errors import Dav2Error
from dav2.files import atomic_path, write_failed
from dav2.geometry.intrinsics import Intrinsics
from dav2.optional import require
from dav2.vocabulary import ModelKind


@dataclass(frozen=True)
class PointCloud:
    """N points in metres (camera frame) with their RGB colours, and the pixels they came from."""

    points: np.ndarray  # (N, 3) float32
    colors: np.ndarray | None  # (N, 3) uint8 RGB, or None
    pixels: np.ndarray  # (N, 2) int32 (u, v): where each point was seen

    def __len__(self) -> int:
        return int(self.points.shape[0])


class NoMetricScale(Dav2Error):
    """A point cloud was asked of relative depth without a metric scale."""


def require_metric(kind: str, scale_known: bool) -> None:
    """Refuse relative depth without a metric scale: its 3D shape is unknown, not just its size."""
    if ModelKind(kind) == ModelKind.RELATIVE and not scale_known:
        raise NoMetricScale(
            "a relative model gives disparity up to an unknown scale and shift, so it has no 3D shape: "
            "give --anchors FILE (u,v,metres of a few measured points) or use a metric model"
        )


def unproject(
    depth: np.ndarray,
    intrinsics: Intrinsics,
    bgr_image: np.ndarray | None = None,
    stride: int = 1,
    max_depth: float | None = None,
) -> PointCloud:
    """Every `stride`-th pixel with a valid depth (metres, z) as a 3D point, coloured from the image."""
    if depth.ndim != 2:
        raise Dav2Error(f"depth must be one H x W map, got shape {depth.shape}")
    height, width = depth.shape
    if (intrinsics.width, intrinsics.height) not in ((width, height), (None, None)):
        raise Dav2Error(
            f"intrinsics for {intrinsics.width}x{intrinsics.height} used on a {width}x{height} depth map "
            "(scale them with Intrinsics.for_frame)"
        )
    if bgr_image is not None and bgr_image.shape[:2] != depth.shape:
        raise Dav2Error(f"image {bgr_image.shape[:2]} and depth {depth.shape} differ in size")
    v, u = np.mgrid[0:height:stride, 0:width:stride]
    z = depth[::stride, ::stride].astype(np.float32)
    valid = np.isfinite(z) & (z > 0)
    if max_depth is not None:
        valid &= z <= max_depth
    u, v, z = u[valid], v[valid], z[valid]
    x = (u - np.float32(intrinsics.cx)) * z / np.float32(intrinsics.fx)
    y = (v - np.float32(intrinsics.cy)) * z / np.float32(intrinsics.fy)
    points = np.stack([x, y, z], axis=1).astype(np.float32)
    colors = None
    if bgr_image is not None:
        colors = np.ascontiguousarray(bgr_image[::stride, ::stride][valid][:, ::-1], dtype=np.uint8)
    return PointCloud(points, colors, np.stack([u, v], axis=1).astype(np.int32))


def project(points: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """(N, 2) pixel coordinates of camera-frame points (the inverse of `unproject`)."""
    points = np.asarray(points, dtype=np.float64)
    u = points[:, 0] * intrinsics.fx / points[:, 2] + intrinsics.cx
    v = points[:, 1] * intrinsics.fy / points[:, 2] + intrinsics.cy
    return np.stack([u, v], axis=1)


def ply_bytes_layout(cloud: PointCloud) -> np.ndarray:
    """The structured vertex array plyfile writes: x, y, z float32 (+ red, green, blue uint8)."""
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if cloud.colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(cloud), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertices[name] = cloud.points[:, axis]
    if cloud.colors is not None:
        for channel, name in enumerate(("red", "green", "blue")):
            vertices[name] = cloud.colors[:, channel]
    return vertices


def write_ply(path: str | Path, cloud: PointCloud, comments: list[str] | None = None) -> Path:
    """Write a binary little-endian PLY atomically; returns the path written."""
    plyfile = require("plyfile", "writing PLY point clouds")
    element = plyfile.PlyElement.describe(ply_bytes_layout(cloud), "vertex")
    data = plyfile.PlyData([element], text=False, byte_order="<", comments=list(comments or []))
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            data.write(str(tmp))
        except OSError as exc:
            raise write_failed(path, exc) from None
    return path


def read_ply(path: str | Path) -> PointCloud:
    """A PLY written by `write_ply` (or any x/y/z[/red/green/blue] vertex PLY) back as a PointCloud."""
    plyfile = require("plyfile", "reading PLY point clouds")
    try:
        vertex = plyfile.PlyData.read(str(path))["vertex"]
    except (OSError, KeyError, ValueError, plyfile.PlyParseError) as exc:
        raise Dav2Error(f"{path} is not a readable vertex PLY ({type(exc).__name__})") from None
    names = vertex.data.dtype.names
    points = np.stack([vertex[name] for name in "xyz"], axis=1).astype(np.float32)
    colors = None
    if {"red", "green", "blue"} <= set(names):
        colors = np.stack([vertex[name] for name in ("red", "green", "blue")], axis=1).astype(np.uint8)
    return PointCloud(points, colors, np.zeros((len(points), 2), np.int32))
