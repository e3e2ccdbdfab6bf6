"""The one small interface every export target implements.

A target is one kind of artifact (ONNX, ONNX INT8, OpenVINO IR, TensorRT engine) at one
precision. `preflight` runs before any work (before the checkpoint is even loaded): it checks
the target's own libraries and options and raises one Dav2Error. `build` makes the artifact
from the checked FP32 ONNX graph in the export context's scratch folder and returns it with
its sidecar record; the pipeline then checks accuracy and publishes.

Adding a target means one new module with one ExportTarget subclass, plus its entry in
`dav2.export.pipeline.requested_targets`.
"""

from abc import ABC, abstractmethod

from dav2.export.context import Built, ExportContext, ExportRequest
from dav2.vocabulary import Precision


class ExportTarget(ABC):
    name: str = "target"  # shown in progress lines
    suffix: str = ""  # the artifact's file ending

    pending: str | None = None

    def __init__(self, precision: str):
        self.precision = Precision(precision)

    def needs_calibration(self, request: ExportRequest) -> bool:
        """True when this target quantizes from calibration images (--calib-dir)."""
        return False

    @abstractmethod
    def preflight(self, request: ExportRequest) -> None:
        """Fail now, with one line, if this target cannot be built here."""

    @abstractmethod
    def build(self, context: ExportContext) -> list[Built]:
        """Make the artifact(s) in scratch folders of `context`; return them with their metadata.

        A target may leave part of its work to another machine (a TensorRT engine where
        TensorRT is missing): it returns what it built and sets `pending` to the one line
        that says what is left and how to do it."""

    def __repr__(self) -> str:
        return f"{self.name} {self.precision}"
