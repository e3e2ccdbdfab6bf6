"""The accuracy gate: no reduced-precision artifact is published silently broken.

Every FP16 and INT8 artifact dav2-export makes (OpenVINO FP16/INT8, ONNX Runtime INT8, the
FP16/INT8 precision-explicit ONNX graphs, TensorRT engines) is measured against PyTorch FP32
on held-out images (dav2.export.accuracy). The report is printed either way; over the
budget of its precision the export fails with one error line and writes nothing, so an
earlier artifact of the same name stays as it was.

The defaults (`DEFAULT_MAX_ABS_REL`) are more than twice the worst that a sound recipe of
each precision measures on the seeded vits weights, and well below what a broken one does
(the measured numbers and their commands: benchmarks/results/amd-epyc-2-cores-vits.md and
benchmarks/results/amd-epyc-2-cores-int8-dynamic-vs-static.md):
- FP16: the worst sound FP16 artifact is OpenVINO FP16, which runs BF16 on CPUs that have it
  (the AutoCast graph is far closer to FP32).
- INT8: the worst sound recipe is NNCF on OpenVINO with every layer INT8; the budget also
  refuses the dynamic OpenVINO INT8 artifacts of before issue 19, an order of magnitude worse.
Tiny inputs (56x56 in tests) measure worse than these; a caller who means it raises the
budget (`--max-abs-rel 0.5`) or turns the gate off (`--max-abs-rel off`: report only).

Library callers set `ExportRequest.accuracy_gate = False` to measure without refusing (the
benchmark runner is meant to, so that `pick` judges every candidate against its own budget).
"""

from dataclasses import dataclass

from dav2.metadata import AccuracyReport, GateRecord
from dav2.vocabulary import Precision

DEFAULT_MAX_ABS_REL: dict[Precision, float] = {
    Precision.FP16: 0.03,
    Precision.INT8: 0.10,
}
OFF = "off"  # the --max-abs-rel spelling that turns the gate off
REMEDY = (
    "try FP16, --int8-float head for INT8, or more calibration images; --max-abs-rel X raises the budget, "
    "--max-abs-rel off only reports"
)


def defaults_text() -> str:
    """'fp16 0.03, int8 0.1': the defaults as --help, docs/export.md and docs/int8.md show them."""
    return ", ".join(f"{precision.value} {budget:g}" for precision, budget in DEFAULT_MAX_ABS_REL.items())


@dataclass(frozen=True)
class AccuracyGate:
    """What the export holds reduced-precision artifacts to.

    enabled False: measure and report, never refuse. max_abs_rel: one budget for every
    precision (--max-abs-rel X); None: DEFAULT_MAX_ABS_REL per precision."""

    enabled: bool = True
    max_abs_rel: float | None = None

    def budget(self, precision: Precision | str) -> float | None:
        """The AbsRel an artifact of `precision` may reach (None: not gated)."""
        precision = Precision(precision)
        if not self.enabled or precision == Precision.FP32:  # FP32 is held to parity instead
            return None
        if self.max_abs_rel is not None:
            return self.max_abs_rel
        return DEFAULT_MAX_ABS_REL[precision]

    def record(self, precision: Precision | str) -> GateRecord:
        """The budget an artifact of `precision` is held to, and where it came from."""
        source = "off" if not self.enabled else "--max-abs-rel" if self.max_abs_rel is not None else "default"
        return GateRecord(self.budget(precision), source)

    def enforce(self, report: AccuracyReport, precision: Precision | str) -> AccuracyReport:
        """The report with its gate recorded; one AccuracyError when its AbsRel is over the budget."""
        gate = self.record(precision)
        where = f"the default {Precision(precision).upper()} budget" if gate.source == "default" else gate.source
        return report.validate(gate, REMEDY, where)
