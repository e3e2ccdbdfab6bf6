"""dav2-run --serve: the live view, watched by a real WebSocket client on loopback.

The client is `websockets` speaking Foxglove's WebSocket protocol (subprotocol foxglove.sdk.v1,
what foxglove-sdk's server accepts): it reads serverInfo and the advertised channels, subscribes,
and decodes the binary messageData frames. The protobuf payloads are decoded with Google's
`protobuf` library from the schema each channel advertises (a second implementation: the server
encodes them in Rust), the JPEGs with OpenCV, the stats as JSON. Servers bind port 0 and the
tests read back the port the view prints; no sleeps: the client waits for messages, the view's
listener for subscriptions, and a watchdog only turns a hang into a failure.
"""

import asyncio
import base64
import json
import signal
import socket
import struct
import sys
import threading
import time
import tracemalloc

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from test_hostile_run import check_one_error_line, started

from conftest import export
from dav2.cli import run_main
from dav2.cli.run import RunRequest
from dav2.errors import Dav2Error
from dav2.runtime.live import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MIN_HZ,
    OPTICAL_IN_WORLD,
    TOPICS,
    LiveSettings,
    LiveView,
    Mailbox,
    Pending,
)
from dav2.runtime.sources import Frame

websockets = pytest.importorskip("websockets")
pytest.importorskip("foxglove")
pytest.importorskip("google.protobuf")

SUBPROTOCOL = "foxglove.sdk.v1"
WATCHDOG_S = 90  # a hang fails the test after this long; nothing waits for it otherwise
SIZE = "56"
FRAME_WH = (160, 120)
INTRINSICS = "200,200,80,60,160,120"


@pytest.fixture(scope="module")
def metric_dynamic(vits_metric_checkpoint, tmp_path_factory):
    return export(vits_metric_checkpoint, tmp_path_factory.mktemp("metric"), "--kind", "metric", "--onnx", "--dynamic")


# --- a Foxglove WebSocket client ------------------------------------------------------------------


def decoder_for(channel: dict):
    """bytes -> decoded message, from the channel's advertised schema (protobuf or JSON)."""
    if channel["encoding"] == "json":
        return lambda payload: json.loads(payload)
    assert channel["encoding"] == "protobuf" and channel["schemaEncoding"] == "protobuf", channel
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(channel["schema"])).file:
        pool.Add(file)
    kind = message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))
    return kind.FromString


async def watch(port: int, wanted: set[str], on_subscribed=None) -> tuple[dict, dict, dict]:
    """Connect, subscribe to every advertised channel, and collect the first message of each
    topic in `wanted`: (serverInfo, {topic: channel}, {topic: (log time ns, decoded message, bytes)})."""
    async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOL]) as connection:
        assert connection.subprotocol == SUBPROTOCOL
        info = json.loads(await connection.recv())
        assert info["op"] == "serverInfo" and info["name"] == "dav2", info
        channels: dict[str, dict] = {}
        while not wanted <= set(channels):
            advertised = json.loads(await connection.recv())
            assert advertised["op"] == "advertise", advertised
            channels.update({channel["topic"]: channel for channel in advertised["channels"]})
        by_subscription = {number: channel for number, channel in enumerate(channels.values(), start=1)}
        subscriptions = [{"id": number, "channelId": channel["id"]} for number, channel in by_subscription.items()]
        await connection.send(json.dumps({"op": "subscribe", "subscriptions": subscriptions}))
        if on_subscribed is not None:
            on_subscribed()
        decoders = {number: decoder_for(channel) for number, channel in by_subscription.items()}
        received: dict[str, tuple[int, object, int]] = {}
        while not wanted <= set(received):
            data = await connection.recv()
            if isinstance(data, str):
                continue  # control messages (e.g. a later advertise)
            opcode, subscription, log_time = struct.unpack_from("<BIQ", data)
            assert opcode == 0x01, opcode  # messageData
            topic = by_subscription[subscription]["topic"]
            payload = data[13:]
            received.setdefault(topic, (log_time, decoders[subscription](payload), len(payload)))
        return info, channels, received


def watched(port: int, wanted: set[str], on_subscribed=None):
    return asyncio.run(asyncio.wait_for(watch(port, wanted, on_subscribed), WATCHDOG_S))


