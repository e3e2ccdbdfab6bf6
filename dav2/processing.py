"""THE pre- and post-processing of dav2: every backend and every output goes through here.

numpy and OpenCV only (no torch), so a deployment needs nothing else.

The default reproduces upstream Depth Anything V2 `infer_image` exactly:
  BGR -> RGB, /255, resize so the SHORT side reaches `input_size` keeping the aspect ratio,
  each side rounded to the nearest multiple of 14 (never below input_size), bicubic
  (cv2.INTER_CUBIC), ImageNet mean/std, CHW float32; the network output is resized back to
  the image with bilinear interpolation, align_corners=True.
A static artifact has one fixed H x W: `fixed_hw` then stretches the image to exactly that size
(aspect ratio not kept). When the image's upstream size equals the artifact's, both agree.

Limits: a dynamic artifact is asked for (H/14) x (W/14) patch tokens, and attention costs
grow with their square: a 3x640 image at input size 518 would be 518 x 110516, about 290,000
tokens and terabytes of attention. `check_tokens` refuses network sizes past DEFAULT_MAX_TOKENS
(10,000 tokens: 1400x1400, or 1036x1848 for a 16:9 frame at --input-size 1036) with one line
naming --max-tokens; `MAX_INPUT_SIZE` bounds --input-size itself. --max-tokens itself is
bounded by MAX_TOKENS_CEILING (16,384 tokens, e.g. 1792x1792) because memory grows with the
square of the tokens: attention holds heads x tokens² scores. The app's record (vits, 6 heads:
5.6 GB at 10,000 tokens) gives about 56 bytes per token², so the ceiling is about 15 GB for
vits, and 16/6 of that (40 GB) for vitl's 16 heads: the largest request any supported GPU can
hold, and a bound instead of the 10 million tokens (5.6 PB) an unbounded option allowed.

Output meaning: relative models give disparity (larger = nearer, no unit); metric models
give depth in metres (smaller = nearer).
"""

import json
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from dav2.errors import Dav2Error
from dav2.files import InputError, read_user_bytes
from dav2.jsonfile import parse_json
from dav2.vocabulary import DEFAULT_INPUT_SIZE, MEAN, PATCH_SIZE, STD

MULTIPLE_OF = PATCH_SIZE  # MEAN, STD and the patch size are declared in dav2.vocabulary
DEFAULT_MAX_TOKENS = 10_000  # patch tokens per image for dynamic artifacts (--max-tokens)
MAX_TOKENS_CEILING = 16_384  # the most --max-tokens may say (see the module docstring's arithmetic)
MAX_INPUT_SIZE = 4096  # --input-size, whatever --max-tokens says (4096 alone is 85,000 tokens)
COLORMAPS = ("spectral", "inferno", "gray")

# ColorBrewer Spectral, 11 classes, as matplotlib's "Spectral"; upstream shows depth with its reverse.
_SPECTRAL_NODES = (
    np.array(
        [
            [0x9E, 0x01, 0x42],
            [0xD5, 0x3E, 0x4F],
            [0xF4, 0x6D, 0x43],
            [0xFD, 0xAE, 0x61],
            [0xFE, 0xE0, 0x8B],
            [0xFF, 0xFF, 0xBF],
            [0xE6, 0xF5, 0x98],
            [0xAB, 0xDD, 0xA4],
            [0x66, 0xC2, 0xA5],
            [0x32, 0x88, 0xBD],
            [0x5E, 0x4F, 0xA2],
        ],
        dtype=np.float64,
    )
    / 255.0
)


