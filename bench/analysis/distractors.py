"""What distractors cost: the same pipelines over a collection and over it plus paragraphs nothing judges
(bench.data.distractors), paired per query; each backend family's cheapest setting at recall@10 >= 0.95 at that size;
the recommender's picks there.

A pipeline is followed across the two sizes by its `pipeline_id` (bench.pipeline.ids: the same on every corpus; a tuned
weight is "chosen on dev" and takes its own value at each size). Each followed group is chosen on dev at the large
size (dev-best, then the cheapest row tied with it: bench.analysis.choose), and the same pipeline is looked up at the
base size; test figures are reported for those picks only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.analysis import (DENSE, FUSION, LEXICAL, DEFAULT_BUDGETS, Budget, NothingFits, choose, fastest_at_recall, per_query, recommend,
                            reranker_in_use, t_interval, with_derived)

# The pipelines issue 29 follows: (label, which rows of one collection form the group).
FOLLOWED = {
    "dense, exact": lambda rows: rows[(rows["stage"] == "first") & (rows["first_stage_kind"] == DENSE)
                                      & (rows["backend"] == "exact")],
    "BM25": lambda rows: rows[(rows["stage"] == "first") & (rows["first_stage_kind"] == LEXICAL)],
    "fusion, exact dense side": lambda rows: rows[(rows["stage"] == "first") & (rows["first_stage_kind"] == FUSION)
                                                  & (rows["backend"] == "exact")],
    "reranked": lambda rows: reranker_in_use(rows[rows["stage"] == "rerank"]),
}

# The budgets the issue asks the recommender about at the large size (p95 ms, memory MB).
DISTRACTOR_BUDGETS = [Budget(5, 200), Budget(50, 500), Budget(1000, 1000), Budget(10000, 2000)]


@dataclass(frozen=True)
class SizePair:
    """One followed pipeline at both sizes: the dev-chosen row at the large size and the same pipeline's row at the
    base size (None where the base size did not measure it)."""

    label: str
    large: pd.Series
    base: pd.Series | None

    def delta(self, measure: str = "ndcg_at_10") -> tuple[float, float, int]:
        """Large minus base, per test query: mean, 95% half-width, and the number of queries paired."""
        if self.base is None or self.large[f"q_{measure}"] is None or self.base[f"q_{measure}"] is None:
            return float("nan"), float("nan"), 0
        large, base = per_query(self.large, measure), per_query(self.base, measure)
        diff = (large - base.reindex(large.index)).dropna().to_numpy()
        return (*t_interval(diff), len(diff))


def size_pairs(large: pd.DataFrame, base: pd.DataFrame) -> list[SizePair]:
    """Each followed group's dev-chosen pipeline at the large size, beside the same pipeline at the base size."""
    large, base = _derived(large), _derived(base)
    pairs = []
    for label, group in FOLLOWED.items():
        rows = group(large)
        if rows.empty:
            continue
        pick = choose(rows).pick
        same = base[base["pipeline_id"] == pick["pipeline_id"]]
        pairs.append(SizePair(label, pick, same.sort_values("measured_at").iloc[-1] if len(same) else None))
    return pairs


def recall_at_size(large: pd.DataFrame, k: int = 10, target: float = 0.95) -> pd.DataFrame:
    """Per backend family (first stage, dense, K = k): the lowest-p95 setting whose dev recall@k against exact search
    reaches `target`, with its test recall, search p95, bytes per vector and build time; families that never reach
    it give their best dev recall instead."""
    rows = _derived(large)
    rows = rows[(rows["stage"] == "first") & (rows["first_stage_kind"] == DENSE) & (rows["k"] == k)]
    out = []
    for backend, group in rows.groupby("backend", sort=True):
        hit = fastest_at_recall(group, target)
        row = hit if hit is not None else group.sort_values(["dev_recall_at_k", "search_p95_ms"],
                                                            ascending=[False, True]).iloc[0]
        out.append({"backend": backend, "setting": row["config"], "reaches": hit is not None,
                    "dev recall@10": row["dev_recall_at_k"], "test recall@10": row["recall_at_k"],
                    "search p95 ms": row["search_p95_ms"], "bytes per vector": row["index_bytes"] / row["n_docs"],
                    "build s": row["build_s"], "settings tried": len(group)})
    return pd.DataFrame(out)


def picks_at_size(large: pd.DataFrame, budgets: list[Budget] | None = None) -> list[tuple[Budget, object]]:
    """`recommend` at each budget on the large collection: (budget, Choice or the NothingFits message)."""
    rows = _derived(large)
    out = []
    for budget in budgets or DISTRACTOR_BUDGETS:
        try:
            out.append((budget, recommend(rows, budget)))
        except NothingFits as err:
            out.append((budget, str(err)))
    return out


def dense_encoding(large: pd.DataFrame) -> pd.Series | None:
    """A dense first stage's row at the large size: what encoding its corpus cost (None without a dense row)."""
    dense = _derived(large)
    dense = dense[dense["first_stage_kind"] == DENSE]
    return dense.iloc[0] if len(dense) else None


def _derived(frame: pd.DataFrame) -> pd.DataFrame:
    return frame if "pipeline_id" in frame else with_derived(frame)


def judged_text(row: pd.Series | None) -> str:
    """Judged@10 on the test queries, or 'not measured' for rows before the column existed."""
    if row is None or row["judged_at_10"] is None or not np.isfinite(row["judged_at_10"]):
        return "not measured"
    return f"{row['judged_at_10']:.3f}"


__all__ = ["DEFAULT_BUDGETS", "DISTRACTOR_BUDGETS", "FOLLOWED", "SizePair", "dense_encoding", "judged_text", "picks_at_size",
           "recall_at_size", "size_pairs"]
