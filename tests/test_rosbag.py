"""ROS 2 output: the message builders, and dav2-run --format rosbag read back independently.

The bags are written with `rosbags` and read here with MCAP's own reader and its ROS 2 decoder
(`mcap` + `mcap-ros2-support`: another implementation of the container and of CDR, which parses
the message definitions the bag carries), and metadata.yaml with PyYAML. Each bag is checked
against what the same run writes with --format npy, the intrinsics given, and the cloud's own
arithmetic; interrupted and failed runs must leave no bag and keep an earlier one.
"""

import os
import shutil
import signal
import struct

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from test_hostile_run import check_one_error_line, started, subprocess_run

from conftest import VIDEO, export
from dav2.cli import run_main
from dav2.errors import Dav2Error
from dav2.geometry.intrinsics import Intrinsics
from dav2.geometry.pointcloud import unproject
from dav2.ros2 import messages
from dav2.ros2.messages import FrameMessages, RosSettings

pytestmark = pytest.mark.slow  # dav2-run in subprocesses writing bags

SIZE = "56"  # network short side: small, so each run is quick
VIDEO_FPS, VIDEO_FRAMES, VIDEO_WH = 12.0, 48, (320, 180)
IMAGE, CAMERA_INFO, CLOUD, COMPRESSED = (
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CameraInfo",
    "sensor_msgs/msg/PointCloud2",
    "sensor_msgs/msg/CompressedImage",
)


# --- reading a bag back, without rosbags ---------------------------------------------------------


