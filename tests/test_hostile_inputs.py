"""Hostile inputs, round 3 (issue #22): every file a user names is measured before it is trusted.

Each class of the attack has its own cases here (not the attack's exact files), and each case
runs the real console script in a subprocess under an address-space limit (RLIMIT_AS) and a
timeout, then checks the promise: exactly one `error:` line, a non-zero exit, no traceback, no
temporary file left, the inputs byte-identical.

Memory limits: importing dav2 with numpy and OpenCV reserves about 0.6-0.75 GB of address space,
so commands that refuse an input before opening a model run under PLAIN_LIMIT (1 GiB); a normal
28-pixel dav2-run of the test ONNX model needs between 1 and 1.5 GiB (measured with this file's
`cli` helper), so commands that load ONNX Runtime or PyTorch run under MODEL_LIMIT (1.5 GiB).
Every refused input would need far more than the limit if it were read or decoded.

Classes (issue #22's numbering): 2 images decoded before their size is known; 3 whole files read
before any check; 4 other unbounded memory; 5 hangs; 7 tracebacks instead of one line; 8 wrong
results or exit codes.
"""

import json
import os
import resource
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, default_ctrl_c
from dav2.errors import one_line
from dav2.files import check_name_length
from dav2.jsonfile import JsonError, nesting_depth, parse_json
from dav2.media import ImageLimits, decode_image, header_size, read_image

GIB = 1024**3
PLAIN_LIMIT = 1 * GIB
MODEL_LIMIT = int(1.5 * GIB)
BIN = Path(sys.executable).parent


# --- running a command as a user would ---------------------------------------------------------


def cli(command: str, *args, memory: int = PLAIN_LIMIT, timeout: float = 120, cwd: Path | None = None):
    """Run a dav2 console script under an address-space limit and a timeout."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(BIN / command), *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def refused(done) -> str:
    """The one error line of a refused command (and the checks that it is the only one)."""
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry below `folder`: small files by content, large (sparse) ones and FIFOs by status."""
    state = {}
    for path in sorted(folder.rglob("*")):
        status = path.lstat()
        if path.is_file() and status.st_size < 1 << 20:
            state[str(path.relative_to(folder))] = ("file", path.read_bytes())
        else:
            state[str(path.relative_to(folder))] = ("entry", status.st_mode, status.st_size, status.st_mtime_ns)
    return state


class Place:
    """A folder for one case's inputs: `freeze()` records it, and the test ends by checking that it
    still holds exactly that (inputs byte-identical, no temporary file left, nothing written)."""

    def __init__(self, root: Path):
        self.root, self.before = root, None

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def freeze(self) -> None:
        self.before = snapshot(self.root)


@pytest.fixture
def place(tmp_path):
    folder = Place(tmp_path)
    yield folder
    if folder.before is not None:
        assert snapshot(tmp_path) == folder.before


def sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.fixture
def tiny_image(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 255, (42, 56, 3), np.uint8))
    return path


# --- hostile files -----------------------------------------------------------------------------


def tiff_claiming(path: Path, width: int, height: int, order: bytes = b"MM", big: bool = False) -> Path:
    """A small TIFF whose first directory claims width x height, 8-bit RGB, one strip of a few bytes."""
    o = "<" if order == b"II" else ">"
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2)]
    entries += [(273, 4, 1, 4096), (277, 3, 1, 3), (278, 4, 1, height), (279, 4, 1, 64)]
    if big:
        data = order + struct.pack(o + "HHHQ", 43, 8, 0, 16) + struct.pack(o + "Q", len(entries))
        for tag, kind, count, value in entries:
            kind = 16 if kind == 4 else kind
            data += struct.pack(o + "HHQ", tag, kind, count) + struct.pack(o + ("Q" if kind == 16 else "H6x"), value)
        data += struct.pack(o + "Q", 0)
    else:
        data = order + struct.pack(o + "HI", 42, 8) + struct.pack(o + "H", len(entries))
        for tag, kind, count, value in entries:
            data += struct.pack(o + "HHI", tag, kind, count) + struct.pack(o + ("I" if kind == 4 else "H2x"), value)
        data += struct.pack(o + "I", 0)
    path.write_bytes(data.ljust(4096, b"\0") + bytes(64))
    return path


