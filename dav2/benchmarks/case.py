"""One benchmark case, run in its own process: `python -m dav2.benchmarks.case SPEC.json`
(a benchmarks.spec.CaseSpec, written by the runner).

A process per case keeps the numbers honest: peak memory is this case's own, thread pools
and caches of one library do not slow the next, and a backend that crashes costs one row.
The result is printed as one JSON object on the last line of standard output.

What is timed (all in milliseconds, batch 1):
- latency: backend.infer() on one real preprocessed image, after warm-up runs; as many runs
  as fit in `seconds` (within min/max runs);
- split: preprocessing of the real image (processing.preprocess), the backend's own
  host->device / inference / device->host split where it has one, postprocessing to the
  image's size (processing.postprocess);
- throughput: frames per second with several frames in flight where the backend can
  (OpenVINO AsyncInferQueue with the THROUGHPUT hint; PyTorch with batch 4); static batch-1
  artifacts report none;
- accuracy: the backend's outputs on the held-out images against the PyTorch FP32
  references written by the torch FP32 case of the same run;
- pipeline (dav2-bench --pipeline VIDEO): the video through dav2-run's threaded pipeline on the
  same open backend, right after the standalone timing (dav2.benchmarks.pipeline).
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from dav2 import accuracy, processing
from dav2.benchmarks.spec import CaseSpec
from dav2.benchmarks.stats import fps, latency_stats, runs_for
from dav2.media import read_image
from dav2.sample import render_sample
from dav2.vocabulary import BackendName, Precision


def load_image(spec: CaseSpec) -> np.ndarray:
    if spec.image == "sample":
        return render_sample()[0]
    if spec.image_is_video:  # --model with --pipeline: the video's first frame
        import cv2

        capture = cv2.VideoCapture(spec.image)
        ok, frame = capture.read()
        capture.release()
        if ok:
            return frame
        return render_sample()[0]
    return read_image(Path(spec.image))


def open_case_backend(spec: CaseSpec, hint: str = "LATENCY"):
    from dav2.runtime.backends import open_backend

    return open_backend(spec.artifact, spec.case.backend, threads=spec.threads, device=spec.device, hint=hint)


def time_runs(infer, tensor: np.ndarray, spec: CaseSpec) -> list[float]:
    for _ in range(spec.warmup):
        infer(tensor)
    start = time.perf_counter()
    infer(tensor)
    first = (time.perf_counter() - start) * 1000.0
    times = []
    for _ in range(runs_for(first, spec.seconds, spec.min_runs, spec.max_runs)):
        start = time.perf_counter()
        infer(tensor)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def torch_fp16(backend):
    """The torch backend's model in half precision on CUDA (inputs cast inside)."""
    import torch

    backend.model.half()

    def infer(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(backend.device).half()
            y = backend.model(x)
            torch.cuda.synchronize()
            return y.float().cpu().numpy()

    return infer


def measure_split(backend, infer, image: np.ndarray, tensor: np.ndarray, prepare) -> dict[str, float]:
    pre, post, parts = [], [], {}
    for _ in range(5):
        start = time.perf_counter()
        prepare(image)
        pre.append((time.perf_counter() - start) * 1000.0)
        depth = infer(tensor)
        for key, value in backend.last_timing.items():
            parts.setdefault(key, []).append(value)
        start = time.perf_counter()
        processing.postprocess(depth, image.shape[:2])
        post.append((time.perf_counter() - start) * 1000.0)
    split = {"preprocess": float(np.median(pre)), "postprocess": float(np.median(post))}
    for key in ("h2d_ms", "infer_ms", "d2h_ms"):
        if key in parts:
            split[key.removesuffix("_ms")] = float(np.median(parts[key]))
    return split


def measure_throughput(spec: CaseSpec, backend, tensor: np.ndarray) -> tuple[float | None, str]:
    if spec.case.backend == BackendName.OPENVINO:
        frames = [tensor] * 8
        with open_case_backend(spec, hint="THROUGHPUT") as queue_backend:
            queue_backend.infer_many(frames[:2])  # warm-up
            start = time.perf_counter()
            queue_backend.infer_many(frames)
            seconds = time.perf_counter() - start
        return len(frames) / seconds, "AsyncInferQueue, THROUGHPUT hint, 8 frames"
    if spec.case.backend == BackendName.TORCH and spec.case.precision == Precision.FP32:
        batch = np.repeat(tensor, 4, axis=0)
        times = time_runs(backend.infer, batch, spec.with_runs(min_runs=2, max_runs=10, warmup=1))
        return fps(float(np.median(times)), 4), "batch 4"
    return None, "batch 1 only (static artifact)"


def accuracy_columns(spec: CaseSpec, infer) -> dict | None:
    """AbsRel and δ1 against the PyTorch FP32 references (relative depth: the bench builds its
    artifacts from the relative checkpoint, runner.checkpoint_for)."""
    work = Path(spec.work_dir)
    inputs = sorted(work.glob(f"input_{spec.case.size}_*.npy"))
    if not inputs:
        return None
    per_image = []
    for path in inputs:
        tensor = np.load(path)
        depth = infer(tensor)[0]
        ref_path = work / path.name.replace("input_", "ref_")
        if spec.writes_reference:
            np.save(ref_path, depth)
        if not ref_path.is_file():
            return None
        per_image.append(accuracy.compare(depth, np.load(ref_path), "relative"))
    return accuracy.summarize(per_image)


def peak_host_mb() -> float | None:
    """This process's peak resident memory. Linux's VmHWM starts afresh at exec; ru_maxrss
    would also count the parent's memory at fork time, so it is only the fallback."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource  # Unix only: Windows has neither /proc nor this module
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_device_mb(spec: CaseSpec) -> float | None:
    if spec.case.backend == BackendName.TORCH and spec.device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 1e6
    return None


def timing_input(spec: CaseSpec, backend, image: np.ndarray):
    """(tensor, preparation) for timing. Built artifacts take the runner's square tensor and
    the exact preprocessing; an artifact measured as it is (--model) gets the timing image
    prepared for its own input (shape, float32 or uint8) the way dav2-run prepares videos."""
    if not spec.own_input:
        size = spec.case.size
        tensor = np.load(Path(spec.work_dir) / f"timing_{size}.npy")
        return tensor, lambda frame: processing.preprocess(frame, fixed_hw=(size, size))
    from dav2.runtime.feed import Feeder

    feeder = Feeder(backend, backend.default_input_size, "float32")
    return np.array(feeder(image)), lambda frame: np.array(feeder(frame))


def run_case(spec: CaseSpec) -> dict:
    image = load_image(spec)
    with open_case_backend(spec) as backend:
        tensor, prepare = timing_input(spec, backend, image)
        half_torch = spec.case.backend == BackendName.TORCH and spec.case.precision == Precision.FP16
        infer = torch_fp16(backend) if half_torch else backend.infer
        times = time_runs(infer, tensor, spec)
        latency = latency_stats(times)
        split, throughput, mode = None, None, "not measured (dav2-bench pick --quick)"
        if spec.details:
            split = measure_split(backend, infer, image, tensor, prepare)
            throughput, mode = measure_throughput(spec, backend, tensor)
        measured_accuracy = accuracy_columns(spec, infer)
        detail = backend.describe()
        pipeline = pipeline_columns(spec, backend, fps(latency["median"]))
    return {
        "latency_ms": latency,
        "fps": fps(latency["median"]),
        "throughput_fps": throughput,
        "throughput_mode": mode,
        "split_ms": split,
        "accuracy": measured_accuracy,
        "peak_host_mb": peak_host_mb(),
        "peak_device_mb": peak_device_mb(spec),
        "backend_detail": detail,
        **pipeline,
    }


def pipeline_columns(spec: CaseSpec, backend, standalone_fps: float) -> dict:
    """{"pipeline": ...} when the spec asks for a pipeline pass, else {}.

    PyTorch FP16 is timed through a half-precision wrapper the pipeline does not use, so it
    gets the reason instead of a number that would belong to another precision."""
    wanted = spec.pipeline
    if wanted is None:
        return {}
    if spec.case.backend == BackendName.TORCH and spec.case.precision == Precision.FP16:
        return {"pipeline": {"skipped": "the pipeline runs PyTorch in FP32 only"}}
    from dav2.benchmarks.pipeline import measure_pipeline

    result = measure_pipeline(backend, wanted.video, wanted.max_frames, wanted.output)
    if result.end_to_end_fps:
        result.ratio_to_standalone = result.end_to_end_fps / standalone_fps
    return {"pipeline": result.as_dict()}


def main() -> None:
    result = run_case(CaseSpec.read(Path(sys.argv[1])))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
