"""The run loop: source -> preprocess -> backend -> postprocess -> sinks, timed per stage.

Sequential and explicit, like the ONNX Runtime / OpenVINO samples: one frame at a time,
every stage timed with perf_counter, nothing dropped.
"""

import time
from collections.abc import Callable

from dav2 import processing
from dav2.runtime.backends.base import Backend
from dav2.runtime.fps import FpsMeter
from dav2.runtime.sinks import WindowSink
from dav2.runtime.sources import Source


def run(
    source: Source,
    backend: Backend,
    sinks: list,
    input_size: int | None = None,
    max_frames: int | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> dict:
    """Process every frame of `source`; return the FPS summary. Sinks are closed either way."""
    input_size = input_size or backend.default_input_size
    fixed_hw = backend.fixed_hw
    meter = FpsMeter()
    windows = [sink for sink in sinks if isinstance(sink, WindowSink)]
    success = False
    try:
        meter.start()
        frames = iter(source)
        while max_frames is None or meter.frames < max_frames:
            t0 = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                break
            t1 = time.perf_counter()
            tensor = processing.preprocess(frame.image, input_size, fixed_hw)
            t2 = time.perf_counter()
            network_depth = backend.infer(tensor)
            t3 = time.perf_counter()
            depth = processing.postprocess(network_depth, frame.image.shape[:2])
            t4 = time.perf_counter()
            for window in windows:
                window.overlay = meter.live_text()
            for sink in sinks:
                sink.write(frame, depth)
            t5 = time.perf_counter()
            meter.add(
                {
                    "read": (t1 - t0) * 1000,
                    "preprocess": (t2 - t1) * 1000,
                    "inference": (t3 - t2) * 1000,
                    "postprocess": (t4 - t3) * 1000,
                    "write": (t5 - t4) * 1000,
                }
            )
            if on_frame is not None:
                on_frame(meter.frames)
            if any(window.quit for window in windows):
                break
        success = True
    except KeyboardInterrupt:
        success = True  # what was processed is kept; the summary still prints
    finally:
        for sink in sinks:
            sink.close(success)
        source.close()
    return meter.summary()
