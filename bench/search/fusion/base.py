"""What a fusion rule provides (see bench.search.fusion)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np


class FusionRule:
    """How two ranked lists of one query (missing slots already dropped) become one score per listed document.

    `settings`: the hybrid table's settings this rule reads, in the order they enter a row's search parameters
    and the pipeline's identity ("rrf_k", "weight"). A rule with "weight" takes the dense side's weight, a number
    or "dev" (chosen on the dev queries before any cell is measured, bench.search.hybrid.choose_weights).
    """

    name: ClassVar[str]
    settings: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def weighted(cls) -> bool:
        return "weight" in cls.settings

    @staticmethod
    def parts(dense_ids: np.ndarray, dense_scores: np.ndarray, sparse_ids: np.ndarray, sparse_scores: np.ndarray,
              weight: float, rrf_k: float) -> tuple[np.ndarray, np.ndarray]:
        """Each list's contribution per listed document (summed over the union by bench.search.fusion.fuse_one)."""
        raise NotImplementedError

    @staticmethod
    def label(settings: dict) -> str:
        """Readable, from `settings` (the rule's settings; a dev-chosen weight reads "chosen on dev")."""
        raise NotImplementedError


def reciprocal_ranks(ids: np.ndarray, k: float) -> np.ndarray:
    """1 / (k + rank), rank counted from 1."""
    return 1.0 / (k + np.arange(1, len(ids) + 1, dtype=np.float64))


def minmax(scores: np.ndarray) -> np.ndarray:
    """Scores scaled to [0, 1] over their own list (all 1 when they are all equal)."""
    scores = scores.astype(np.float64)
    span = scores.max() - scores.min() if len(scores) else 0.0
    return (scores - scores.min()) / span if span > 0 else np.ones_like(scores)


def weight_label(weight) -> str:
    """ "weight chosen on dev" (or "on test", where a dataset has no dev queries), or the weight as configured."""
    return f"weight {weight}" if isinstance(weight, str) else f"w={weight:g}"
