"""processing.py: upstream's resize rule, align-corners output resize, colours, 16-bit PNG."""

import struct

import cv2
import numpy as np
import pytest

from conftest import reference_cases
from dav2 import processing
from dav2.errors import Dav2Error


@pytest.mark.parametrize("case", reference_cases())
def test_network_size_is_upstreams(case):
    assert list(processing.network_size(tuple(case["image_hw"]), case["input_size"])) == case["network_input_shape"][2:]


@pytest.mark.parametrize(
    "hw,size,expected",
    [
        ((480, 640), 518, (518, 686)),
        ((640, 480), 518, (686, 518)),
        ((518, 518), 518, (518, 518)),
        ((100, 1000), 518, (518, 5180)),
        ((1080, 1920), 364, (364, 644)),
    ],
)
def test_network_size_keeps_aspect_and_multiples_of_14(hw, size, expected):
    assert processing.network_size(hw, size) == expected


def test_fixed_shape_mode_stretches_to_the_artifact_size():
    image = np.random.default_rng(0).integers(0, 255, (425, 640, 3), dtype=np.uint8)
    assert processing.preprocess(image, fixed_hw=(518, 518)).shape == (1, 3, 518, 518)
    # when the artifact's size is the upstream size, both modes agree exactly
    np.testing.assert_array_equal(processing.preprocess(image, 518), processing.preprocess(image, fixed_hw=(518, 784)))


def test_output_resize_matches_torch_align_corners():
    torch = pytest.importorskip("torch")
    depth = np.random.default_rng(1).random((37, 53), dtype=np.float32) * 5
    for out_hw in ((425, 640), (37, 53), (20, 30), (1, 7)):
        ours = processing.resize_bilinear_align_corners(depth, out_hw)
        theirs = torch.nn.functional.interpolate(
            torch.from_numpy(depth)[None, None], out_hw, mode="bilinear", align_corners=True
        )[0, 0].numpy()
        assert ours.shape == out_hw
        assert np.abs(ours - theirs).max() < 1e-4  # torch rounds sampling positions in float32


def test_spectral_r_matches_matplotlib_endpoints_and_middle():
    lut = processing.SPECTRAL_R_LUT  # BGR
    assert tuple(lut[0]) == (0xA2, 0x4F, 0x5E)  # Spectral_r starts at Spectral's last colour, 5e4fa2
    assert tuple(lut[255]) == (0x42, 0x01, 0x9E)  # and ends at its first, 9e0142
    assert tuple(lut[128]) == (189, 254, 254)  # matplotlib 3.10: cm(128) * 255 -> RGB 254, 254, 189


@pytest.mark.parametrize("cmap", processing.COLORMAPS)
def test_colorize_shapes_and_range(cmap):
    depth = np.linspace(0, 10, 300, dtype=np.float32).reshape(15, 20)
    picture = processing.colorize(depth, cmap)
    assert picture.shape == (15, 20, 3) and picture.dtype == np.uint8
    fixed = processing.colorize(depth, cmap, value_range=(0, 20))
    assert not np.array_equal(picture, fixed)


def test_png16_round_trip_keeps_values_within_half_a_step():
    depth = np.random.default_rng(2).random((48, 64), dtype=np.float32) * 80 + 0.5
    data = processing.encode_png16(depth, "m")
    decoded, info = processing.decode_png16(data)
    assert info["unit"] == "m"
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    assert np.abs(decoded - depth).max() <= info["scale"] / 2 + 1e-5


def test_png16_decodes_bytes_or_a_path(tmp_path):
    depth = np.linspace(0.5, 9.0, 48 * 64, dtype=np.float32).reshape(48, 64)
    data = processing.encode_png16(depth, "m")
    path = tmp_path / "d.png"
    path.write_bytes(data)
    from_bytes, info = processing.decode_png16(data)
    for source in (path, str(path)):
        decoded, same = processing.decode_png16(source)
        assert same == info and np.array_equal(decoded, from_bytes)


@pytest.mark.parametrize("case", ["missing", "folder", "not_png", "huge", "not16"])
def test_png16_refuses_what_it_cannot_read_in_one_line(tmp_path, case):
    path = tmp_path / "d.png"
    if case == "folder":
        path.mkdir()
    elif case == "not_png":
        path.write_bytes(b"GIF89a not a png")
    elif case == "huge":  # a 30000x30000 header with dav2's chunk: refused before decoding
        real = processing.encode_png16(np.ones((4, 4), np.float32), "m")
        ihdr = struct.pack(">II", 30000, 30000) + real[16 + 8 : 16 + 13]
        path.write_bytes(real[:8] + processing._png_chunk(b"IHDR", ihdr) + real[33:])
    elif case == "not16":
        ok, plain = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
        text = processing._png_chunk(b"tEXt", b'dav2\0{"offset": 0, "scale": 1, "unit": "m"}')
        path.write_bytes(plain.tobytes()[:33] + text + plain.tobytes()[33:])
    message = {
        "missing": "No such file",
        "folder": "not a file",
        "not_png": "not a PNG",
        "huge": "past the limit",
    }
    with pytest.raises(Dav2Error, match=message.get(case, "not a readable 16-bit grey PNG")) as caught:
        processing.decode_png16(path)
    assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)


def test_png16_without_scale_chunk_is_refused():
    ok, plain = cv2.imencode(".png", np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError, match="no dav2 scale"):
        processing.decode_png16(plain.tobytes())


@pytest.mark.parametrize(
    "image",
    [
        np.full((8, 8), 200, np.uint8),
        np.full((8, 8, 4), 200, np.uint8),
        np.full((8, 8, 3), 51400, np.uint16),
        np.full((8, 8, 1), 200, np.uint8),
    ],
    ids=["grey", "bgra", "16-bit", "one-channel"],
)
def test_to_bgr8_handles_grey_alpha_and_16_bit(image):
    bgr = processing.to_bgr8(image)
    assert bgr.shape == (8, 8, 3) and bgr.dtype == np.uint8
    assert bgr[0, 0, 0] == 200


def test_preprocess_is_imagenet_normalised_rgb():
    image = np.zeros((28, 28, 3), np.uint8)
    image[..., 2] = 255  # red in BGR
    tensor = processing.preprocess(image, 28)
    np.testing.assert_allclose(tensor[0, :, 5, 5], [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6)
