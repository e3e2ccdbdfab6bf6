"""OpenVINO backend: an IR (.xml/.bin) compiled for CPU, GPU, NPU or AUTO.

The precision the artifact asks for is applied: an FP32 IR runs with the f32 inference
precision hint, because OpenVINO would otherwise run it in BF16 on CPUs that have BF16; FP16
and INT8 IRs run in the device's own reduced precision. `hint` is OpenVINO's performance hint:
LATENCY for one frame at a time (cameras), THROUGHPUT for many requests in flight, which
`infer_many` keeps busy (folders, videos, benchmarks).

The IR is checked against its sidecar before it is compiled (`base.check_graph`): its inputs
and outputs, the patch-embedding width (the encoder) among its constants, and the op that
makes the depth (relative or metric). OpenVINO's own errors are reported by their cause, not
by the "Exception from src/...cpp" headers that precede it (`base.error_reason`).
"""

import contextlib
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dav2 import optional
from dav2.errors import Dav2Error
from dav2.metadata import ArtifactMetadata, OpenVinoRecord
from dav2.runtime.backends.base import (
    Backend,
    GraphFacts,
    TensorFacts,
    check_graph,
    check_io,
    error_reason,
    is_patch_kernel,
    kind_from_tail,
    with_graph_facts,
)
from dav2.vocabulary import INPUT_NAME, OUTPUT_NAME, ArtifactFormat, ModelKind

HINTS = ("LATENCY", "THROUGHPUT")


def metadata_from_model(path: Path, model) -> ArtifactMetadata:
    """Best-effort metadata for an IR that came without a dav2 sidecar."""
    shape = model.inputs[0].get_partial_shape()
    dynamic = shape.is_dynamic
    return ArtifactMetadata(
        artifact=path.name,
        format=ArtifactFormat.OPENVINO,
        encoder=None,
        kind=ModelKind.RELATIVE,
        precision=None,
        dynamic=dynamic,
        input_shape=None if dynamic else [int(d) for d in shape.to_shape()],
        input_name=model.inputs[0].any_name if model.inputs[0].get_names() else INPUT_NAME,
        output_name=model.outputs[0].any_name if model.outputs[0].get_names() else OUTPUT_NAME,
        from_sidecar=False,
    )


def port_facts(port) -> TensorFacts:
    shape = port.get_partial_shape()
    dims = None if shape.rank.is_dynamic else tuple(d.get_length() if d.is_static else None for d in shape)
    return TensorFacts(tuple(sorted(port.get_names())), str(np.dtype(port.get_element_type().to_dtype())), dims)


def graph_facts(model) -> GraphFacts:
    """The IR's inputs and outputs, patch-embedding widths among its constants, output op."""
    widths = frozenset(
        int(op.get_output_shape(0)[0])
        for op in model.get_ops()
        if op.get_type_name() == "Constant" and is_patch_kernel(list(op.get_output_shape(0)))
    )
    kind = None
    if model.outputs:

        def op_of(node) -> tuple[str, list] | None:
            return node.get_type_name(), [value.get_node() for value in node.input_values()]

        kind = kind_from_tail(op_of, model.outputs[0].get_node())
    inputs = tuple(port_facts(port) for port in model.inputs)
    return GraphFacts(inputs, tuple(port_facts(port) for port in model.outputs), widths, kind)