def hdr_claiming(path: Path, width: int, height: int, resolution: str = "-Y {h} +X {w}") -> Path:
    """A Radiance RGBE file claiming width x height, with a few bytes of flat (non-RLE) pixels."""
    line = resolution.format(w=width, h=height)
    path.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + line.encode() + b"\n" + bytes(4096))
    return path


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


def hf_folder(folder: Path, config) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def good_hf_config(**changes) -> dict:
    config = {"model_type": "depth_anything", "backbone_config": {"hidden_size": 384}}
    config.update(changes)
    return config


# --- 2. images are measured from their own header before any decode -----------------------------


@pytest.mark.parametrize("order", [b"II", b"MM"])
@pytest.mark.parametrize("big", [False, True])
def test_tiff_size_is_read_from_the_directory_in_every_layout(tmp_path, order, big):
    tiff = tiff_claiming(tmp_path / "a.tif", 31000, 17000, order, big)
    assert header_size(tiff.read_bytes()) == (31000, 17000)


def test_real_tiff_and_hdr_files_are_measured_and_still_decode(tmp_path):
    for ext, image in ((".tiff", np.zeros((31, 52, 3), np.uint8)), (".hdr", np.ones((33, 54, 3), np.float32))):
        data = cv2.imencode(ext, image)[1]
        assert header_size(data.tobytes()) == (image.shape[1], image.shape[0])
        assert decode_image(data, ext).shape == (image.shape[0], image.shape[1], 3)


@pytest.mark.parametrize("resolution", ["-Y {h} +X {w}", "+X {w} -Y {h}", "+Y {h} -X {w}"])
def test_radiance_resolution_line_in_any_orientation(tmp_path, resolution):
    assert header_size(hdr_claiming(tmp_path / "x.hdr", 900, 700, resolution).read_bytes()) == (900, 700)


def test_bytes_no_reader_can_measure_are_never_decoded():
    """A PAM image: OpenCV decodes it, but neither dav2's readers nor Pillow measure it."""
    pam = cv2.imencode(".pam", np.zeros((8, 8, 3), np.uint8))[1]
    assert cv2.imdecode(pam, cv2.IMREAD_COLOR) is not None and header_size(pam) is None
    assert decode_image(pam, "x.pam") is None  # with limits: refused unmeasured
    assert decode_image(pam, "x.pam", limits=None) is not None  # without limits: as before


@pytest.mark.parametrize(
    "name, make",
    [
        ("huge.tif", lambda p: tiff_claiming(p, 30000, 20000, b"MM")),
        ("huge_big.tiff", lambda p: tiff_claiming(p, 25000, 25000, b"II", big=True)),
        ("sky.hdr", lambda p: hdr_claiming(p, 16000, 16000)),
    ],
)
def test_images_claiming_huge_sizes_are_refused_before_decoding(dynamic_onnx, place, name, make):
    image = make(place / name)
    place.freeze()
    line = refused(
        cli("dav2-run", "--model", dynamic_onnx, "--source", image, "--input-size", "28", memory=MODEL_LIMIT)
    )
    assert "megapixels" in line and "--max-megapixels" in line


# --- 3. whole files read before any check -------------------------------------------------------


def test_an_image_file_over_its_size_limit_is_not_read(dynamic_onnx, place):
    big = sparse(place / "scan.png", 3 * GIB)  # a PNG signature would not matter: refused by size
    place.freeze()
    line = refused(
        cli("dav2-run", "--model", dynamic_onnx, "--source", big, "--max-megapixels", "1", memory=MODEL_LIMIT)
    )
    assert "over the limit" in line and "--max-megapixels" in line


