"""Host preprocessing time per frame, by path: `python -m dav2.benchmarks.host [VIDEO]`.

The numbers behind benchmarks/results/realtime_host_cpu2.md: one 1280x720 frame (the first
of VIDEO, resized, or a rendered scene) prepared for vits at 518 (a 518x924 network input),
median of `runs` calls after warm-up, for each way the runtime can feed a backend
(dav2.runtime.feed): exact float64, float32 with reused buffers, and uint8 bytes for
artifacts exported with --input uint8 (with and without the in-graph resize).
"""

import argparse
import json
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from dav2 import processing

FRAME_HW = (720, 1280)


@dataclass
class HostTiming:
    path: str
    median_ms: float
    p90_ms: float
    max_diff_to_exact: float | None  # normalised units (float paths only)


def median_ms(work, runs: int) -> tuple[float, float]:
    for _ in range(3):
        work()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90))


def camera_frame(video: str | None) -> np.ndarray:
    """A real 1280x720 BGR frame when a video is given, else the rendered sample scene."""
    if video:
        capture = cv2.VideoCapture(video)
        ok, frame = capture.read()
        capture.release()
        if ok:
            return cv2.resize(frame, FRAME_HW[::-1], interpolation=cv2.INTER_AREA)
    from dav2.sample import render_sample

    return cv2.resize(render_sample()[0], FRAME_HW[::-1])


def measure(frame: np.ndarray, input_size: int = 518, runs: int = 30) -> list[HostTiming]:
    net_hw = processing.network_size(frame.shape[:2], input_size)
    exact = processing.preprocess(frame, input_size)
    fast = processing.FastPreprocessor()
    out = fast(frame, input_size)
    results = [
        HostTiming(
            "exact float64 (processing.preprocess)",
            *median_ms(lambda: processing.preprocess(frame, input_size), runs),
            0.0,
        ),
        HostTiming(
            "float32, reused buffers (FastPreprocessor)",
            *median_ms(lambda: fast(frame, input_size, out=out), runs),
            float(np.abs(out - exact).max()),
        ),
        HostTiming(
            "uint8, host resize to the network size (--input uint8)",
            *median_ms(lambda: cv2.resize(frame, net_hw[::-1], interpolation=cv2.INTER_CUBIC)[None], runs),
            None,
        ),
        HostTiming(
            "uint8, frame bytes as they are (--input uint8 --camera-size 1280x720)",
            *median_ms(lambda: np.ascontiguousarray(frame)[None], runs),
            None,
        ),
    ]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", default=None)
    parser.add_argument("--input-size", type=int, default=518)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    frame = camera_frame(args.video)
    for timing in measure(frame, args.input_size, args.runs):
        print(json.dumps(asdict(timing)))


if __name__ == "__main__":
    main()