def finished_output(request) -> np.ndarray:
    """A copy of the output of `request` once it has finished (wait() releases the GIL)."""
    request.wait()
    return np.array(request.get_output_tensor(0).data)


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(
        self,
        path: Path,
        metadata: ArtifactMetadata | None,
        device: str = "CPU",
        hint: str = "LATENCY",
        threads: int = 0,
        inference_precision: str | None = None,
    ):
        """`inference_precision` overrides the artifact's recorded hint (the export's parity
        check runs a new IR before its sidecar exists)."""
        ov = optional.require("openvino", "the openvino backend")
        core = ov.Core()
        device = device.upper()
        base_device = device.split(":")[0].split(".")[0]
        if base_device not in ("AUTO", "MULTI", "HETERO") and not any(
            d.startswith(base_device) for d in core.available_devices
        ):
            raise Dav2Error(
                f"OpenVINO device {device} is not available here (found: {', '.join(core.available_devices) or 'none'})"
            )
        if hint.upper() not in HINTS:
            raise Dav2Error(f"unknown OpenVINO hint {hint!r}; choose one of {', '.join(HINTS)}")
        try:
            model = core.read_model(str(path))
        except Exception as exc:
            raise Dav2Error(f"{path} is not a loadable OpenVINO IR ({error_reason(exc)})") from exc
        facts = graph_facts(model)
        check_io(path, facts)
        metadata = metadata or with_graph_facts(metadata_from_model(path, model), facts)
        check_graph(path, metadata, facts)
        super().__init__(path, metadata)
        config = {"PERFORMANCE_HINT": hint.upper()}
        precision = inference_precision or (self.metadata.openvino or OpenVinoRecord()).inference_precision
        if precision and base_device in ("CPU", "GPU"):
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads and base_device == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core.compile_model(model, device, config)
        except Exception as exc:
            raise Dav2Error(f"OpenVINO could not compile {path.name} for {device} ({error_reason(exc)})") from exc
        self.request = self.compiled.create_infer_request()
        self._pool: list = []  # infer_many's requests, created on first use
        self.device = device
        self.hint = hint.upper()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        depth = np.array(self.request.infer({0: batch})[0])
        self.last_timing = {"infer_ms": (time.perf_counter() - start) * 1000.0}
        return depth

    def infer_many(self, batches: Iterable[np.ndarray]) -> list[np.ndarray]:
        """Results for every batch, in order, with several requests in flight at once.

        Why not AsyncInferQueue with a Python callback: the callback runs on OpenVINO's threads,
        which must take the GIL for it, and the request's output is read there while this thread
        starts the next requests. Here nothing of Python runs on OpenVINO's threads: this thread
        starts each request with a copy of its batch (share_inputs=False: the caller may reuse
        the array), and reads a request's output (copied) only after `wait()` on it and before
        it is started again, so no output is read while a request is busy and `close()` never
        waits on a thread that wants the GIL."""
        requests = self._requests()
        in_flight: deque = deque()
        results: list[np.ndarray] = []
        start = time.perf_counter()
        try:
            for index, batch in enumerate(batches):
                request = requests[index % len(requests)]
                if len(in_flight) == len(requests):  # the oldest in flight is this request: finish it first
                    results.append(finished_output(in_flight.popleft()))
                request.start_async({0: batch}, share_inputs=False)
                in_flight.append(request)
            while in_flight:
                results.append(finished_output(in_flight.popleft()))
        finally:
            for request in in_flight:  # after an error: none is left running
                with contextlib.suppress(Exception):
                    request.wait()
        self.last_timing = {"infer_ms": (time.perf_counter() - start) * 1000.0 / max(len(results), 1)}
        return results

    def _requests(self) -> list:
        """The requests `infer_many` keeps in flight: as many as the device says it runs at
        once (OPTIMAL_NUMBER_OF_INFER_REQUESTS), created once and reused."""
        if not self._pool:
            jobs = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self._pool = [self.compiled.create_infer_request() for _ in range(jobs)]
        return self._pool

    def close(self) -> None:
        """Release the requests, then the compiled model. No request is running here: `infer`
        and `infer_many` return only after every request they started has finished."""
        self._pool = []
        self.request = None
        self.compiled = None

    def describe(self) -> str:
        precision = self.compiled.get_property("INFERENCE_PRECISION_HINT") if self.device.startswith("CPU") else None
        detail = f" ({precision.get_type_name()})" if precision is not None else ""
        return f"{super().describe()} | {self.device} {self.hint}{detail}"
