"""Inner product without normalization (issue 31): each unnormalized encoder beside its normalized twin (exact
search, paired per query on dev and on test), and each backend family on the raw vectors, natively and through the
reduction to nearest neighbour (bench.search.mips), at its cheapest setting reaching dev recall@K 0.95.

Twins: rows of one encoder type and training mode (and, for pretrained models, one model), one side normalized and
the other not; the raw side searched natively (`mips_reduction` false) is the one compared for quality (the reduction
leaves inner products, and so exact rankings, unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.analysis import fastest_at_recall, paired_p, per_query, t_interval


@dataclass(frozen=True)
class NormalizationPair:
    """An encoder's exact-search row with and without normalization (same K)."""

    normalized: pd.Series
    raw: pd.Series

    def delta(self, split: str) -> tuple[float, float, float, int]:
        """Raw minus normalized nDCG@10 per query on `split` ("test" or "dev"): mean, 95% half-width, two-sided
        paired t p, and the number of queries."""
        raw, normalized = per_query(self.raw, split=split), per_query(self.normalized, split=split)
        diff = (raw - normalized.reindex(raw.index)).dropna().to_numpy()
        return (*t_interval(diff), paired_p(diff), len(diff))


def _twin_key(row: pd.Series) -> tuple:
    return (row["encoder_type"], row["encoder_mode"], row["model"] if row["encoder_mode"] == "pretrained" else "")


def normalization_pairs(frame: pd.DataFrame, k: int = 10) -> list[NormalizationPair]:
    """Per encoder with an unnormalized twin: the exact first-stage rows at K = `k` of both."""
    exact = frame[(frame["stage"] == "first") & (frame["backend"] == "exact") & (frame["k"] == k)
                  & ~frame["mips_reduction"].astype(bool)]
    pairs = []
    for _, raw in exact[~exact["normalize"].astype(bool)].sort_values("encoder").iterrows():
        twins = exact[exact["normalize"].astype(bool)]
        twins = twins[[_twin_key(r) == _twin_key(raw) for _, r in twins.iterrows()]]
        if len(twins):
            pairs.append(NormalizationPair(twins.sort_values("measured_at").iloc[-1], raw))
    return pairs


def mips_backends(frame: pd.DataFrame, k: int = 10, target: float = 0.95) -> pd.DataFrame:
    """Per unnormalized encoder and backend family (first stage, K = `k`, not exact): the lowest-p95 setting reaching
    dev recall@K `target` against exact inner product, natively and through the reduction (or the best dev recall
    where never reached)."""
    rows = frame[(frame["stage"] == "first") & (frame["k"] == k) & (frame["backend"] != "exact")
                 & ~frame["normalize"].astype(bool)]
    out = []
    for (model, backend, reduction), group in rows.groupby(["model", "backend", "mips_reduction"], sort=True):
        hit = fastest_at_recall(group, target)
        row = hit if hit is not None else group.sort_values("dev_recall_at_k").iloc[-1]
        out.append({"model": model, "encoder": row["encoder"], "backend": backend, "reduction": bool(reduction),
                    "setting": row["config"],
                    "reaches": hit is not None, "dev_recall": row["dev_recall_at_k"], "test_recall": row["recall_at_k"],
                    "search_p95_ms": row["search_p95_ms"], "settings_tried": len(group)})
    return pd.DataFrame(out)


__all__ = ["NormalizationPair", "mips_backends", "normalization_pairs"]
