"""What a job did, for the summary lines and the --json object."""

from dataclasses import asdict, dataclass


@dataclass
class BatchSummary:
    """Counts are integers: `processed` = outputs newly written by this run."""

    processed: int = 0
    skipped: int = 0  # done by an earlier run (--resume)
    failed: int = 0
    total: int = 0  # inputs named by --input
    seconds: float = 0.0  # the Ray Data part (start-up excluded; see startup_seconds)
    startup_seconds: float = 0.0  # Ray started or joined, actors not included
    manifest: str = ""
    output: str = ""
    model: str = ""
    ray: str = ""
    interrupted: bool = False

    @property
    def images_per_second(self) -> float:
        done = self.processed + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "images_per_second": round(self.images_per_second, 3)}

    def lines(self) -> list[str]:
        rate = f"{self.images_per_second:.2f} images/s over {self.seconds:.1f} s"
        return [
            f"{self.processed} processed, {self.skipped} skipped (done before), {self.failed} failed "
            f"of {self.total} inputs; {rate} (Ray start-up {self.startup_seconds:.1f} s)",
            f"manifest: {self.manifest}",
        ]
