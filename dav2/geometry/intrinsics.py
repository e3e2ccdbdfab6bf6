"""Pinhole camera intrinsics: parsed from `fx,fy,cx,cy` or a calibration file, scaled to the frame.

Depth becomes 3D only through the camera: a point at pixel (u, v) with depth z lies at
x = (u - cx) z / fx, y = (v - cy) z / fy. Users have their intrinsics in one of three forms:
four numbers, an OpenCV calibration file (`camera_matrix: !!opencv-matrix`, as
`cv2.FileStorage` and OpenCV's calibration sample write it) or a ROS CameraInfo YAML
(`image_width`, `image_height`, `camera_matrix: {rows, cols, data}`, as ROS's
camera_calibration writes it). Both files are read with OpenCV's FileStorage, already a
runtime dependency, so reading them adds no YAML library.

Intrinsics belong to a resolution. A calibration made at 1280x720 used on 640x360 frames is
scaled with the pixel-centre convention (pixel i covers [i - 0.5, i + 0.5]); a different aspect
ratio means a crop, which scaling cannot undo, and is refused. Without intrinsics the default
is the one upstream's metric_depth/depth_to_pointcloud.py uses (focal 470.4 px, principal
point at the image centre W/2, H/2), and the caller says so.

Every value must be finite, focal lengths positive and an image size whole pixels from 1 to
MAX_SIDE; a calibration file is read only when it is a regular file of at most
MAX_CALIBRATION_BYTES.
"""

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dav2.errors import Dav2Error, quote
from dav2.files import check_user_file

