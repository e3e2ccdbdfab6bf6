"""Latency statistics, computed the same way for every case.

Percentiles use numpy's default linear interpolation; FPS at batch 1 is 1000 / median, so one
slow outlier does not move it (the mean and stdev are reported beside it for that). p10 and p90
are the spread a median is read against: two cases whose p10-p90 ranges overlap are not told
apart by their medians (dav2-bench pick calls them a tie).
"""

import numpy as np


def latency_stats(times_ms: list[float]) -> dict[str, float]:
    """median, p10, p90, p99, mean, stdev (sample, ddof=1), min and the run count."""
    if not times_ms:
        raise ValueError("no timed runs")
    values = np.asarray(times_ms, dtype=np.float64)
    return {
        "median": float(np.median(values)),
        "p10": float(np.percentile(values, 10)),
        "p90": float(np.percentile(values, 90)),
        "p99": float(np.percentile(values, 99)),
        "mean": float(values.mean()),
        "stdev": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
        "runs": int(values.size),
    }


def fps(median_ms: float, batch: int = 1) -> float:
    return 1000.0 * batch / median_ms


def runs_for(first_ms: float, seconds: float, min_runs: int, max_runs: int) -> int:
    """How many timed runs fit in `seconds`, given one run's time, within [min_runs, max_runs]."""
    wanted = int(seconds * 1000.0 / max(first_ms, 1e-3))
    return max(min_runs, min(max_runs, wanted))


def spread(latency_ms: dict) -> tuple[float, float]:
    """(p10, p90) of a case's latency_ms; the median twice for results written before p10 was."""
    median = latency_ms["median"]
    return latency_ms.get("p10", median), latency_ms.get("p90", median)


def within_noise(first: dict, second: dict) -> bool:
    """Whether two cases' p10-p90 latency ranges overlap: their medians' order is noise."""
    low_a, high_a = spread(first)
    low_b, high_b = spread(second)
    return low_a <= high_b and low_b <= high_a