def _spectral_r_lut() -> np.ndarray:
    """256x3 BGR uint8 table equal to upstream's matplotlib Spectral_r colouring.

    Built with matplotlib's own arithmetic (LinearSegmentedColormap.reversed, then
    _create_lookup_table) so every entry matches, not just approximately.
    """
    x_nodes = 1.0 - np.linspace(0.0, 1.0, len(_SPECTRAL_NODES))[::-1]
    values = _SPECTRAL_NODES[::-1]
    x = np.linspace(0.0, 1.0, 256)
    ind = np.searchsorted(x_nodes, x)[1:-1]
    distance = (x[1:-1] - x_nodes[ind - 1]) / (x_nodes[ind] - x_nodes[ind - 1])
    inner = distance[:, None] * (values[ind] - values[ind - 1]) + values[ind - 1]
    rgb = np.clip(np.concatenate([values[:1], inner, values[-1:]]), 0.0, 1.0)
    return (rgb * 255).astype(np.uint8)[:, ::-1].copy()


SPECTRAL_R_LUT = _spectral_r_lut()


# --- pre-processing -------------------------------------------------------------------------


def _constrain_to_multiple(x: float, min_val: int) -> int:
    y = int(np.round(x / MULTIPLE_OF) * MULTIPLE_OF)
    if y < min_val:
        y = int(np.ceil(x / MULTIPLE_OF) * MULTIPLE_OF)
    return y


def network_size(image_hw: tuple[int, int], input_size: int = DEFAULT_INPUT_SIZE) -> tuple[int, int]:
    """(H, W) that upstream feeds the network for an image of `image_hw` (lower-bound rule)."""
    h, w = image_hw
    scale = max(input_size / h, input_size / w)
    return _constrain_to_multiple(scale * h, input_size), _constrain_to_multiple(scale * w, input_size)