def read_bag(folder):
    """(metadata.yaml as a dict, {topic: [(schema name, log time, decoded message)]})."""
    yaml = pytest.importorskip("yaml")
    pytest.importorskip("mcap_ros2")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    metadata = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    (storage,) = metadata["relative_file_paths"]
    found = {}
    with open(folder / storage, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for schema, channel, record, message in reader.iter_decoded_messages():
            assert channel.message_encoding == "cdr" and schema.encoding == "ros2msg"
            found.setdefault(channel.topic, []).append((schema.name, record.log_time, message))
    return metadata, found


def depth_of(message) -> np.ndarray:
    assert message.encoding == "32FC1" and message.is_bigendian == 0 and message.step == 4 * message.width
    return np.frombuffer(bytes(message.data), "<f4").reshape(message.height, message.width)


def cloud_of(message) -> np.ndarray:
    """A PointCloud2 as a structured array, read from its own field list."""
    formats = {7: "<f4"}
    layout = np.dtype(
        {
            "names": [f.name for f in message.fields],
            "formats": [formats[f.datatype] for f in message.fields],
            "offsets": [f.offset for f in message.fields],
            "itemsize": message.point_step,
        }
    )
    assert message.height == 1 and not message.is_bigendian and message.row_step == message.point_step * message.width
    return np.frombuffer(bytes(message.data), layout)


def stamp_ns(message) -> int:
    return message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def dav2_run(*args):
    return CliRunner().invoke(run_main, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def metric_dynamic(vits_metric_checkpoint, tmp_path_factory):
    return export(vits_metric_checkpoint, tmp_path_factory.mktemp("metric"), "--kind", "metric", "--onnx", "--dynamic")


# --- the builders --------------------------------------------------------------------------------


def test_depth_image_is_the_float32_map_byte_for_byte():
    depth = np.random.default_rng(0).random((5, 7)).astype(np.float32)
    header = messages.Header(messages.stamp(12.5), "cam")
    image = messages.depth_image(depth, header)
    assert (image.height, image.width, image.encoding, image.step) == (5, 7, "32FC1", 28)
    np.testing.assert_array_equal(image.data.view("<f4").reshape(5, 7), depth)


def test_stamps_are_whole_nanoseconds():
    assert messages.stamp(1.5) == messages.Time(1, 500_000_000)
    assert messages.stamp(2.9999999999) == messages.Time(3, 0)  # never nanosec == 1e9
    with pytest.raises(Dav2Error):
        messages.stamp(float("nan"))


def test_camera_info_is_k_with_identity_rectification():
    camera = Intrinsics(600.0, 550.0, 319.5, 212.0, 640, 425)
    info = messages.camera_info(camera, messages.Header(messages.Time(0, 0), "cam"))
    assert (info.width, info.height, info.distortion_model) == (640, 425, "plumb_bob")
    np.testing.assert_array_equal(info.k, [600, 0, 319.5, 0, 550, 212, 0, 0, 1])
    np.testing.assert_array_equal(info.p, [600, 0, 319.5, 0, 0, 550, 212, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(info.r, np.eye(3).reshape(-1))
    np.testing.assert_array_equal(info.d, np.zeros(5))


def test_point_cloud_packs_xyz_and_pcl_rgb():
    depth = np.array([[1.0, 0.0], [2.0, np.nan]], np.float32)
    image = np.array([[[10, 20, 30], [0, 0, 0]], [[1, 2, 3], [0, 0, 0]]], np.uint8)  # BGR
    camera = Intrinsics(1.0, 1.0, 0.0, 0.0, 2, 2)
    cloud = messages.point_cloud(unproject(depth, camera, image), messages.Header(messages.Time(0, 0), "cam"))
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, 7, 1),
        ("y", 4, 7, 1),
        ("z", 8, 7, 1),
        ("rgb", 12, 7, 1),
    ]
    assert (cloud.width, cloud.point_step, cloud.is_dense) == (2, 16, True)  # invalid pixels left out
    raw = bytes(cloud.data)
    first = struct.unpack_from("<fffI", raw, 0)
    second = struct.unpack_from("<fffI", raw, 16)
    assert first == (0.0, 0.0, 1.0, (30 << 16) | (20 << 8) | 10)  # 0x00RRGGBB from BGR (10, 20, 30)
    assert second == (0.0, 2.0, 2.0, (3 << 16) | (2 << 8) | 1)


def test_topics_say_metres_or_disparity():
    settings = RosSettings(prefix="/robot/front", color=True)
    metric, relative = settings.topics(metric=True), settings.topics(metric=False)
    assert metric.depth == "/robot/front/depth/image" and metric.points == "/robot/front/points"
    assert relative.depth == "/robot/front/disparity/image" and relative.points is None
    assert relative.color == "/robot/front/depth/color/compressed"
    assert metric.camera_info == "/robot/front/depth/camera_info"  # beside its image (image_transport)
    assert relative.camera_info == "/robot/front/disparity/camera_info"
    assert RosSettings(prefix="").topic("points") == "points"  # relative: the node's namespace applies


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"frame_id": "/camera"}, "--ros-frame-id"),
        ({"frame_id": ""}, "--ros-frame-id"),
        ({"prefix": "/9robot"}, "--ros-prefix"),
        ({"prefix": "/a//b"}, "--ros-prefix"),
        ({"prefix": "/a b"}, "--ros-prefix"),
        ({"cloud_stride": 0}, "--ros-cloud-stride"),
    ],
)
def test_bad_ros_names_are_refused(settings, message):
    with pytest.raises(Dav2Error, match=message):
        RosSettings(**settings)


def test_frame_messages_scale_the_intrinsics_and_stride_the_cloud():
    builder = FrameMessages(RosSettings(cloud_stride=2), "m", Intrinsics(200.0, 200.0, 79.5, 59.5, 160, 120))
    depth = np.full((60, 80), 2.0, np.float32)
    built = dict(builder.build(np.zeros((60, 80, 3), np.uint8), depth, 5.0))
    info = built["/dav2/depth/camera_info"]
    np.testing.assert_allclose(info.k, [100, 0, 39.5, 0, 100, 29.5, 0, 0, 1])  # half the size, pixel centres
    assert built["/dav2/points"].width == 30 * 40


# --- dav2-run --format rosbag ----------------------------------------------------------------------


