import math

import numpy as np

from bench.core.calibration import calibrate, drifted, time_kernel
from bench.core.timing import measure_latency


def test_the_kernel_gives_a_steady_positive_figure():
    figures = [calibrate(passes=3, calls=20) for _ in range(2)]
    assert all(f > 0 for f in figures)
    assert time_kernel(10) > 0


def test_drift_is_relative_and_a_missing_figure_is_drifted():
    assert not drifted(0.50, 0.52, tolerance=0.1)
    assert drifted(0.50, 0.40, tolerance=0.1) and drifted(0.50, 0.60, tolerance=0.1)
    assert drifted(None, 0.5, 0.1) and drifted(float("nan"), 0.5, 0.1) and drifted(0.0, 0.5, 0.1)


def test_interleaved_calibration_is_timed_next_to_every_call():
    calls = []
    stats = measure_latency(lambda x: calls.append(("call", x)), [1, 2, 3], warmup=1, repeats=2,
                            calibration=lambda: calls.append(("kernel", None)))
    assert stats.samples == 6 and len(stats.per_input_ms) == 3 and stats.calibration_ms > 0
    # warmup untimed and without the kernel, then call/kernel alternating
    assert calls[0] == ("call", 1) and [kind for kind, _ in calls[1:]] == ["call", "kernel"] * 6
    assert math.isnan(measure_latency(lambda x: None, [1], 0, 1).calibration_ms)
    assert np.isfinite(stats.p99_ms)
