"""Latency and throughput measurement: per-call wall time after warmup, summarized as percentiles."""

from __future__ import annotations

import dataclasses
import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    per_input_ms: tuple[float, ...] = ()  # median over repeats for each input, in input order
    calibration_ms: float = float("nan")  # median calibration-kernel call timed interleaved with these calls
    # every sample, (repeats, inputs): what end-to-end totals are summed from
    samples_ms: np.ndarray | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_ms(cls, ms: np.ndarray) -> "LatencyStats":
        """Stats of a (repeats, inputs) or flat array of milliseconds (a flat array: one pass over the inputs)."""
        ms = np.asarray(ms, dtype=np.float64)
        per_input = tuple(np.median(ms, axis=0).tolist()) if ms.ndim == 2 else tuple(ms.tolist())
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return cls(float(p50), float(p95), float(p99), float(ms.mean()), int(ms.size), per_input,
                   samples_ms=ms if ms.ndim == 2 else ms[None, :])

    def columns(self, prefix: str) -> dict[str, float]:
        """The schema's `<prefix>_p50_ms`, ... columns."""
        return {f"{prefix}_p50_ms": self.p50_ms, f"{prefix}_p95_ms": self.p95_ms,
                f"{prefix}_p99_ms": self.p99_ms, f"{prefix}_mean_ms": self.mean_ms}


def end_to_end(*stages: LatencyStats) -> LatencyStats:
    """Per-sample totals of sequential stages, never sums of medians: sample (pass r, query i) of every stage
    added, over the queries every stage timed (the shortest prefix) and the first stage's passes; a stage timed in
    fewer passes (the reranker: one per run) adds its pass r mod its passes. When the first stage (query encoding)
    timed no more queries than the others, every one of its samples is in a total, so the totals' percentiles are
    never below its own."""
    n = min(s.samples_ms.shape[1] for s in stages)
    passes = stages[0].samples_ms.shape[0]
    total = np.zeros((passes, n))
    for stage in stages:
        rows = np.arange(passes) % stage.samples_ms.shape[0]
        total += stage.samples_ms[rows, :n]
    return LatencyStats.from_ms(total)


E2E_METHOD = "per-sample sums"  # how the sweep's e2e columns are made now (EndToEnd.e2e_method)


def measure_latency(call: Callable, inputs: Sequence, warmup: int, repeats: int,
                    calibration: Callable[[], object] | None = None) -> LatencyStats:
    """Time `call(x)` once per input per repeat, after `warmup` untimed calls; GC paused while timing.

    With `calibration`, that kernel is timed after every call too (same machine state), and its median is
    the result's `calibration_ms`: latency / calibration_ms is the figure normalized by the host's speed.
    """
    for x in inputs[: max(warmup, 0)]:
        call(x)
    samples = np.empty((repeats, len(inputs)), dtype=np.int64)
    kernel = np.empty((repeats, len(inputs) if calibration else 0), dtype=np.int64)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for rep in range(repeats):
            for i, x in enumerate(inputs):
                start = time.perf_counter_ns()
                call(x)
                samples[rep, i] = time.perf_counter_ns() - start
                if calibration is not None:
                    start = time.perf_counter_ns()
                    calibration()
                    kernel[rep, i] = time.perf_counter_ns() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    stats = LatencyStats.from_ms(samples / 1e6)
    if calibration is None:
        return stats
    return dataclasses.replace(stats, calibration_ms=float(np.median(kernel)) / 1e6)


@contextmanager
def online_threads(threads: int):
    """Torch and the BLAS/OpenMP pools (faiss, numpy) limited to `threads` while timing an online stage."""
    import torch
    from threadpoolctl import threadpool_limits

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(saved)


def measure_throughput(call: Callable[[], object], n_items: int, repeats: int) -> float:
    """Items per second of `call()` (which processes `n_items`), from the median of `repeats` timed runs."""
    call()  # warmup
    seconds = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return n_items / float(np.median(seconds))
