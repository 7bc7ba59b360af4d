"""Fusing two ranked lists per query: reciprocal rank fusion and a convex combination of normalized scores.

RRF (Cormack et al., 2009): score(d) = sum over lists of 1 / (k + rank(d)), rank counted from 1; a document
missing from a list adds nothing. Convex: weight * minmax(dense) + (1 - weight) * minmax(sparse), each side's
scores min-max normalized over its own list; a document missing from one side gets 0 there (below every
retrieved one). Ties are broken by the lower corpus row, so results are deterministic.
"""

from __future__ import annotations

import numpy as np

from bench.indexes.base import Neighbors, ParamError

METHODS = ("rrf", "convex")


def _rrf_scores(ids: np.ndarray, k: float) -> np.ndarray:
    return 1.0 / (k + np.arange(1, len(ids) + 1, dtype=np.float64))


def _minmax(scores: np.ndarray) -> np.ndarray:
    scores = scores.astype(np.float64)
    span = scores.max() - scores.min() if len(scores) else 0.0
    return (scores - scores.min()) / span if span > 0 else np.ones_like(scores)


def fuse_one(dense_ids: np.ndarray, dense_scores: np.ndarray, sparse_ids: np.ndarray, sparse_scores: np.ndarray,
             method: str, k: int, weight: float = 0.5, rrf_k: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """One query: the fused top-`k` (ids, fused scores) of a dense and a sparse list (-1 slots ignored)."""
    keep_dense, keep_sparse = dense_ids >= 0, sparse_ids >= 0
    dense_ids, dense_scores = dense_ids[keep_dense], dense_scores[keep_dense]
    sparse_ids, sparse_scores = sparse_ids[keep_sparse], sparse_scores[keep_sparse]
    if method == "rrf":
        parts = [_rrf_scores(dense_ids, rrf_k), _rrf_scores(sparse_ids, rrf_k)]
    elif method == "convex":
        parts = [weight * _minmax(dense_scores), (1.0 - weight) * _minmax(sparse_scores)]
    else:
        raise ParamError(f"fusion method must be one of {METHODS}, got '{method}'")
    union, inverse = np.unique(np.concatenate([dense_ids, sparse_ids]), return_inverse=True)
    fused = np.bincount(inverse, weights=np.concatenate(parts), minlength=len(union))
    order = np.lexsort((union, -fused))[:k]  # highest score first, then the lower row
    ids = np.full(k, -1, dtype=np.int64)
    scores = np.full(k, np.nan, dtype=np.float32)
    ids[: len(order)], scores[: len(order)] = union[order], fused[order]
    return ids, scores


def fuse(dense: Neighbors, sparse: Neighbors, method: str, k: int, weight: float = 0.5,
         rrf_k: float = 60.0) -> Neighbors:
    """Every query's fused top-`k` of two result lists (one row per query in both)."""
    if len(dense.ids) != len(sparse.ids):
        raise ValueError(f"fuse: {len(dense.ids)} dense rows vs {len(sparse.ids)} sparse rows")
    rows = [fuse_one(dense.ids[q], dense.scores[q], sparse.ids[q], sparse.scores[q], method, k, weight, rrf_k)
            for q in range(len(dense.ids))]
    if not rows:
        return Neighbors(np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32))
    return Neighbors(np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]))