def test_video_bag_reads_back_as_the_npy_run(metric_dynamic, tmp_path):
    """One depth, camera_info, cloud and colour message per frame of the clip; the depth is --format
    npy's; CameraInfo is the given intrinsics scaled to the frame; the cloud has a point per valid
    strided pixel; stamps are the clip's frame times."""
    bag, npys = tmp_path / "run_bag", tmp_path / "npy"
    common = ["--model", metric_dynamic, "--source", VIDEO, "--input-size", SIZE]
    intrinsics = ["--intrinsics", "600,600,319.5,179.5,640,360"]  # calibrated at twice the clip's size
    ok(dav2_run(*common, *intrinsics, "--format", "rosbag", "--save", bag, "--ros-cloud-stride", "2", "--ros-color"))
    ok(dav2_run(*common, "--format", "npy", "--save", npys))
    metadata, topics = read_bag(bag)

    assert metadata["storage_identifier"] == "mcap" and metadata["version"] == 8
    assert metadata["custom_data"]["dav2.unit"] == "m"
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in metadata["topics_with_message_count"]}
    expected = {
        "/dav2/depth/image": IMAGE,
        "/dav2/depth/camera_info": CAMERA_INFO,
        "/dav2/points": CLOUD,
        "/dav2/depth/color/compressed": COMPRESSED,
    }
    assert counts == dict.fromkeys(expected, VIDEO_FRAMES)
    assert {topic: {m[0] for m in found} for topic, found in topics.items()} == {t: {k} for t, k in expected.items()}
    assert all(len(found) == VIDEO_FRAMES for found in topics.values())

    stamps = [stamp_ns(m) for _, _, m in topics["/dav2/depth/image"]]
    assert np.allclose(np.diff(stamps), 1e9 / VIDEO_FPS, atol=2)  # the clip's frame times
    for topic, found in topics.items():
        assert [stamp_ns(m) for _, _, m in found] == stamps, topic  # one header per frame, all topics
        assert [log_time for _, log_time, _ in found] == stamps
        assert {m.header.frame_id for _, _, m in found} == {"camera_optical_frame"}

    for index, (_, _, image) in enumerate(topics["/dav2/depth/image"]):
        depth = depth_of(image)
        np.testing.assert_array_equal(depth, np.load(npys / f"frame_{index:06d}.npy"))
        info = topics["/dav2/depth/camera_info"][index][2]
        assert (info.width, info.height) == VIDEO_WH
        np.testing.assert_allclose(info.k, [300, 0, 159.5, 0, 300, 89.5, 0, 0, 1])
        points = cloud_of(topics["/dav2/points"][index][2])
        assert [f.name for f in topics["/dav2/points"][index][2].fields] == ["x", "y", "z", "rgb"]
        strided = depth[::2, ::2]
        assert len(points) == int(((strided > 0) & np.isfinite(strided)).sum())
        np.testing.assert_array_equal(np.sort(points["z"]), np.sort(strided[strided > 0]))
        picture = cv2.imdecode(np.frombuffer(bytes(topics["/dav2/depth/color/compressed"][index][2].data), np.uint8), 1)
        assert picture.shape == (VIDEO_WH[1], VIDEO_WH[0], 3)
    assert leftovers(tmp_path) == []


def test_synthetic_live_bag_of_a_relative_model(dynamic_onnx, tmp_path):
    """A live source: disparity (no points: a relative model has no metric shape), stamps from the
    capture times, each frame's disparity equal to the npy run's frame of the same capture index."""
    fps = 4.0
    source = ["--source", f"synthetic:{fps:g}:96x64", "--max-frames", "4", "--input-size", SIZE]
    bag, npys = tmp_path / "live_bag", tmp_path / "npy"
    result = ok(dav2_run("--model", dynamic_onnx, *source, "--format", "rosbag", "--save", bag))
    assert "no point cloud" in result.stderr
    ok(dav2_run("--model", dynamic_onnx, *source, "--format", "npy", "--save", npys))
    metadata, topics = read_bag(bag)
    assert metadata["custom_data"]["dav2.unit"] == "disparity"
    assert set(topics) == {"/dav2/disparity/image", "/dav2/disparity/camera_info"}
    images, infos = topics["/dav2/disparity/image"], topics["/dav2/disparity/camera_info"]
    assert len(images) == len(infos) == 4
    stamps = np.array([stamp_ns(m) for _, _, m in images])
    indices = np.round((stamps - stamps[0]) * fps / 1e9).astype(int)  # the first frame is frame 0
    assert np.all(np.diff(indices) >= 1)  # strictly later captures; dropped frames skip indices
    assert [stamp_ns(m) for _, _, m in infos] == list(stamps)
    compared = 0
    for index, (_, _, image) in zip(indices, images):
        npy = npys / f"frame_{index:06d}.npy"
        if npy.exists():  # the two runs may drop different frames
            np.testing.assert_array_equal(depth_of(image), np.load(npy))
            compared += 1
    assert compared >= 1 and (npys / "frame_000000.npy").exists()
    info = infos[0][2]
    assert (info.width, info.height) == (96, 64)
    np.testing.assert_allclose(info.k, [470.4, 0, 48, 0, 470.4, 32, 0, 0, 1])  # upstream's default camera


