"""The one small interface every export target implements.

A target is one kind of artifact (ONNX, ONNX INT8, OpenVINO IR, TensorRT engine) at one
precision, made from its row of `dav2.export.formats.FORMATS` (name, suffix, options, which
precisions calibrate). `preflight` runs before any work (before the checkpoint is even
loaded): it checks the target's own libraries and options and raises one Dav2Error. `build`
makes the artifact from the checked FP32 ONNX graph in the export context's scratch folder and
returns it with its sidecar record; the pipeline then checks accuracy and publishes.

Adding a target means one new module with one ExportTarget subclass, plus its row in
`dav2.export.formats.FORMATS`.
"""

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from dav2.export.context import Built, ExportContext, ExportRequest
from dav2.vocabulary import Precision

if TYPE_CHECKING:  # formats.py names the targets; importing it here would only be for the annotation
    from dav2.export.formats import ExportFormat


class ExportTarget(ABC):
    pending: str | None = None

    def __init__(self, row: "ExportFormat", precision: str):
        self.format = row
        self.precision = Precision(precision)

    @classmethod
    def from_request(cls, row: "ExportFormat", precision: Precision, request: ExportRequest) -> "ExportTarget":
        """The target for `row` at `precision`; a target with settings of its own reads them here."""
        return cls(row, precision)

    @property
    def name(self) -> str:  # shown in progress lines
        return self.format.name

    def needs_calibration(self, request: ExportRequest) -> bool:
        """True when this target quantizes from calibration images (--calib-dir)."""
        return self.precision in self.format.calibrated

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
