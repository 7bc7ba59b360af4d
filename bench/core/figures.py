"""How figures are printed: a mean with its interval, and timings at the precision their spread supports
(used by the report and the command line alike)."""

from __future__ import annotations

import numpy as np


def ci(mean: float, half: float) -> str:
    """A mean with its 95% half-width, at the precision the interval supports."""
    if np.isnan(half):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {half:.3f}"


def timing_text(value: float) -> str:
    """A latency, rate or cost derived from timings, to 2 significant figures: the same figure timed minutes apart
    moves with a relative SD of ~5% (README, "Repeatable query encoding"), so a third figure would be noise."""
    if not np.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    rounded = float(f"{value:.2g}")
    decimals = max(1 - int(np.floor(np.log10(abs(rounded)))), 0)
    return f"{rounded:,.{decimals}f}"


def host_name(host_id: str) -> str:
    """A host as prose names it: the first 4 hex digits of its id (the full id is in every row and CSV)."""
    return f"host {host_id[:4]}"
