"""The Rerun 3D view, tested headless: record to an .rrd file, read the recording back with Rerun's own reader,
and find every frame's image, coloured depth, camera, metric depth and point cloud in it."""

from dataclasses import dataclass

import numpy as np
import pytest

from dav2.errors import Dav2Error
from dav2.geometry import Intrinsics, unproject

rr = pytest.importorskip("rerun", reason="rerun-sdk is not installed (pip install rerun-sdk)")
pytest.importorskip("rerun.chunk", reason="this rerun-sdk has no chunk reader (needs 0.30 or later)")

from dav2.runtime.viewer import RerunViewer  # noqa: E402


@dataclass
class Frame:  # what the pipeline hands its sinks (dav2.runtime.sources.Frame)
    image: np.ndarray
    name: str
    index: int


def frames(count: int = 3, height: int = 24, width: int = 32):
    rng = np.random.default_rng(0)
    v, u = np.mgrid[0:height, 0:width]
    for index in range(count):
        depth = (1.0 + index + u / width + v / height).astype(np.float32)
        depth[0, 0] = 0.0  # an invalid pixel: no point
        yield Frame(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), f"f{index}", index), depth


def read_recording(path) -> dict[str, list]:
    """entity path -> the record batches of its chunks (properties left out)."""
    entities: dict[str, list] = {}
    for chunk in rr.chunk.RrdReader(path).stream().collect().stream():
        if not chunk.entity_path.startswith("/__"):
            entities.setdefault(chunk.entity_path, []).append(chunk.to_record_batch())
    return entities


def rows(batches, column: str) -> list:
    """(frame, value) of every row that has `column`, in frame order."""
    found = []
    for batch in batches:
        if column not in batch.schema.names:
            continue
        frame = batch.column("frame").to_pylist() if "frame" in batch.schema.names else [None] * batch.num_rows
        found += [(f, v) for f, v in zip(frame, batch.column(column).to_pylist()) if v is not None]
    return sorted(found, key=lambda item: (item[0] is not None, item[0] or 0))


def test_recording_holds_frames_depth_camera_and_points(tmp_path):
    intrinsics = Intrinsics(30.0, 31.0, 15.5, 11.5, 64, 48)  # calibrated at twice the frames' size
    path = tmp_path / "run.rrd"
    with RerunViewer(metric=True, intrinsics=intrinsics, save=path, stride=1) as viewer:
        sent = list(frames())
        for frame, depth in sent:
            viewer.write(frame, depth)
    assert viewer.written == 3 and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["run.rrd"]  # no temporary file left
    entities = read_recording(path)
    assert {"/world/camera/image", "/depth", "/world/camera", "/world/camera/depth", "/world/points"} <= set(entities)

    scaled = intrinsics.for_frame(32, 24)
    points = rows(entities["/world/points"], "Points3D:positions")
    colors = rows(entities["/world/points"], "Points3D:colors")
    images = rows(entities["/world/camera/image"], "Image:buffer")
    assert [f for f, _ in points] == [f for f, _ in images] == [0, 1, 2]
    for (frame, depth), (_, logged), (_, rgba), (_, buffer) in zip(sent, points, colors, images):
        cloud = unproject(depth, scaled, frame.image)
        np.testing.assert_array_equal(np.array(logged, dtype=np.float32), cloud.points)
        packed = np.array(rgba, dtype=np.uint32)  # 0xRRGGBBAA
        np.testing.assert_array_equal(np.stack([packed >> 24, packed >> 16 & 255, packed >> 8 & 255], 1), cloud.colors)
        np.testing.assert_array_equal(np.array(buffer, dtype=np.uint8).reshape(24, 32, 3), frame.image[..., ::-1])
    pinhole = rows(entities["/world/camera"], "Pinhole:image_from_camera")
    np.testing.assert_allclose(np.array(pinhole[0][1]).reshape(3, 3).T, scaled.matrix, rtol=1e-6)  # column-major
    assert len(rows(entities["/world/camera/depth"], "DepthImage:buffer")) == 3
    assert len(rows(entities["/depth"], "Image:buffer")) == 3


def test_relative_depth_shows_no_points(tmp_path, capsys):
    path = tmp_path / "rel.rrd"
    with RerunViewer(metric=False, save=path) as viewer:
        for frame, depth in frames(2):
            viewer.write(frame, depth)
    entities = read_recording(path)
    assert "/world/points" not in entities and len(rows(entities["/depth"], "Image:buffer")) == 2
    assert capsys.readouterr().err.count("no metric scale") == 1


def test_default_camera_is_announced(tmp_path, capsys):
    with RerunViewer(metric=True, save=tmp_path / "d.rrd") as viewer:
        for frame, depth in frames(2):
            viewer.write(frame, depth)
    assert capsys.readouterr().err.count("assuming upstream's default camera (fx 470.4") == 1


def test_failed_run_keeps_the_earlier_recording(tmp_path):
    path = tmp_path / "run.rrd"
    path.write_bytes(b"earlier")
    viewer = RerunViewer(metric=True, save=path)
    frame, depth = next(frames(1))
    viewer.write(frame, depth)
    viewer.close(success=False)
    assert path.read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == ["run.rrd"]


def test_needs_a_target_and_a_display(tmp_path, monkeypatch):
    with pytest.raises(Dav2Error, match="--viewer .* or --viewer-save"):
        RerunViewer(metric=True)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(Dav2Error, match="needs a display .* --viewer-save run.rrd"):
        RerunViewer(metric=True, live=True)
    with pytest.raises(Dav2Error, match="not a regular file|a folder of that name exists"):
        RerunViewer(metric=True, save=tmp_path)
