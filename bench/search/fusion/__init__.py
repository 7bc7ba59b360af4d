"""Fusing two ranked lists per query by a rule: one file per rule, registered in RULES by the name a config's
`hybrid.fusion` uses (bench.search.hybrid). Adding a rule: a file here and a line in REGISTRY.

Every rule gives each list's contribution per listed document; the fused score is their sum over the union, a
document missing from a list adding nothing there. Ties are broken by the lower corpus row, in each input list
(documents of equal score take their ranks in corpus order, whatever order the library returned them in: selection
algorithms order equal scores differently on other instruction sets, e.g. NumPy's AVX-512 and AVX2 sorts) and in the
fused list, so results are deterministic and the same on every host.
"""

from __future__ import annotations

import numpy as np

from bench.search.fusion.base import FusionRule
from bench.search.catalog import load_registry
from bench.search.indexes.base import Neighbors, ParamError

REGISTRY = (
    "bench.search.fusion.rrf:ReciprocalRank",
    "bench.search.fusion.convex:Convex",
    "bench.search.fusion.weighted_rrf:WeightedReciprocalRank",
)

RULES: dict[str, type[FusionRule]] = load_registry(REGISTRY)
METHODS = tuple(RULES)


def rule_of(method: str) -> type[FusionRule]:
    if method not in RULES:
        raise ParamError(f"fusion method must be one of {METHODS}, got '{method}'")
    return RULES[method]


def fusion_label(search: dict, weight_chosen_on: str = "") -> str:
    """A row's fusion as run, from its search parameters ("convex w=0.55 (dev)", "RRF k=60"; "-" for no fusion)."""
    if "fusion" not in search:
        return "-"
    rule = rule_of(search["fusion"])
    return rule.label({s: search.get(s) for s in rule.settings}) + (f" ({weight_chosen_on})" if weight_chosen_on else "")


def fuse_one(dense_ids: np.ndarray, dense_scores: np.ndarray, sparse_ids: np.ndarray, sparse_scores: np.ndarray,
             method: str, k: int, weight: float = 0.5, rrf_k: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """One query: the fused top-`k` (ids, fused scores) of a dense and a sparse list (-1 slots ignored)."""
    rule = rule_of(method)
    keep_dense, keep_sparse = dense_ids >= 0, sparse_ids >= 0
    dense_ids, dense_scores = dense_ids[keep_dense], dense_scores[keep_dense]
    sparse_ids, sparse_scores = sparse_ids[keep_sparse], sparse_scores[keep_sparse]
    dense_ids, dense_scores = canonical_order(dense_ids, dense_scores)
    sparse_ids, sparse_scores = canonical_order(sparse_ids, sparse_scores)
    parts = rule.parts(dense_ids, dense_scores, sparse_ids, sparse_scores, weight, rrf_k)
    union, inverse = np.unique(np.concatenate([dense_ids, sparse_ids]), return_inverse=True)
    fused = np.bincount(inverse, weights=np.concatenate(parts), minlength=len(union))
    order = np.lexsort((union, -fused))[:k]  # highest score first, then the lower row
    ids = np.full(k, -1, dtype=np.int64)
    scores = np.full(k, np.nan, dtype=np.float32)
    ids[: len(order)], scores[: len(order)] = union[order], fused[order]
    return ids, scores


def canonical_order(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One ranked list by score, highest first, equal scores by the lower corpus row (a stable no-op when the list
    already is in that order)."""
    order = np.lexsort((ids, -np.asarray(scores, dtype=np.float64)))
    return ids[order], scores[order]


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


__all__ = ["FusionRule", "METHODS", "REGISTRY", "RULES", "canonical_order", "fuse", "fuse_one", "fusion_label", "rule_of"]