def port_is_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def picture(message, shape: tuple[int, ...]) -> np.ndarray:
    assert message.format == "jpeg" and message.data[:3] == b"\xff\xd8\xff"
    decoded = cv2.imdecode(np.frombuffer(message.data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == shape
    return decoded


def stamp_ns(message) -> int:
    return message.timestamp.seconds * 1_000_000_000 + message.timestamp.nanos


def rotate(quaternion, vector) -> np.ndarray:
    """`vector` rotated by the unit quaternion (x, y, z, w)."""
    x, y, z, w = quaternion
    q = np.array([x, y, z])
    v = np.asarray(vector, dtype=float)
    return v + 2 * np.cross(q, np.cross(q, v) + w * v)


# --- the settings -----------------------------------------------------------------------------------


def test_serve_addresses_parse_to_host_and_port():
    assert LiveSettings.parse("8765") == LiveSettings(DEFAULT_HOST, 8765)
    assert LiveSettings.parse("0.0.0.0:9000").host == "0.0.0.0"
    assert LiveSettings.parse("[::1]:0") == LiveSettings("::1", 0)
    assert LiveSettings.parse("robot.local:8765", 5, 60, 2) == LiveSettings("robot.local", 8765, 5, 60, 2)
    for bad, match in [
        ("web", "PORT a number"),
        ("host:", "PORT a number"),
        ("::1:8765", "brackets"),
        ("70000", "port"),
        (":8765", "host"),
        ("-1", "PORT a number"),
    ]:
        with pytest.raises(Dav2Error, match=match):
            LiveSettings.parse(bad)
    for choices, match in [
        ({"max_hz": 0.0}, "--serve-hz"),
        ({"max_hz": float("nan")}, "--serve-hz"),
        ({"quality": 0}, "--serve-quality"),
        ({"stride": 65}, "--serve-stride"),
    ]:
        with pytest.raises(Dav2Error, match=match):
            LiveSettings(**choices)


def test_serve_alone_listens_on_loopback_at_the_default_port_and_keeps_nothing_else():
    context = run_main.make_context("dav2-run", ["--model", "m.onnx", "--serve", "--source", "0"])
    request = RunRequest.parse(dict(context.params))
    assert request.options.serve == LiveSettings(DEFAULT_HOST, DEFAULT_PORT)
    assert request.options.wants_3d and not request.keeps_nothing  # --intrinsics counts; no warning
    context = run_main.make_context("dav2-run", ["--model", "m.onnx", "--serve", "0.0.0.0:9000", "--serve-hz", "2"])
    serve = RunRequest.parse(dict(context.params)).options.serve
    assert (serve.host, serve.port, serve.max_hz) == ("0.0.0.0", 9000, 2.0)
    context = run_main.make_context("dav2-run", ["--model", "m.onnx"])
    assert RunRequest.parse(dict(context.params)).options.serve is None


def test_a_bad_serve_address_is_one_error_line_before_the_model_opens(tmp_path):
    missing = tmp_path / "no-such-model.onnx"
    result = CliRunner().invoke(run_main, ["--model", str(missing), "--serve", "host:port"])
    line = check_one_error_line(result.output, result.exit_code)
    assert "--serve 'host:port'" in line  # said before the missing model is noticed
    result = CliRunner().invoke(run_main, ["--model", str(missing), "--serve", "--serve-hz", "1000"])
    assert result.exit_code == 2 and "--serve-hz" in result.output  # click's range check


# --- the mailbox and the view without clients --------------------------------------------------------


def pending(index: int) -> Pending:
    return Pending(np.zeros((2, 2, 3), np.uint8), np.full((2, 2), float(index), np.float32), None, 0.0)


def test_the_mailbox_keeps_only_the_newest_frame_and_counts_the_rest():
    mailbox = Mailbox()
    for index in range(100):
        mailbox.put(pending(index))
        assert mailbox.pending == 1
    assert mailbox.replaced == 99
    assert mailbox.take().depth[0, 0] == 99.0 and mailbox.pending == 0
    taken = []
    waiter = threading.Thread(target=lambda: taken.append(mailbox.take()))
    waiter.start()  # blocks: the mailbox is empty
    mailbox.close()  # ends the wait
    waiter.join(timeout=WATCHDOG_S)
    assert not waiter.is_alive() and taken == [None]
    mailbox.put(pending(0))
    assert mailbox.take() is None  # closed stays closed


def test_a_view_nobody_watches_holds_at_most_one_frame_and_closes_its_port():
    view = LiveView(LiveSettings(port=0, max_hz=MIN_HZ), "m")
    port = view.port
    assert port > 0 and not port_is_closed(port)
    width, height = 640, 480
    frame_bytes = width * height * (3 + 4)  # a BGR frame and its float32 depth
    writes = 200
    tracemalloc.start()
    try:
        started_at = time.perf_counter()
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for index in range(writes):
            image = np.full((height, width, 3), index % 256, np.uint8)
            depth = np.full((height, width), 1.0 + index, np.float32)
            view.write(Frame(image, f"frame_{index:06d}", index, captured=time.perf_counter()), depth)
            del image, depth
            assert view.mailbox.pending <= 1
        _, peak = tracemalloc.get_traced_memory()
        elapsed = time.perf_counter() - started_at
    finally:
        tracemalloc.stop()
    counts = view.counts()
    view.close()
    # every frame written was sent, replaced by a newer one, or was the one left at close
    assert counts["written"] == writes
    assert writes - 1 <= counts["sent"] + counts["replaced"] <= writes
    assert counts["sent"] <= 1 + elapsed * MIN_HZ  # the rate cap: one frame, then one per 1 / max_hz
    # 200 frames went through; the view held the one in the mailbox and at most one being sent
    assert peak - before < 5 * frame_bytes, (peak - before, frame_bytes)
    assert not view.sender.is_alive()
    assert port_is_closed(port)
    view.close()  # twice is harmless (the pipeline closes sinks once; a Ctrl-C path may again)


def test_without_foxglove_sdk_the_view_names_its_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "foxglove", None)  # as on a machine where it was never installed
    with pytest.raises(Dav2Error, match=r"needs foxglove-sdk: pip install 'dav2\[live\]'"):
        LiveView(LiveSettings(port=0), "m")


def test_a_port_in_use_is_one_error_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(Dav2Error, match=rf"--serve 127\.0\.0\.1:{port}: .*in use"):
            LiveView(LiveSettings(port=port), "m")


# --- a client on loopback ---------------------------------------------------------------------------


def test_relative_depth_is_served_without_a_point_cloud():
    """The view publishes what a client subscribes to; relative depth (no metres) has no cloud channel."""
    view = LiveView(LiveSettings(port=0), "disparity")
    image = np.full((48, 64, 3), 200, np.uint8)
    depth = np.linspace(1, 2, 48 * 64, dtype=np.float32).reshape(48, 64)
    wanted = {TOPICS[name] for name in ("image", "depth", "camera", "tf")}

    def write_when_subscribed():
        if view.subscriptions.wait(sorted(wanted), WATCHDOG_S):
            view.write(Frame(image, "f", 0), depth)

    def publish_once_subscribed():
        # the client has sent its subscriptions: write the frame once the server has them
        threading.Thread(target=write_when_subscribed, daemon=True).start()

    try:
        info, channels, received = watched(view.port, wanted, publish_once_subscribed)
    finally:
        view.close()
    assert set(channels) == set(TOPICS.values()) - {TOPICS["points"]}
    assert channels[TOPICS["image"]]["schemaName"] == "foxglove.CompressedImage"
    (_, frame, _), (_, coloured, _) = received[TOPICS["image"]], received[TOPICS["depth"]]
    assert np.abs(picture(frame, (48, 64, 3)).astype(int) - 200).max() <= 2  # the frame, through JPEG
    picture(coloured, (48, 64, 3))
    _, camera, _ = received[TOPICS["camera"]]
    assert (camera.width, camera.height) == (64, 48) and camera.K[0] > 0  # upstream's default camera
    assert view.counts()["bytes_sent"] == sum(size for _, _, size in received.values())  # what went out
    assert port_is_closed(view.port)


def test_a_real_run_streams_every_topic_to_a_loopback_client(metric_dynamic):
    """dav2-run --serve 127.0.0.1:0 on a live synthetic camera, watched until every topic has
    spoken (the stats included: the pipeline's once-a-second tick), then stopped with SIGTERM."""
    width, height = FRAME_WH
    args = ["--model", metric_dynamic, "--source", f"synthetic:30:{width}x{height}", "--input-size", SIZE]
    process = started([*args, "--intrinsics", INTRINSICS, "--serve", "127.0.0.1:0"], watchdog_s=WATCHDOG_S * 2)
    lines = []
    port = None
    for line in process.stderr:
        lines.append(line)
        if line.startswith("live view: ws://127.0.0.1:"):
            port = int(line.split("ws://127.0.0.1:", 1)[1].split()[0])
            break
    assert port is not None, "".join(lines)
    drain = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    drain.start()
    try:
        info, channels, received = watched(port, set(TOPICS.values()))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=WATCHDOG_S)
        drain.join(timeout=WATCHDOG_S)
    stderr = "".join(lines)
    check_one_error_line(stderr, process.returncode, 143)
    assert "live view closed:" in stderr
    assert "neither --save nor --show" not in stderr  # --serve alone is a run that shows its depth
    assert port_is_closed(port)

    assert {channels[TOPICS[name]]["schemaName"] for name in ("image", "depth")} == {"foxglove.CompressedImage"}
    assert channels[TOPICS["points"]]["schemaName"] == "foxglove.PointCloud"
    assert channels[TOPICS["stats"]]["encoding"] == "json"
    for name in ("image", "depth", "points", "camera", "tf"):
        log_time, message, _ = received[TOPICS[name]]
        assert stamp_ns(message) == log_time  # each message carries its frame's capture time
        if name != "tf":
            assert message.frame_id == "camera_optical_frame"
    picture(received[TOPICS["image"]][1], (height, width, 3))
    picture(received[TOPICS["depth"]][1], (height, width, 3))

    _, camera, _ = received[TOPICS["camera"]]
    assert (camera.width, camera.height) == FRAME_WH
    assert list(camera.K) == [200, 0, 80, 0, 200, 60, 0, 0, 1] and list(camera.P)[:3] == [200, 0, 80]

    _, cloud, _ = received[TOPICS["points"]]
    layout = {field.name: field.offset for field in cloud.fields}
    assert layout == {"x": 0, "y": 4, "z": 8, "red": 12, "green": 13, "blue": 14, "alpha": 15}
    assert cloud.point_stride == 16 and len(cloud.data) % 16 == 0
    points = np.frombuffer(cloud.data, np.dtype([("xyz", "<f4", 3), ("rgba", "u1", 4)]))
    stride = LiveSettings().stride  # the default --serve-stride
    assert 0 < len(points) <= (width // stride) * (height // stride)
    assert np.isfinite(points["xyz"]).all() and (points["xyz"][:, 2] > 0).all()
    assert (points["rgba"][:, 3] == 255).all()

    _, transform, _ = received[TOPICS["tf"]]
    assert (transform.parent_frame_id, transform.child_frame_id) == ("world", "camera_optical_frame")
    rotation = (transform.rotation.x, transform.rotation.y, transform.rotation.z, transform.rotation.w)
    assert rotation == OPTICAL_IN_WORLD
    assert np.allclose(rotate(rotation, [0, 0, 1]), [1, 0, 0])  # the camera looks along world x
    assert np.allclose(rotate(rotation, [0, 1, 0]), [0, 0, -1])  # image down is world down

    _, stats, _ = received[TOPICS["stats"]]
    assert stats["frames"] >= 1 and "latency_p50_ms" in stats and "inference" in stats["stage_ms"]
    assert stats["live_view"]["written"] >= stats["live_view"]["sent"] >= 1


def test_dav2_run_on_a_taken_port_is_one_error_line(metric_dynamic):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--model", str(metric_dynamic), "--source", "synthetic:30:64x48", "--input-size", SIZE]
        result = CliRunner().invoke(run_main, [*args, "--serve", f"127.0.0.1:{port}", "--max-frames", "1"])
    line = check_one_error_line(result.output, result.exit_code)
    assert f"--serve 127.0.0.1:{port}" in line and "in use" in line
