"""Latency and throughput measurement: per-call wall time after warmup, summarized as percentiles."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency in milliseconds."""

    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    samples: int

    @classmethod
    def from_ns(cls, samples_ns: np.ndarray) -> "LatencyStats":
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), float(ms.mean()), int(ms.size))


def measure_latency(call: Callable, inputs: Sequence, warmup: int, repeats: int) -> LatencyStats:
    """Time `call(x)` once per input per repeat, after `warmup` untimed calls; GC paused while timing."""
    for x in inputs[: max(warmup, 0)]:
        call(x)
    samples = np.empty(len(inputs) * repeats, dtype=np.int64)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        i = 0
        for _ in range(repeats):
            for x in inputs:
                start = time.perf_counter_ns()
                call(x)
                samples[i] = time.perf_counter_ns() - start
                i += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return LatencyStats.from_ns(samples)


def measure_throughput(call: Callable[[], object], n_items: int, repeats: int) -> float:
    """Items per second of `call()` (which processes `n_items`), from the median of `repeats` timed runs."""
    call()  # warmup
    seconds = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return n_items / float(np.median(seconds))
