"""Point clouds: intrinsics from numbers and calibration files, scaled to the frame; metric depth -> PLY that
reprojects onto the image and keeps the depth map's depths; real RGB-D frames with their true intrinsics."""

import json

import cv2
import numpy as np
import pytest

from conftest import DATA, SHARED
from dav2.errors import Dav2Error
from dav2.geometry import Intrinsics, default_intrinsics, intrinsics_for_frame, parse_intrinsics, project, unproject
from dav2.geometry.intrinsics import DEFAULT_FOCAL, default_note
from dav2.geometry.pointcloud import NoMetricScale, read_ply, require_metric, write_ply

pytest.importorskip("plyfile")

GEOMETRY = DATA / "geometry"
DEPTH_GT = SHARED / "depth-gt"


def scene(height: int = 48, width: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A metric depth map (a tilted plane with a bump, 1-5 m, a few invalid pixels) and a colour image."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width]
    depth = 2.0 + 1.5 * u / width + 0.8 * v / height + np.exp(-((u - width / 2) ** 2 + (v - height / 2) ** 2) / 60)
    depth = depth.astype(np.float32)
    depth[0, :5] = 0.0
    depth[3, 3] = np.nan
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return depth, image


def test_ply_reprojects_onto_the_image_and_keeps_depths(tmp_path):
    depth, image = scene()
    intrinsics = Intrinsics(58.3, 61.1, 31.7, 23.2, 64, 48)
    cloud = unproject(depth, intrinsics, image)
    assert len(cloud) == depth.size - 6  # zero and NaN pixels are left out
    path = write_ply(tmp_path / "scene.ply", cloud)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian 1.0\n")
    back = read_ply(path)
    np.testing.assert_array_equal(back.points, cloud.points)
    uv = project(back.points, intrinsics)
    assert np.abs(uv - cloud.pixels).max() < 0.5  # in fact float rounding: ~1e-5 px
    assert np.abs(uv - cloud.pixels).max() < 1e-3
    np.testing.assert_array_equal(back.points[:, 2], depth[cloud.pixels[:, 1], cloud.pixels[:, 0]])
    # colours are the image's pixels, as RGB
    np.testing.assert_array_equal(back.colors, image[cloud.pixels[:, 1], cloud.pixels[:, 0]][:, ::-1])


def test_stride_and_max_depth():
    depth, image = scene()
    cloud = unproject(depth, default_intrinsics(64, 48), image, stride=4, max_depth=4.0)
    assert (cloud.pixels % 4 == 0).all() and cloud.points[:, 2].max() <= 4.0
    assert len(cloud) < depth[::4, ::4].size


def test_write_without_colours(tmp_path):
    depth, _ = scene()
    cloud = unproject(depth, default_intrinsics(64, 48))
    back = read_ply(write_ply(tmp_path / "c.ply", cloud))
    assert back.colors is None and len(back) == len(cloud)


def test_intrinsics_from_numbers():
    assert parse_intrinsics("600,600,320,240") == Intrinsics(600, 600, 320, 240)
    assert parse_intrinsics("600, 601, 320, 240, 640, 480") == Intrinsics(600, 601, 320, 240, 640, 480)
    for bad, message in [
        ("600,600,320", "4 or 6 numbers"),
        ("a,b,c,d", "neither fx,fy,cx,cy nor an existing calibration file"),
        ("0,600,320,240", "focal lengths must be positive"),
        ("camera.yaml", "neither"),
    ]:
        with pytest.raises(Dav2Error, match=message):
            parse_intrinsics(bad)


def test_intrinsics_from_an_opencv_calibration_file():
    intrinsics = parse_intrinsics(str(GEOMETRY / "camera_opencv.yaml"))
    assert intrinsics == Intrinsics(912.34, 910.10, 641.50, 358.75, 1280, 720)


def test_intrinsics_from_a_ros_camera_info_file():
    intrinsics = parse_intrinsics(str(GEOMETRY / "camera_ros.yaml"))
    assert intrinsics == Intrinsics(600.5, 601.0, 320.25, 240.5, 640, 480)


def test_ros2_flat_k_and_broken_files(tmp_path):
    flat = tmp_path / "ros2.yaml"
    flat.write_text("width: 640\nheight: 480\nk: [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]\n")
    assert parse_intrinsics(str(flat)) == Intrinsics(500, 500, 319.5, 239.5, 640, 480)
    no_matrix = tmp_path / "none.yaml"
    no_matrix.write_text("image_width: 640\n")
    with pytest.raises(Dav2Error, match="has no camera matrix"):
        parse_intrinsics(str(no_matrix))
    short = tmp_path / "short.yaml"
    short.write_text("camera_matrix:\n  rows: 2\n  cols: 2\n  data: [1, 0, 0, 1]\n")
    with pytest.raises(Dav2Error, match="must have 9 values"):
        parse_intrinsics(str(short))
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("camera_matrix: [1, 2\n  ::: {\n")
    with pytest.raises(Dav2Error, match="not a readable"):
        parse_intrinsics(str(garbage))


def test_scaled_intrinsics_keep_points_on_the_same_plane():
    """Intrinsics calibrated at 1280x720 used on 640x360 frames: a resized frame's pixel j sees the full frame's
    continuous coordinate (j + 0.5) * 2 - 0.5, so the scaled camera must unproject it onto the same 3D plane."""
    full = Intrinsics(900.0, 905.0, 637.3, 362.1, 1280, 720)
    half = full.for_frame(640, 360)
    assert (half.fx, half.fy) == (450.0, 452.5)
    assert (half.cx, half.cy) == ((637.3 + 0.5) / 2 - 0.5, (362.1 + 0.5) / 2 - 0.5)
    normal, offset = np.array([0.2, -0.1, 1.0]), 3.0  # the plane n . X = offset

    def plane_points(u, v, k: Intrinsics):  # where the ray through pixel (u, v) meets the plane
        ray = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u)], axis=-1)
        return ray * (offset / (ray @ normal))[..., None]

    v, u = np.mgrid[0:360, 0:640].astype(np.float64)
    truth = plane_points((u + 0.5) * 2 - 0.5, (v + 0.5) * 2 - 0.5, full)  # what a resized frame's pixels see
    depth = truth[..., 2].astype(np.float32)
    error = np.abs(unproject(depth, half).points - truth.reshape(-1, 3)).max()
    assert error < 1e-5  # metres: float32 rounding
    naive = Intrinsics(450.0, 452.5, 637.3 / 2, 362.1 / 2, 640, 360)  # cx * s: a quarter pixel off
    assert np.abs(unproject(depth, naive).points - truth.reshape(-1, 3)).max() > 100 * error


