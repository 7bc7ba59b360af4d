"""Reciprocal rank fusion (Cormack et al., 2009): score(d) = sum over lists of 1 / (k + rank(d))."""

from __future__ import annotations

from bench.search.fusion.base import FusionRule, reciprocal_ranks


class ReciprocalRank(FusionRule):
    name = "rrf"
    settings = ("rrf_k",)

    @staticmethod
    def parts(dense_ids, dense_scores, sparse_ids, sparse_scores, weight, rrf_k):
        return reciprocal_ranks(dense_ids, rrf_k), reciprocal_ranks(sparse_ids, rrf_k)

    @staticmethod
    def label(settings):
        return f"RRF k={settings['rrf_k']:g}"