@pytest.mark.parametrize("kind", ["fifo", "sparse"])
def test_anchors_that_are_not_a_small_regular_file(dynamic_onnx, tiny_image, place, kind):
    anchors = fifo(place / "a.csv") if kind == "fifo" else sparse(place / "a.csv", 2 * GIB)
    place.freeze()
    done = cli("dav2-run", "--model", dynamic_onnx, "--source", tiny_image, "--anchors", anchors, memory=MODEL_LIMIT)
    line = refused(done)
    assert ("not a regular file" in line) if kind == "fifo" else ("over the limit" in line)


@pytest.mark.parametrize("kind", ["fifo", "sparse"])
def test_da2k_annotations_and_bench_results_that_are_not_a_small_regular_file(place, kind):
    (place / "images").mkdir()
    model = place / "m.onnx"
    model.write_bytes(b"never opened")
    target = fifo(place / "x.json") if kind == "fifo" else sparse(place / "x.json", 5 * GIB)
    place.freeze()
    for done in (
        cli("dav2-eval", "da2k", "--annotations", target, "--images", place / "images", "--model", model),
        cli("dav2-bench", "compare", target),
    ):
        line = refused(done)
        assert ("not a regular file" in line) if kind == "fifo" else ("$DAV2_MAX_JSON_MB" in line)


def test_a_calibration_file_over_its_limit_is_not_given_to_opencv(dynamic_onnx, tiny_image, place):
    calibration = sparse(place / "camera.yaml", 3 * GIB)
    place.freeze()
    done = cli(
        "dav2-run", "--model", dynamic_onnx, "--source", tiny_image, "--intrinsics", calibration, memory=MODEL_LIMIT
    )
    assert "over the limit" in refused(done)


@pytest.mark.slow
def test_a_checkpoint_fifo_is_refused_not_waited_for(place):
    checkpoint = fifo(place / "weights.pth")
    place.freeze()
    done = cli("dav2-export", "--checkpoint", checkpoint, "--output", place / "out", "--onnx", memory=MODEL_LIMIT)
    assert "not a regular file" in refused(done)


# --- 4. other unbounded memory ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_an_expanded_half_precision_tensor_is_refused_before_widening(place, dtype):
    torch = pytest.importorskip("torch")
    checkpoint = place / "tiny.pth"
    one = torch.ones(1, dtype=getattr(torch, dtype))
    torch.save({"pretrained.pos_embed": one.expand(1, 30000, 30000), "depth_head.x": one}, checkpoint)
    assert checkpoint.stat().st_size < 4096
    place.freeze()
    done = cli("dav2-export", "--checkpoint", checkpoint, "--output", place / "out", "--onnx", memory=MODEL_LIMIT)
    assert "expanded or overlapping view" in refused(done)


def test_the_tensor_bounds_hold_every_real_model():
    torch = pytest.importorskip("torch")
    from dav2.models.checkpoint import MAX_TENSOR_ELEMENTS, MAX_TOTAL_ELEMENTS
    from dav2.models.dpt import DepthAnythingV2

    with torch.device("meta"):
        largest = DepthAnythingV2("vitg", metric=True, max_depth=20).state_dict()
    assert max(t.numel() for t in largest.values()) <= MAX_TENSOR_ELEMENTS
    assert sum(t.numel() for t in largest.values()) <= MAX_TOTAL_ELEMENTS


def test_synthetic_frames_obey_the_pixel_limit(dynamic_onnx, place):
    place.freeze()
    done = cli("dav2-run", "--model", dynamic_onnx, "--source", "synthetic:10:8000x7000", "--max-frames", "2")
    assert "56.0 megapixels" in refused(done)


def test_max_tokens_has_a_ceiling_that_bounds_memory(dynamic_onnx, tiny_image, place):
    place.freeze()
    done = cli("dav2-run", "--model", dynamic_onnx, "--source", tiny_image, "--max-tokens", "40000", memory=MODEL_LIMIT)
    assert "16,384" in refused(done)