def test_another_aspect_ratio_is_refused():
    with pytest.raises(Dav2Error, match="different aspect ratio means a crop"):
        Intrinsics(900, 900, 640, 360, 1280, 720).for_frame(640, 480)


def test_intrinsics_without_a_size_are_used_as_given():
    assert intrinsics_for_frame(Intrinsics(600, 600, 320, 240), 640, 480) == Intrinsics(600, 600, 320, 240, 640, 480)


def test_default_is_upstreams_and_says_so():
    intrinsics = intrinsics_for_frame(None, 640, 480)
    assert (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy) == (DEFAULT_FOCAL, DEFAULT_FOCAL, 320, 240)
    assert intrinsics.assumed and "470.4" in default_note(intrinsics)


def test_mismatched_sizes_are_refused():
    depth, image = scene()
    with pytest.raises(Dav2Error, match="scale them with Intrinsics.for_frame"):
        unproject(depth, Intrinsics(600, 600, 320, 240, 640, 480))
    with pytest.raises(Dav2Error, match="differ in size"):
        unproject(depth, default_intrinsics(64, 48), image[:10])


def test_relative_depth_needs_a_metric_scale():
    with pytest.raises(NoMetricScale, match="--anchors FILE"):
        require_metric("relative", scale_known=False)
    require_metric("relative", scale_known=True)
    require_metric("metric", scale_known=False)


# -- real frames (../shared/depth-gt) ------------------------------------------------------------


def nyu_frames() -> list[tuple[str, str, Intrinsics]]:
    annotations = json.loads((DEPTH_GT / "metric3d" / "nyu_demo" / "test_annotations.json").read_text())
    frames = []
    for entry in annotations["files"]:
        fx, fy, cx, cy = entry["cam_in"]
        rgb = DEPTH_GT / "metric3d" / entry["rgb"].removeprefix("data/")
        depth = DEPTH_GT / "metric3d" / entry["depth"].removeprefix("data/")
        frames.append((rgb, depth, Intrinsics(fx, fy, cx, cy, 640, 480)))
    return frames


def check_cloud(depth: np.ndarray, image: np.ndarray, intrinsics: Intrinsics, path) -> None:
    cloud = unproject(depth, intrinsics.for_frame(depth.shape[1], depth.shape[0]), image)
    back = read_ply(write_ply(path, cloud))
    assert len(back) == int((np.isfinite(depth) & (depth > 0)).sum()) > 0
    uv = project(back.points, intrinsics)
    assert np.abs(uv - cloud.pixels).max() < 0.5
    np.testing.assert_array_equal(back.points[:, 2], depth[cloud.pixels[:, 1], cloud.pixels[:, 0]])
    np.testing.assert_array_equal(back.colors, image[cloud.pixels[:, 1], cloud.pixels[:, 0]][:, ::-1])


@pytest.mark.shared("depth-gt")
def test_nyu_ground_truth_with_its_true_intrinsics(tmp_path):
    from dav2.evaluation.groundtruth import read_depth

    for rgb, depth_file, intrinsics in nyu_frames():
        depth, valid = read_depth(depth_file, "png-mm")
        check_cloud(np.where(valid, depth, 0), cv2.imread(str(rgb)), intrinsics, tmp_path / "gt.ply")


@pytest.mark.shared("depth-gt")
def test_metric_model_on_a_real_frame_with_its_true_intrinsics(vits_metric_checkpoint, tmp_path, monkeypatch):
    """The seeded metric vits on an NYU frame (480x640): its PLY reprojects onto the image within 0.5 px and its
    points' depths are the depth map's."""
    from dav2.models.checkpoint import load_model

    monkeypatch.delenv("DAV2_CHECKPOINT", raising=False)
    rgb, _, intrinsics = nyu_frames()[0]
    image = cv2.imread(str(rgb))
    model, _ = load_model("vits", "metric", 20, str(vits_metric_checkpoint))
    depth = model.infer_image(image)
    assert depth.shape == image.shape[:2]
    check_cloud(depth, image, intrinsics, tmp_path / "model.ply")


@pytest.mark.shared("depth-gt")
def test_unidepth_frame_with_its_intrinsics_matrix(tmp_path):
    from dav2.evaluation.groundtruth import read_depth

    folder = DEPTH_GT / "unidepth"
    k = np.load(folder / "intrinsics.npy")
    depth, valid = read_depth(folder / "depth.png", "png-mm")
    intrinsics = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], depth.shape[1], depth.shape[0])
    check_cloud(np.where(valid, depth, 0), cv2.imread(str(folder / "rgb.png")), intrinsics, tmp_path / "u.ply")
