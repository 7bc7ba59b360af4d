"""Weighted reciprocal rank fusion: score(d) = weight / (k + rank_dense(d)) + (1 - weight) / (k + rank_sparse(d)).

RRF with a dense-side weight (a number, or "dev": chosen on the dev queries); weight 0.5 ranks as plain RRF.
"""

from __future__ import annotations

from bench.search.fusion.base import FusionRule, reciprocal_ranks, weight_label


class WeightedReciprocalRank(FusionRule):
    name = "weighted_rrf"
    settings = ("rrf_k", "weight")

    @staticmethod
    def parts(dense_ids, dense_scores, sparse_ids, sparse_scores, weight, rrf_k):
        return weight * reciprocal_ranks(dense_ids, rrf_k), (1.0 - weight) * reciprocal_ranks(sparse_ids, rrf_k)

    @staticmethod
    def label(settings):
        return f"weighted RRF k={settings['rrf_k']:g}, {weight_label(settings['weight'])}"