@pytest.mark.slow
def test_temporal_evaluation_streams_a_video_larger_than_memory(dynamic_onnx, tmp_path):
    """80 frames of 1920x1080 are 500 MB as BGR and 660 MB as float32 depth: holding them all does
    not fit the limit beside ONNX Runtime (the list-based evaluator died of MemoryError here);
    streaming keeps two frames."""
    video = tmp_path / "walk.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (1920, 1080))
    scene = np.zeros((1080, 1920, 3), np.uint8)
    scene[:, :960] = 200
    for index in range(80):
        frame = scene.copy()
        frame[500:580, 8 * index : 8 * index + 80] = 90  # a small moving object; the rest is static
        writer.write(frame)
    writer.release()
    done = cli(
        "dav2-eval", "temporal", "--model", dynamic_onnx, "--video", video, "--input-size", "28", "--json",
        memory=MODEL_LIMIT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["frames"] == 80


# --- 5. hangs: numeric options without an upper bound --------------------------------------------


@pytest.mark.parametrize(
    "args, option",
    [
        (["--min-runs", "2000000000"], "--min-runs"),
        (["--max-runs", "2000000000"], "--max-runs"),
        (["--warmup", "5000000000"], "--warmup"),
        (["--seconds", "inf"], "--seconds"),
        (["--seconds", "1e12"], "--seconds"),
        (["--seconds", "-3"], "--seconds"),
        (["--min-runs", "50", "--max-runs", "10"], "--min-runs"),
    ],
)
def test_bench_timing_options_are_bounded_before_any_work(place, args, option):
    place.freeze()
    assert option in refused(cli("dav2-bench", "--cache-dir", place / "cache", *args, timeout=60))


# --- 7. tracebacks instead of one line: documents of the wrong shape ---------------------------


def test_the_json_reader_bounds_depth_without_recursion():
    in_a_string = b'{"a": "' + b"[" * 150 + b'"}'  # brackets inside a string are text, not nesting
    assert nesting_depth(in_a_string) == 1
    with pytest.raises(JsonError, match="nested 250000 levels"):
        parse_json(nested(250_000, '{"k":', "}"), "x")
    assert parse_json('{"a": [1, {"b": null}]}', "x") == {"a": [1, {"b": None}]}


BENCH_RESULTS = {
    "deep object": lambda: '{"schema": 1, "machine": ' + '{"m":' * 120_000 + "1" + "}" * 120_000 + "}",
    "cases an object": lambda: json.dumps({"schema": 1, "machine": {}, "settings": {}, "cases": {"a": 1}}),
    "case a string": lambda: json.dumps({"schema": 1, "machine": {}, "settings": {}, "cases": ["ok"]}),
    "latency in words": lambda: json.dumps(
        {
            "schema": 1,
            "machine": {"label": "m", "command": "c", "date": "d"},
            "settings": {"encoder": "vits"},
            "cases": [{"backend": "x", "precision": "fp32", "size": 518, "status": "ok", "latency_ms": "fast"}],
        }
    ),
    "machine without label": lambda: json.dumps(
        {"schema": 1, "machine": {"command": "c"}, "settings": {"encoder": "vits"}, "cases": []}
    ),
}


@pytest.mark.parametrize("case", BENCH_RESULTS)
def test_malformed_bench_results_are_one_line(place, case):
    result = place / "result.json"
    result.write_text(BENCH_RESULTS[case]())
    place.freeze()
    assert "result.json" in refused(cli("dav2-bench", "compare", result))


DA2K = {
    "nested 150000 deep": '{"a.jpg": ' + nested(150_000) + "}",
    "a list at the top": '[{"point1": [1, 2]}]',
    "pairs a number": '{"a.jpg": 7}',
    "a pair a string": '{"a.jpg": ["point1"]}',
    "a point as text": '{"a.jpg": [{"point1": "3,4", "point2": [1, 1]}]}',
    "a point of three": '{"a.jpg": [{"point1": [3, 4, 5], "point2": [1, 1]}]}',
    "a point of nulls": '{"a.jpg": [{"point1": [null, 4], "point2": [1, 1]}]}',
    "a fractional point": '{"a.jpg": [{"point1": [3.5, 4], "point2": [1, 1]}]}',
    "closer_point a list": '{"a.jpg": [{"point1": [3, 4], "point2": [1, 1], "closer_point": [1]}]}',
}


@pytest.mark.parametrize("case", DA2K)
def test_da2k_annotations_of_the_wrong_shape_are_one_line(place, case):
    (place / "images").mkdir()
    (place / "m.onnx").write_bytes(b"never opened: the annotations are checked first")
    annotations = place / "da2k.json"
    annotations.write_text(DA2K[case])
    place.freeze()
    done = cli(
        "dav2-eval", "da2k", "--annotations", annotations, "--images", place / "images", "--model", place / "m.onnx"
    )
    assert "da2k.json" in refused(done)


HF_CONFIGS = {
    "a list": [good_hf_config()],
    "backbone_config a string": good_hf_config(backbone_config="dinov2-small"),
    "hidden_size in words": good_hf_config(backbone_config={"hidden_size": "384"}),
    "hidden_size true": good_hf_config(backbone_config={"hidden_size": True}),
    "an unknown kind": good_hf_config(depth_estimation_type="disparity"),
    "a kind that is a list": good_hf_config(depth_estimation_type=["metric"]),
    "max_depth in words": good_hf_config(depth_estimation_type="metric", max_depth="twenty"),
    "neck sizes an object": good_hf_config(neck_hidden_sizes={"a": 1}),
    "patch size nested": good_hf_config(patch_size=[[14]]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", HF_CONFIGS)
def test_transformers_configs_of_the_wrong_shape_are_one_line(place, case):
    folder = hf_folder(place / "model", HF_CONFIGS[case])
    place.freeze()
    done = cli("dav2-export", "--checkpoint", folder, "--output", place / "out", "--onnx", memory=MODEL_LIMIT)
    assert "config.json" in refused(done)


@pytest.mark.parametrize(
    "spec",
    ["600,600,14,14,0.4,0.4", "600,600,14,14,nan,28", "600,600,14,14,1e999,28", "inf,600,1,1", "600,600,14,14,28.5,28"],
)
def test_intrinsics_must_be_finite_with_a_whole_pixel_size(dynamic_onnx, tiny_image, place, spec):
    place.freeze()
    done = cli(
        "dav2-run", "--model", dynamic_onnx, "--source", tiny_image, "--intrinsics", spec,
        "--format", "ply", "--save", place / "cloud.ply", memory=MODEL_LIMIT,
    )  # fmt: skip
    line = refused(done)
    assert "finite" in line or "whole pixels" in line
    assert not (place / "cloud.ply").exists()


@pytest.mark.parametrize(
    "rows, words",
    [
        ("10,10,1e250\n20,20,2\n", "outside"),
        ("10,10,1e-9\n20,20,2\n", "outside"),
        ("1e300,10,3\n20,20,2\n", "past any image"),
        ("".join(f"{i % 40},{i % 30},{1 + i % 7}\n" for i in range(2500)), "more than 2000"),
    ],
)
def test_anchors_out_of_range_are_one_line(dynamic_onnx, tiny_image, place, rows, words):
    anchors = place / "anchors.csv"
    anchors.write_text("u,v,metres\n" + rows)
    place.freeze()
    done = cli("dav2-run", "--model", dynamic_onnx, "--source", tiny_image, "--anchors", anchors, memory=MODEL_LIMIT)
    assert words in refused(done)


@pytest.mark.parametrize("suffix", [".png", ".mp4", ""])
def test_a_save_name_longer_than_the_file_system_allows(dynamic_onnx, tiny_image, place, suffix):
    place.freeze()
    target = place / ("d" * 280 + suffix)
    done = cli("dav2-run", "--model", dynamic_onnx, "--source", tiny_image, "--input-size", "28", "--save", target)
    assert "name is" in refused(done)


def test_an_output_name_with_no_room_for_its_temporary_file(tmp_path):
    with pytest.raises(Exception, match="choose a shorter name"):
        check_name_length(tmp_path / ("n" * 250 + ".png"))
    check_name_length(tmp_path / ("n" * 200 + ".png"))


def run_python_code(code: str) -> subprocess.CompletedProcess:
    """`python -c code` with this checkout's dav2 first on the path."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=default_ctrl_c,  # Ctrl-C as a terminal delivers it, however the suite was launched
    )


def test_ctrl_c_while_a_command_starts_is_one_line():
    """The handler dav2.cli installs before its imports, hit as Ctrl-C would hit it."""
    code = (
        "import os, signal, sys, time; sys.argv[0] = 'dav2-run'; import dav2.cli; "
        "os.kill(os.getpid(), signal.SIGINT); time.sleep(10)"
    )
    done = run_python_code(code)
    assert done.returncode == 130 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == ["error: interrupted (Ctrl-C) while starting; nothing was done"]


def test_ctrl_c_is_left_alone_when_dav2_is_imported_as_a_library():
    code = (
        "import signal, sys; sys.argv[0] = 'notebook'; import dav2.cli; "
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    )
    done = run_python_code(code)
    assert done.stdout.strip() == "True", done.stderr


# --- 8. wrong results or exit codes --------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "-nan", "NaN"])
def test_bench_seconds_nan_is_an_error_not_an_interruption(place, value):
    place.freeze()
    assert "--seconds" in refused(cli("dav2-bench", "--cache-dir", place / "cache", "--seconds", value))


def test_a_legacy_format_checkpoint_loads(vits_checkpoint, tmp_path):
    torch = pytest.importorskip("torch")
    from dav2.models.checkpoint import load_model

    legacy = tmp_path / "legacy.pth"
    state = {k: v.half() for k, v in torch.load(vits_checkpoint, weights_only=True).items()}
    torch.save({"model": state}, legacy, _use_new_zipfile_serialization=False)
    model, source = load_model(checkpoint=str(legacy))
    reference, _ = load_model(checkpoint=str(vits_checkpoint))
    assert source.unwrapped == ("model",)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value.half().float()), key


@pytest.mark.parametrize("name", ["two\nlines.jpg", "esc\x1b[2Jape.png", "cr\rreturn.png"])
def test_a_control_character_in_a_name_stays_on_one_line(dynamic_onnx, place, name):
    corrupt = place / name
    corrupt.write_bytes(b"not an image at all")
    place.freeze()
    done = cli("dav2-run", "--model", dynamic_onnx, "--source", corrupt, "--input-size", "28", memory=MODEL_LIMIT)
    line = refused(done)
    assert "\x1b" not in done.stderr and "\r" not in done.stderr
    assert one_line(name) in line and one_line(name) != name


def test_a_newline_in_an_annotation_path_stays_on_one_line(place):
    (place / "images").mkdir()
    (place / "m.onnx").write_bytes(b"never opened")
    annotations = place / "da2k.json"
    annotations.write_text(json.dumps({"in\nside.jpg": "not a list"}))
    place.freeze()
    done = cli(
        "dav2-eval", "da2k", "--annotations", annotations, "--images", place / "images", "--model", place / "m.onnx"
    )
    assert "in\\nside.jpg" in refused(done)


def test_limits_of_images_read_the_file_size_from_the_pixel_limit():
    assert ImageLimits(max_pixels=1_000_000).max_file_bytes == 8_000_000 + (1 << 20)
    with pytest.raises(Exception, match="not a regular file"):
        read_image("/dev/zero")