def tokens(network_hw: tuple[int, int]) -> int:
    """Patch tokens the network attends over for an input of `network_hw`."""
    return (network_hw[0] // MULTIPLE_OF) * (network_hw[1] // MULTIPLE_OF)


class TooManyTokens(Dav2Error):
    """An image whose network input would be past the token limit."""


def check_tokens(
    image_hw: tuple[int, int], input_size: int, max_tokens: int = DEFAULT_MAX_TOKENS, what: str = "the image"
) -> tuple[int, int]:
    """The network size of a dynamic artifact for `image_hw`; TooManyTokens past `max_tokens`."""
    check_max_tokens(max_tokens)
    h, w = image_hw
    if h < 1 or w < 1:
        raise TooManyTokens(f"{what} is empty ({w}x{h})")
    net_h, net_w = network_size(image_hw, input_size)
    count = tokens((net_h, net_w))
    if count > max_tokens:
        raise TooManyTokens(
            f"{what} ({w}x{h}) at --input-size {input_size} needs a {net_w}x{net_h} network input, "
            f"{count:,} patch tokens, over the limit of {max_tokens:,} (raise it with --max-tokens, "
            "or lower --input-size)"
        )
    return net_h, net_w


def check_max_tokens(max_tokens: int) -> int:
    """--max-tokens itself: from 1 to MAX_TOKENS_CEILING (memory grows with its square)."""
    if not 1 <= max_tokens <= MAX_TOKENS_CEILING:
        raise Dav2Error(
            f"--max-tokens must be from 1 to {MAX_TOKENS_CEILING:,}, not {max_tokens:,} (attention memory grows "
            "with the square of the tokens: about 15 GB for vits at the ceiling)"
        )
    return max_tokens


def round_to_multiple(size: int) -> int:
    """Nearest multiple of 14 (at least 14): the sizes a patch-14 network accepts."""
    return max(MULTIPLE_OF, int(round(size / MULTIPLE_OF)) * MULTIPLE_OF)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (grey, BGR, BGRA, 8- or 16-bit, float in 0..1) -> 3-channel BGR uint8.

    This is what cv2.imread(path, IMREAD_COLOR) does to a file, and therefore what upstream
    sees; arrays from cameras, video or the web app go through the same conversion.
    """
    if image is None or image.size == 0:
        raise ValueError("empty image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"unsupported image dtype {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def preprocess(
    bgr_image: np.ndarray, input_size: int = DEFAULT_INPUT_SIZE, fixed_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """BGR uint8 image -> (1, 3, H, W) float32 network input.

    Arithmetic in float64 as upstream does (its /255.0 promotes to float64), so the result
    matches upstream's `image2tensor` to the last float32 bit. The runtime uses the float32
    FastPreprocessor unless asked for this exact path (dav2-run --preprocess exact).
    """
    h, w = bgr_image.shape[:2]
    net_h, net_w = fixed_hw if fixed_hw is not None else network_size((h, w), input_size)
    image = cv2.cvtColor(bgr_image, cv2.COLOR_BGR2RGB) / 255.0
    image = cv2.resize(image, (net_w, net_h), interpolation=cv2.INTER_CUBIC)
    image = (image - MEAN) / STD
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None]).astype(np.float32)


# Upstream's normalisation folded into one multiply-add per channel on 0..255 values (RGB order):
# (x / 255 - mean) / std = x * SCALE + OFFSET.
NORM_SCALE = (1.0 / (255.0 * np.asarray(STD))).astype(np.float32)
NORM_OFFSET = (-np.asarray(MEAN) / np.asarray(STD)).astype(np.float32)


class FastPreprocessor:
    """`preprocess` in float32 with its work buffers kept between frames (a video's frames all
    share one size, so nothing is allocated after the first).

    Why float32 is enough: the exact path exists to be bit-equal with upstream's input tensor;
    the network cannot tell the difference: its outputs stay within the network tolerance of
    upstream's (tests/test_conformance.py), and it is several times faster
    (benchmarks/results/realtime_host_cpu2.md has the numbers). The resize runs on 0..255 values
    (bicubic is linear, so scaling before or after it is the same up to rounding), and the
    colour swap, /255 and ImageNet normalisation are one multiply-add per output plane.

    Not thread-safe: one instance per thread (the pipeline's capture stage owns one).
    """

    def __init__(self) -> None:
        self._frame: np.ndarray | None = None
        self._resized: np.ndarray | None = None

    @staticmethod
    def _reuse(buffer: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
        return buffer if buffer is not None and buffer.shape == shape else np.empty(shape, np.float32)

    def __call__(
        self,
        bgr_image: np.ndarray,
        input_size: int = DEFAULT_INPUT_SIZE,
        fixed_hw: tuple[int, int] | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """BGR uint8 image -> (1, 3, H, W) float32, written into `out` when it has that shape."""
        h, w = bgr_image.shape[:2]
        net_h, net_w = fixed_hw if fixed_hw is not None else network_size((h, w), input_size)
        self._frame = self._reuse(self._frame, (h, w, 3))
        np.copyto(self._frame, bgr_image, casting="unsafe")
        self._resized = self._reuse(self._resized, (net_h, net_w, 3))
        cv2.resize(self._frame, (net_w, net_h), dst=self._resized, interpolation=cv2.INTER_CUBIC)
        shape = (1, 3, net_h, net_w)
        if out is None or out.shape != shape or out.dtype != np.float32:
            out = np.empty(shape, np.float32)
        for channel, plane in enumerate(cv2.split(self._resized)[::-1]):  # BGR planes -> RGB order
            np.multiply(plane, NORM_SCALE[channel], out=out[0, channel])
            out[0, channel] += NORM_OFFSET[channel]
        return out


def preprocess_fast(
    bgr_image: np.ndarray, input_size: int = DEFAULT_INPUT_SIZE, fixed_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """`preprocess` in float32 (see FastPreprocessor); a one-off call allocates its buffers."""
    return FastPreprocessor()(bgr_image, input_size, fixed_hw)


def aspect_change(image_hw: tuple[int, int], fixed_hw: tuple[int, int]) -> float:
    """How much stretching an image to a static artifact's `fixed_hw` distorts it: the relative
    change of its width/height ratio (0.0: same shape; 0.2: 20 % wider or narrower)."""
    image_ratio = image_hw[1] / image_hw[0]
    fixed_ratio = fixed_hw[1] / fixed_hw[0]
    return abs(fixed_ratio / image_ratio - 1.0)


# --- post-processing ------------------------------------------------------------------------


def _align_corners_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if n_out == 1 or n_in == 1:
        src = np.zeros(n_out, dtype=np.float64)
    else:
        src = np.arange(n_out, dtype=np.float64) * ((n_in - 1) / (n_out - 1))
    lo = np.clip(np.floor(src).astype(np.int64), 0, n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo).astype(np.float32)
    return lo, hi, frac


def resize_bilinear_align_corners(depth: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) -> out_hw, as torch F.interpolate(mode="bilinear", align_corners=True).

    OpenCV's resize uses half-pixel centres (align_corners=False) and remap quantises
    positions to 1/32 pixel, so neither reproduces upstream; this separable version does.
    """
    depth = depth.astype(np.float32, copy=False)
    lo, hi, frac = _align_corners_weights(depth.shape[0], out_hw[0])
    rows = depth[lo] * (1 - frac)[:, None] + depth[hi] * frac[:, None]
    lo, hi, frac = _align_corners_weights(depth.shape[1], out_hw[1])
    return rows[:, lo] * (1 - frac)[None, :] + rows[:, hi] * frac[None, :]


def postprocess(network_output: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Network output (H, W) or (1, H, W) -> float32 depth at the original image size."""
    depth = np.asarray(network_output)
    if depth.ndim == 3:
        depth = depth[0]
    return resize_bilinear_align_corners(depth, image_hw)


# --- visualisation ---------------------------------------------------------------------------


def normalize_to_uint8(depth: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Min-max (or the given range) to 0..255, as upstream's run.py does before colouring."""
    lo, hi = value_range if value_range is not None else (float(depth.min()), float(depth.max()))
    scaled = (depth - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def colorize(depth: np.ndarray, cmap: str = "spectral", value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Depth -> BGR uint8 picture. 'spectral' is upstream's Spectral_r; 'gray' repeats the channel."""
    index = normalize_to_uint8(depth, value_range)
    if cmap == "spectral":
        return SPECTRAL_R_LUT[index]
    if cmap == "inferno":
        return cv2.applyColorMap(index, cv2.COLORMAP_INFERNO)
    if cmap == "gray":
        return cv2.cvtColor(index, cv2.COLOR_GRAY2BGR)
    raise ValueError(f"unknown colour map {cmap!r}; choose one of {', '.join(COLORMAPS)}")


def side_by_side(bgr_image: np.ndarray, depth_bgr: np.ndarray, gap: int = 10) -> np.ndarray:
    """Image and coloured depth next to each other with a white gap, as upstream's --pred-only off."""
    h = bgr_image.shape[0]
    separator = np.full((h, gap, 3), 255, dtype=np.uint8)
    return np.concatenate([bgr_image, separator, depth_bgr], axis=1)


# --- 16-bit PNG with its scale in the file ---------------------------------------------------

PNG16_KEY = "dav2"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png16(depth: np.ndarray, unit: str) -> bytes:
    """Depth -> 16-bit grey PNG whose tEXt chunk 'dav2' holds the scale to undo it.

    value = offset + scale * pixel, with the depth's min at 0 and max at 65535, so the full
    16-bit range is used whatever the unit; decode_png16 inverts it.
    """
    lo, hi = float(depth.min()), float(depth.max())
    scale = (hi - lo) / 65535.0 if hi > lo else 1.0
    pixels = np.round((depth - lo) / scale).clip(0, 65535).astype(np.uint16)
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise RuntimeError("OpenCV could not encode the 16-bit PNG")
    info = json.dumps({"offset": lo, "scale": scale, "unit": unit}, sort_keys=True)
    text = _png_chunk(b"tEXt", PNG16_KEY.encode() + b"\0" + info.encode())
    png = encoded.tobytes()
    end_of_ihdr = 8 + 25  # signature, then the IHDR chunk (13 data bytes + 12 framing)
    return png[:end_of_ihdr] + text + png[end_of_ihdr:]


MAX_PNG16_BYTES = 512 * 1024 * 1024  # a file path is measured before it is read
MAX_PNG16_PIXELS = 200_000_000  # refused from the header, before decoding (a small PNG can hold a huge image)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Png16Error(Dav2Error, ValueError):
    """A file or bytes decode_png16 cannot read (a user error, and a ValueError as before)."""


def decode_png16(source: bytes | str | os.PathLike) -> tuple[np.ndarray, dict]:
    """A PNG written by encode_png16 -> (float32 depth, {'offset', 'scale', 'unit'}).

    `source` is the file's bytes or its path. A path is measured before it is read (a regular
    file of at most MAX_PNG16_BYTES), and the image size in the header is checked against
    MAX_PNG16_PIXELS before decoding; Png16Error says what is wrong in one line."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, what = bytes(source), "these bytes"
    else:
        data, what = _read_png16_file(Path(source)), str(source)
    if not data.startswith(PNG_SIGNATURE):
        raise Png16Error(f"{what}: not a PNG file")
    info = None
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR" and len(body) >= 8:
            width, height = struct.unpack(">II", body[:8])
            if width * height > MAX_PNG16_PIXELS:
                raise Png16Error(f"{what}: a {width}x{height} PNG is past the limit of {MAX_PNG16_PIXELS:,} pixels")
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            if key == PNG16_KEY.encode():
                info = _png16_info(value, what)
        pos += 12 + length
    if info is None:
        raise Png16Error(f"{what}: this PNG has no dav2 scale chunk: it was not written by dav2 --format png16")
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise Png16Error(f"{what}: not a readable 16-bit grey PNG")
    return (info["offset"] + info["scale"] * pixels.astype(np.float64)).astype(np.float32), info


def _png16_info(text: bytes, what: str) -> dict:
    """The scale chunk: a JSON object with finite `offset` and `scale` (dav2.jsonfile: bounded)."""
    try:
        info = parse_json(text, f"{what}'s dav2 scale chunk")
    except Dav2Error as exc:
        raise Png16Error(str(exc)) from None
    if not isinstance(info, dict) or not all(
        isinstance(info.get(key), int | float) and not isinstance(info.get(key), bool) and np.isfinite(info[key])
        for key in ("offset", "scale")
    ):
        raise Png16Error(f"{what}: the dav2 scale chunk needs finite numbers 'offset' and 'scale'")
    return info


def _read_png16_file(path: Path) -> bytes:
    """The file's bytes through dav2.files.read_user_bytes: a regular file (not a folder, a device
    or a FIFO that would block) of at most MAX_PNG16_BYTES."""
    try:
        return read_user_bytes(path, MAX_PNG16_BYTES, "16-bit PNG")
    except InputError as exc:
        raise Png16Error(str(exc)) from None


class ColorRange:
    """The depth range used to colour a stream of frames.

    Upstream colours each picture between its own min and max, which makes video flicker: one
    near object entering the frame re-colours everything. For videos and live sources the
    range follows the frames' min/max through an exponential moving average (`smoothing` is
    the weight of the past), and `fixed` pins it. For single images (`smoothing=0`) it is the
    picture's own range, as upstream.
    """

    def __init__(self, fixed: tuple[float, float] | None = None, smoothing: float = 0.0):
        if fixed is not None and not fixed[0] < fixed[1]:
            raise ValueError(f"colour range {fixed} must have min < max")
        self.fixed = fixed
        self.smoothing = smoothing
        self.current: tuple[float, float] | None = None

    def update(self, depth: np.ndarray) -> tuple[float, float]:
        if self.fixed is not None:
            return self.fixed
        low, high = float(depth.min()), float(depth.max())
        if self.current is None or self.smoothing <= 0:
            self.current = (low, high)
        else:
            a = self.smoothing
            self.current = (a * self.current[0] + (1 - a) * low, a * self.current[1] + (1 - a) * high)
        return self.current
