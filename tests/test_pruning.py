"""The decision-first sweep's pruning rules (bench.analysis.pruning): on a grid built to tempt them, and on the
committed grids, they skip no row the exhaustive rule picks or ties with."""

import json

import numpy as np
import pandas as pd

from bench.analysis import Budget
from bench.analysis.pruning import recall_reached, replay
from bench.store.results import read_results

BUDGETS = [Budget(4, 100), Budget(50, 100)]


def _row(cell: str, ef: int, recall: float, p95: float, quality: np.ndarray, backend: str = "hnsw") -> dict:
    ids = np.array([f"q{i}" for i in range(len(quality))])
    return {"dataset": "synthetic", "stage": "first", "encoder": "m", "backend": backend, "build_params": "{}",
            "search_params": json.dumps({"ef": ef}), "k": 10, "cell_id": cell, "pipeline_id": cell,
            "first_stage_id": cell, "adds_nothing": False, "saw_eval_docs": False, "has_dev_queries": True,
            "dev_recall_at_k": recall, "e2e_p95_ms": p95, "memory_mb": 10.0, "dev_q_ndcg_at_10": quality,
            "dev_query_ids": ids, "dev_ndcg_at_10": float(quality.mean()), "q_ndcg_at_10": quality,
            "query_ids": ids}


def _slow_start_grid() -> pd.DataFrame:
    """A line whose recall sits at 0.3 for four settings and ends best at the largest ef, beside a line that
    reaches recall 1.0 at once, lower; the slow line's queries are worst first (a slow start in query order too)."""
    rng = np.random.default_rng(1)
    n = 200
    rows = []
    low = np.clip(rng.normal(0.4, 0.2, n), 0, 1)
    for i, (ef, recall) in enumerate(zip([10, 20, 40, 80, 160, 320], [0.3, 0.3, 0.3, 0.3, 0.99, 1.0])):
        quality = low.copy() if recall < 0.9 else np.clip(low + np.r_[np.full(n // 4, -0.05),
                                                                   np.full(n - n // 4, 0.25)] + 0.02 * i, 0, 1)
        rows.append(_row(f"slow-{ef}", ef, recall, 1.0 + i, quality))
    for i, ef in enumerate([10, 20, 40]):
        rows.append(_row(f"early-{ef}", ef, 1.0, 0.5 + i, np.clip(low + 0.05, 0, 1), backend="ivf"))
    return pd.DataFrame(rows).set_index(pd.RangeIndex(len(rows)))


def test_a_slow_start_that_ends_best_is_never_pruned():
    grid = _slow_start_grid()
    assert set(grid.loc[list(recall_reached(grid)), "cell_id"]) == {"early-20", "early-40"}  # after recall 1.0 only
    results = {r.rule: r for r in replay(grid, BUDGETS)}
    assert all(r.safe for r in results.values()), results
    assert results["recall_reached"].ties_skipped == 2 and results["recall_reached"].ties_lost == 0  # twins only
    assert results["halving"].skipped > 0  # it does drop the rows that cannot compete


def test_the_replay_catches_a_rule_that_prunes_a_tie():
    """Halving at a loose level (a bound near the mean) drops rows that tie with a pick: the replay says so."""
    from bench.analysis import with_derived

    rows = with_derived(read_results("results/nfcorpus.parquet"))
    loose = {r.rule: r for r in replay(rows, alpha=0.45)}
    assert loose["halving"].ties_lost > 0 and not loose["halving"].safe


def test_on_the_committed_grids_no_rule_skips_a_pick_or_a_tie_without_a_kept_twin():
    from bench.analysis import with_derived

    for path in ("results/nfcorpus.parquet", "results/scifact.parquet"):
        results = {r.rule: r for r in replay(with_derived(read_results(path)))}
        assert all(r.picks_skipped == 0 and r.picks_kept == r.budgets for r in results.values()), results
        assert all(r.safe for r in results.values()), results