DEFAULT_FOCAL = 470.4  # upstream's depth_to_pointcloud.py --focal-length-x/-y
ASPECT_TOLERANCE = 0.01  # relative difference of the x and y scale factors still called a resize
MATRIX_KEYS = ("camera_matrix", "cameraMatrix", "K", "k")  # OpenCV sample, OpenCV docs, ROS 1/2 CameraInfo
SIZE_KEYS = (("image_width", "image_height"), ("width", "height"))
MAX_SIDE = 1_000_000  # pixels: no camera is wider
MAX_CALIBRATION_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Intrinsics:
    """fx, fy, cx, cy in pixels, for images of width x height (None: valid at any size, not scaled)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int | None = None
    height: int | None = None
    assumed: bool = False  # True: upstream's default, not the user's camera

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def for_frame(self, width: int, height: int) -> "Intrinsics":
        """These intrinsics for a width x height frame: scaled when they were made at another resolution."""
        if self.width is None or self.height is None or (self.width, self.height) == (width, height):
            return replace(self, width=width, height=height)
        sx, sy = width / self.width, height / self.height
        if abs(sx - sy) > ASPECT_TOLERANCE * max(sx, sy):
            raise Dav2Error(
                f"the intrinsics are for {self.width}x{self.height} but the frame is {width}x{height}: a different "
                "aspect ratio means a crop, which scaling cannot undo; calibrate at this resolution"
            )
        return Intrinsics(
            self.fx * sx,
            self.fy * sy,
            (self.cx + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5,
            width,
            height,
            self.assumed,
        )

    def describe(self) -> str:
        size = f" at {self.width}x{self.height}" if self.width else ""
        return f"fx {self.fx:.1f}, fy {self.fy:.1f}, cx {self.cx:.1f}, cy {self.cy:.1f}{size}"


def default_intrinsics(width: int, height: int) -> Intrinsics:
    """Upstream's default: focal 470.4 px, principal point W/2, H/2 (its meshgrid's arithmetic)."""
    return Intrinsics(DEFAULT_FOCAL, DEFAULT_FOCAL, width / 2, height / 2, width, height, assumed=True)


def default_note(intrinsics: Intrinsics) -> str:
    return (
        f"no --intrinsics: assuming upstream's default camera ({intrinsics.describe()}); "
        "3D points are only as right as the focal length"
    )


def parse_intrinsics(spec: str) -> Intrinsics:
    """`fx,fy,cx,cy` (optionally `,width,height`) or the path of an OpenCV / ROS calibration file."""
    if Path(spec).is_file():
        return read_calibration(Path(spec))
    parts = [p.strip() for p in spec.split(",")]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise Dav2Error(f"--intrinsics {spec!r} is neither fx,fy,cx,cy nor an existing calibration file") from None
    if len(numbers) not in (4, 6):
        raise Dav2Error(f"--intrinsics takes fx,fy,cx,cy[,width,height]: 4 or 6 numbers, got {len(numbers)}")
    if not all(np.isfinite(numbers)):
        raise Dav2Error(f"--intrinsics {quote(spec)}: every value must be a finite number")
    size = (image_side(numbers[4], spec), image_side(numbers[5], spec)) if len(numbers) == 6 else (None, None)
    return checked(Intrinsics(*numbers[:4], *size), quote(spec))


def image_side(value: float, where: str) -> int:
    """A width or height: a whole number of pixels from 1 to MAX_SIDE (0.5 px would divide by 0)."""
    if not (np.isfinite(value) and value == int(value) and 1 <= value <= MAX_SIDE):
        raise Dav2Error(f"{quote(where)}: the image size must be whole pixels from 1 to {MAX_SIDE:,}, not {value:g}")
    return int(value)


def checked(intrinsics: Intrinsics, where: str) -> Intrinsics:
    values = (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy)
    if not all(np.isfinite(values)) or intrinsics.fx <= 0 or intrinsics.fy <= 0:
        raise Dav2Error(f"{where}: focal lengths must be positive and all values finite (got {intrinsics.describe()})")
    if (intrinsics.width is None) != (intrinsics.height is None):
        raise Dav2Error(f"{where}: the image size must be two positive numbers")
    if intrinsics.width is not None:
        image_side(intrinsics.width, where)
        image_side(intrinsics.height, where)
    return intrinsics


def read_calibration(path: Path) -> Intrinsics:
    """K (and the image size, when the file has it) from an OpenCV or ROS CameraInfo calibration file."""
    import cv2

    check_user_file(path, MAX_CALIBRATION_BYTES, "calibration file")  # OpenCV reads the file whole
    try:
        storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as exc:  # OpenCV's parser errors surface as either
        raise Dav2Error(f"{path} is not a readable YAML/JSON/XML calibration file ({first_line(exc)})") from None
    try:
        node = next((storage.getNode(k) for k in MATRIX_KEYS if not storage.getNode(k).empty()), None)
        if node is None:
            raise Dav2Error(f"{path} has no camera matrix (looked for {', '.join(MATRIX_KEYS)})")
        matrix = read_matrix(node, path)
        width, height = read_size(storage)
    finally:
        storage.release()
    fx, fy, cx, cy = matrix[0, 0], matrix[1, 1], matrix[0, 2], matrix[1, 2]
    if width is not None:
        width, height = image_side(width, str(path)), image_side(height, str(path))
    return checked(Intrinsics(float(fx), float(fy), float(cx), float(cy), width, height), quote(path))


def read_matrix(node, path: Path) -> np.ndarray:
    """A 3x3 matrix from an `!!opencv-matrix` node, a `{rows, cols, data}` map or a flat list of 9."""
    if node.isMap() and not node.getNode("dt").empty():
        values = node.mat()
    elif node.isMap():
        data = node.getNode("data")
        values = np.array([data.at(i).real() for i in range(data.size())]) if data.isSeq() else None
    elif node.isSeq():
        values = np.array([node.at(i).real() for i in range(node.size())])
    else:
        values = None
    if values is None or np.asarray(values).size != 9:
        raise Dav2Error(f"{path}: the camera matrix must have 9 values (3x3)")
    return np.asarray(values, dtype=np.float64).reshape(3, 3)


def read_size(storage) -> tuple[float | None, float | None]:
    for width_key, height_key in SIZE_KEYS:
        width, height = storage.getNode(width_key), storage.getNode(height_key)
        if not width.empty() and not height.empty() and width.real() > 0 and height.real() > 0:
            return width.real(), height.real()  # checked() refuses fractions, NaN and giants
    return None, None


def first_line(exc: Exception) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def intrinsics_for_frame(intrinsics: Intrinsics | None, width: int, height: int) -> Intrinsics:
    """The user's intrinsics scaled to the frame, or upstream's default (`assumed`: the caller says so)."""
    if intrinsics is None:
        return default_intrinsics(width, height)
    return intrinsics.for_frame(width, height)
