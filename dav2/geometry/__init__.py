"""Depth in 3D: camera intrinsics, point clouds, and metric scale from a few measured points.

numpy and OpenCV only (OpenCV reads calibration files), never torch, so the runtime uses it on
a Jetson or a CPU box as it is. `plyfile` (writing PLY) is optional, imported when used.

- `intrinsics`: `Intrinsics` from `fx,fy,cx,cy` or an OpenCV / ROS calibration file, scaled to
  the frame; upstream's default camera when none is given.
- `pointcloud`: metric depth + intrinsics -> `PointCloud` -> binary PLY.
- `anchors`: `u,v,metres` measurements -> `AnchorFit` (scale and shift of a relative model's
  disparity, or a scale correction of a metric model), robust and with its residual.
"""

from dav2.geometry.anchors import Anchor, AnchorFit, fit_anchors, read_anchors
from dav2.geometry.intrinsics import Intrinsics, default_intrinsics, intrinsics_for_frame, parse_intrinsics
from dav2.geometry.pointcloud import PointCloud, project, require_metric, unproject, write_ply

__all__ = [
    "Anchor",
    "AnchorFit",
    "Intrinsics",
    "PointCloud",
    "default_intrinsics",
    "fit_anchors",
    "intrinsics_for_frame",
    "parse_intrinsics",
    "project",
    "read_anchors",
    "require_metric",
    "unproject",
    "write_ply",
]
