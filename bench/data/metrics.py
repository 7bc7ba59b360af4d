"""Quality of a ranked result list: IR measures against qrels (via ir_measures) and recall vs exact search."""

from __future__ import annotations

import ir_measures
import numpy as np
import pandas as pd
from ir_measures import RR, Judged, R, nDCG

from bench.data.datasets import Dataset

# Column name in the results schema -> ir_measures measure.
# Judged@10: the share of the top 10 that the qrels judge at all (unjudged distractors show here; on collections
# whose qrels list only relevant documents, like SciFact's, it is the share of the top 10 judged relevant).
MEASURES = {"ndcg_at_10": nDCG @ 10, "recall_at_100": R @ 100, "rr_at_10": RR @ 10, "judged_at_10": Judged @ 10}


def to_run(ids: np.ndarray, dataset: Dataset) -> dict[str, dict[str, float]]:
    """A TREC-style run from row ids; scores follow the returned order (rank 1 highest), -1 slots skipped."""
    run = {}
    for qid, row in zip(dataset.query_ids, ids):
        valid = row[row >= 0]
        run[qid] = {dataset.doc_ids[j]: float(len(valid) - rank) for rank, j in enumerate(valid)}
    return run


def per_query_quality(ids: np.ndarray, dataset: Dataset) -> pd.DataFrame:
    """One row per judged query (in dataset order), one column per measure; queries with no results score 0."""
    run = {qid: docs for qid, docs in to_run(ids, dataset).items() if docs}
    by_measure = {m: name for name, m in MEASURES.items()}
    table = pd.DataFrame(0.0, index=pd.Index(dataset.query_ids, name="query_id"), columns=list(MEASURES))
    for metric in ir_measures.iter_calc(list(MEASURES.values()), dataset.qrels, run):
        table.at[metric.query_id, by_measure[metric.measure]] = metric.value
    return table


def recall_vs_exact(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean over queries of |approx top-K ∩ exact top-K| / |exact top-K|, by id (both arrays (n, K))."""
    fractions = []
    for approx, exact in zip(approx_ids, exact_ids):
        truth = set(exact[exact >= 0].tolist())
        fractions.append(len(truth.intersection(approx[approx >= 0].tolist())) / max(len(truth), 1))
    return float(np.mean(fractions))