def test_an_interrupted_run_leaves_no_bag_and_keeps_the_earlier_one(dynamic_onnx, tmp_path):
    bag = tmp_path / "bag"
    args = ["--model", dynamic_onnx, "--input-size", "28", "--format", "rosbag", "--save", bag]
    ok(dav2_run(*args, "--source", "synthetic:30:64x48", "--max-frames", "2"))
    before = {p.name: p.read_bytes() for p in bag.iterdir()}
    process = started([*args, "--source", "synthetic:30:64x48"])
    lines = []
    for line in process.stderr:  # wait until frames are being written
        lines.append(line)
        if line.strip().startswith("frame 25"):
            break
    process.send_signal(signal.SIGINT)
    stderr = "".join(lines) + process.stderr.read()
    process.wait(timeout=30)
    line = check_one_error_line(stderr, process.returncode, 130)
    assert "interrupted" in line and "saved to" not in stderr
    assert {p.name: p.read_bytes() for p in bag.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_no_bag_and_keeps_the_earlier_one(dynamic_onnx, tmp_path):
    """A full disk (a file-size limit): one error line, the earlier bag as it was, no staging folder."""
    bag = tmp_path / "bag"
    args = ["--model", dynamic_onnx, "--source", VIDEO, "--input-size", "28", "--format", "rosbag", "--save", bag]
    ok(dav2_run(*args, "--max-frames", "1"))
    before = {p.name: p.read_bytes() for p in bag.iterdir()}
    done = subprocess_run(args, limit=2_000_000)  # 48 frames of 320x180 float32 are 11 MB
    line = check_one_error_line(done.stderr, done.returncode)
    assert "could not write" in line, line
    assert "saved to" not in done.stderr
    assert {p.name: p.read_bytes() for p in bag.iterdir()} == before
    assert leftovers(tmp_path) == []


def test_a_folder_that_is_not_a_bag_is_never_replaced(dynamic_onnx, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "keep.jpg").write_bytes(b"mine")
    args = ["--model", dynamic_onnx, "--source", VIDEO, "--input-size", "28", "--format", "rosbag"]
    result = dav2_run(*args, "--save", folder)
    assert result.exit_code == 1 and "is not a rosbag2 bag" in result.stderr, result.output
    assert [p.name for p in folder.iterdir()] == ["keep.jpg"] and leftovers(tmp_path) == []
    result = dav2_run(*args, "--save", tmp_path / "run.mcap")
    assert result.exit_code == 1 and "name a folder" in result.stderr, result.output


def test_a_bad_frame_id_is_one_line_before_the_model_loads(tmp_path):
    result = dav2_run("--model", tmp_path / "missing.onnx", "--ros-frame-id", "/cam", "--format", "rosbag")
    assert result.exit_code == 1 and result.stderr.startswith("error: --ros-frame-id"), result.output


def test_without_rosbags_the_extra_is_named(dynamic_onnx, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\nsys.modules['rosbags'] = None\nfrom dav2.cli import run_main\n"
        f"run_main({['--model', str(dynamic_onnx), '--format', 'rosbag', '--save', 'bag']!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and len(errors) == 1 and "dav2[rosbag]" in errors[0], done.stderr
    assert not list(tmp_path.iterdir())


def test_a_bag_written_again_replaces_the_earlier_bag(dynamic_onnx, tmp_path):
    bag = tmp_path / "bag"
    args = ["--model", dynamic_onnx, "--source", VIDEO, "--input-size", "28", "--format", "rosbag", "--save", bag]
    ok(dav2_run(*args, "--max-frames", "1"))
    ok(dav2_run(*args, "--max-frames", "3"))
    metadata, _ = read_bag(bag)
    assert metadata["message_count"] == 6 and sorted(os.listdir(bag)) == ["bag.mcap", "metadata.yaml"]
    assert leftovers(tmp_path) == []
    shutil.rmtree(bag)
