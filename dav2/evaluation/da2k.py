"""DA-2K pairwise relative-depth accuracy.

An annotation file maps image paths (relative to the images folder) to point pairs:
  {"indoor/0001.jpg": [{"point1": [row, col], "point2": [row, col], "closer_point": "point1"}, ...]}
Points are [row, col] in the original image's pixels. `point1` is the closer point unless
`closer_point` says otherwise. A pair is right when the model orders it the same way:
disparity (relative models) is larger for the nearer point, metres (metric models) smaller.
The scene type of an image is the first folder of its path.

The file is read with dav2.jsonfile (size and depth bounded) and its whole shape is checked
when loaded, so a wrong type anywhere is one line before any model runs.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np

from dav2.errors import Dav2Error, quote
from dav2.jsonfile import JsonError, expect, finite_number, read_json
from dav2.vocabulary import ModelKind

Predict = Callable[[str], np.ndarray]


def load_annotations(path: str | Path) -> dict[str, list[dict]]:
    """{image: [pair, ...]} from a DA-2K annotation file, every pair checked (`check_pair`)."""
    data = read_json(path, "DA-2K annotations")
    where = f"DA-2K annotations {quote(path)}"
    if not isinstance(data, dict):
        raise JsonError(f"{where}: expected {{image path: [pairs]}}, not {type(data).__name__}")
    for image, pairs in data.items():
        expect(pairs, list, f"{where}: the pairs of {quote(image)}")
        for number, pair in enumerate(pairs, start=1):
            check_pair(pair, f"{where}: pair {number} of {quote(image)}")
    return data


def check_pair(pair: object, what: str) -> None:
    """A pair is {"point1": [row, col], "point2": [row, col], "closer_point": "point1"|"point2"}."""
    expect(pair, dict, what)
    for key in ("point1", "point2"):
        if key not in pair:
            raise JsonError(f"{what} lacks {key}")
        point = expect(pair[key], list, f"{what}: {key}")
        if len(point) != 2:
            raise JsonError(f"{what}: {key} must be [row, col], not {len(point)} values")
        for value in point:
            number = finite_number(value, f"{what}: {key}")
            if number != int(number):
                raise JsonError(f"{what}: {key} must hold whole pixel numbers, not {value}")
    closer = pair.get("closer_point", "point1")
    if closer not in ("point1", "point2"):
        raise JsonError(f"{what}: closer_point must be point1 or point2, not {str(closer)[:40]!r}")


def scene_of(image: str) -> str:
    parts = Path(image).parts
    return parts[0] if len(parts) > 1 else "(top level)"


def ordered_points(pair: dict) -> tuple[tuple[int, int], tuple[int, int]]:
    """(closer, farther) as (row, col)."""
    try:
        first, second = tuple(pair["point1"]), tuple(pair["point2"])
    except KeyError as exc:
        raise Dav2Error(f"a DA-2K pair lacks {exc}") from exc
    closer = pair.get("closer_point", "point1")
    if closer not in ("point1", "point2"):
        raise Dav2Error(f"closer_point must be point1 or point2, not {closer!r}")
    return (first, second) if closer == "point1" else (second, first)


def value_at(depth: np.ndarray, point: tuple[int, int], image: str) -> float:
    row, col = int(point[0]), int(point[1])
    if not (0 <= row < depth.shape[0] and 0 <= col < depth.shape[1]):
        raise Dav2Error(f"{image}: point [{row}, {col}] is outside the {depth.shape[0]}x{depth.shape[1]} image")
    return float(depth[row, col])


def nearer_first(depth: np.ndarray, near: tuple, far: tuple, kind: str, image: str) -> bool:
    """Does this depth map put `near` in front of `far`?"""
    a, b = value_at(depth, near, image), value_at(depth, far, image)
    return a > b if kind == ModelKind.RELATIVE else a < b


def da2k_accuracy(annotations: dict[str, list[dict]], predict: Predict, kind: str) -> dict:
    """Overall and per-scene share of pairs ordered right."""
    scenes: dict[str, list[int]] = {}
    for image, pairs in annotations.items():
        depth = predict(image)
        counts = scenes.setdefault(scene_of(image), [0, 0])
        for pair in pairs:
            near, far = ordered_points(pair)
            counts[0] += nearer_first(depth, near, far, kind, image)
            counts[1] += 1
    return summarize(scenes)


def da2k_agreement(
    annotations: dict[str, list[dict]], predict_a: Predict, kind_a: str, predict_b: Predict, kind_b: str
) -> dict:
    """Share of pairs two models order the same way (e.g. INT8 against FP32), no labels needed."""
    scenes: dict[str, list[int]] = {}
    for image, pairs in annotations.items():
        depth_a, depth_b = predict_a(image), predict_b(image)
        counts = scenes.setdefault(scene_of(image), [0, 0])
        for pair in pairs:
            near, far = ordered_points(pair)
            same = nearer_first(depth_a, near, far, kind_a, image) == nearer_first(depth_b, near, far, kind_b, image)
            counts[0] += same
            counts[1] += 1
    return summarize(scenes)


def summarize(scenes: dict[str, list[int]]) -> dict:
    right = sum(c[0] for c in scenes.values())
    total = sum(c[1] for c in scenes.values())
    if total == 0:
        raise Dav2Error("the annotations hold no point pairs")
    return {
        "accuracy": right / total,
        "pairs": total,
        "scenes": {name: {"accuracy": c[0] / c[1], "pairs": c[1]} for name, c in sorted(scenes.items()) if c[1]},
    }
