"""The calibration kernel: a fixed piece of CPU work timed alongside latencies, so that a host's speed is a number.

Same hardware id does not mean same speed (another "AMD EPYC, 2 cores, 23 GB" machine measured 1.5-3.2x
faster; clocks, neighbours and thermal state move from day to day). Every run times this kernel at its
start; every row stores the kernel's time measured next to its own latencies (`calibration_ms`). A stored
row whose figure differs from the current run's by more than the configured tolerance has its latency
columns re-measured (bench.run.sweep), and a latency can be shown normalized: latency / kernel time.

The kernel is a chain of small float32 matrix products (compute, ~32 KB: fits the L1/L2 caches, so it does
not evict an index being timed between calls) followed by one pass over 8 MB (memory bandwidth), on one
BLAS thread. Here it takes ~0.41 ms alone, run to run within about 1% (0.5-0.7 ms right after a torch call: caches
and clocks carry over, so a figure normalized by it compares runs of the same workload).
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
from threadpoolctl import threadpool_limits


@lru_cache(maxsize=1)
def _operands() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20261126)
    small = rng.standard_normal((2, 96, 96), dtype=np.float32) / 10
    return small[0], small[1], rng.standard_normal(2 * 2**20, dtype=np.float32)


def kernel() -> float:
    """One call of the fixed work."""
    a, b, big = _operands()
    x = a
    for _ in range(8):
        x = np.tanh(x @ b)
    return float(x[0, 0]) + float(big.sum())


def time_kernel(calls: int = 100) -> float:
    """Median milliseconds per kernel call over `calls` calls, on one BLAS thread (after two untimed calls)."""
    with threadpool_limits(limits=1):
        kernel(), kernel()
        samples = np.empty(calls, dtype=np.int64)
        for i in range(calls):
            start = time.perf_counter_ns()
            kernel()
            samples[i] = time.perf_counter_ns() - start
    return float(np.median(samples)) / 1e6


def calibrate(passes: int = 5, calls: int = 100) -> float:
    """A run's calibration figure: the median of `passes` pass medians (milliseconds per call)."""
    return float(np.median([time_kernel(calls) for _ in range(passes)]))


def drifted(stored_ms: float | None, current_ms: float, tolerance: float) -> bool:
    """True when a stored figure is missing or differs from the current one by more than `tolerance` (relative)."""
    if stored_ms is None or not np.isfinite(stored_ms) or stored_ms <= 0:
        return True
    return abs(stored_ms / current_ms - 1) > tolerance
