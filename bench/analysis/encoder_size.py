"""The encoder-size lever (issue 30): a larger pretrained bi-encoder beside the smaller one, per dataset, alone (exact
search and its cheapest HNSW setting at dev recall@10 0.95) and inside the convex BM25 hybrid (weight chosen on dev),
with what each costs: corpus encode seconds, bytes per vector, the query network's time, its weights.

The quality deltas are paired per query on test, larger minus smaller: reported once, for what dev chose (the
hybrid's weight); nothing here is chosen on test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.analysis import fastest_at_recall, paired_p, per_query, t_interval

# Published exact-search nDCG@10 on test (MTEB leaderboard; the datasets' README): a run must land close to these.
PUBLISHED_NDCG10 = {
    ("sentence-transformers/all-mpnet-base-v2", "scifact"): 0.6557,
    ("sentence-transformers/all-mpnet-base-v2", "nfcorpus"): 0.3329,
    ("sentence-transformers/all-MiniLM-L6-v2", "scifact"): 0.645,
    ("sentence-transformers/all-MiniLM-L6-v2", "nfcorpus"): 0.3159,
}


@dataclass(frozen=True)
class EncoderRows:
    """One pretrained dense model on one dataset: its exact row, its fastest HNSW row at dev recall@10 0.95 (None when
    no setting reaches it) and its convex hybrid row with BM25 (None when not run)."""

    exact: pd.Series
    hnsw: pd.Series | None
    hybrid: pd.Series | None

    @property
    def published(self) -> float | None:
        return PUBLISHED_NDCG10.get((self.exact["model"], self.exact["dataset"]))


def _smallest_k(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["k"] == rows["k"].min()] if len(rows) else rows


def encoder_rows(frame: pd.DataFrame) -> dict[str, list[EncoderRows]]:
    """Per dataset, each pretrained bi-encoder's rows (normalized, whole documents, fp32 torch, K = the smallest run),
    smallest model first."""
    first = frame[(frame["stage"] == "first") & (frame["encoder_mode"] == "pretrained")]
    out: dict[str, list[EncoderRows]] = {}
    for dataset, rows in first.groupby("dataset", sort=True):
        dense = rows[(rows["encoder_type"] == "bi") & rows["normalize"].astype(bool) & (rows["n_chunks"] == 0)
                     & (rows["query_precision"] == "fp32") & (rows["query_runtime"] == "torch")]
        found = []
        for model, group in dense.groupby("model", sort=False):
            exact = _smallest_k(group[group["backend"] == "exact"])
            if exact.empty:
                continue
            hnsw = group[(group["backend"] == "hnsw") & (group["k"] == exact["k"].iloc[0])]
            hybrid = _smallest_k(rows[(rows["encoder_type"] == "hybrid") & (rows["model"] == model)
                                      & (rows["backend"] == "exact") & (rows["n_chunks"] == 0)
                                      & rows["search_params"].str.contains('"fusion": "convex"')])
            found.append(EncoderRows(exact.sort_values("measured_at").iloc[-1], fastest_at_recall(hnsw),
                                     hybrid.sort_values("dev_ndcg_at_10").iloc[-1] if len(hybrid) else None))
        out[dataset] = sorted(found, key=lambda e: e.exact["encoder_params"])
    return out


def paired_delta(larger: pd.Series, smaller: pd.Series, split: str = "test") -> tuple[float, float, float, int]:
    """nDCG@10 of `larger` minus `smaller` per query on `split`: mean, 95% half-width, two-sided paired t p, queries."""
    a, b = per_query(larger, split=split), per_query(smaller, split=split)
    diff = (a - b.reindex(a.index)).dropna().to_numpy()
    return (*t_interval(diff), paired_p(diff), len(diff))


def texts_per_s(row: pd.Series) -> float:
    return row["n_docs"] / row["corpus_encode_s"] if row["corpus_encode_s"] > 0 else np.nan


__all__ = ["EncoderRows", "PUBLISHED_NDCG10", "encoder_rows", "paired_delta", "texts_per_s"]
