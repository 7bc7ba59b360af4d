"""A convex combination of min-max normalized scores: weight * minmax(dense) + (1 - weight) * minmax(sparse)."""

from __future__ import annotations

from bench.search.fusion.base import FusionRule, minmax, weight_label


class Convex(FusionRule):
    name = "convex"
    settings = ("weight",)

    @staticmethod
    def parts(dense_ids, dense_scores, sparse_ids, sparse_scores, weight, rrf_k):
        return weight * minmax(dense_scores), (1.0 - weight) * minmax(sparse_scores)

    @staticmethod
    def label(settings):
        weight = settings["weight"]
        return "convex, " + weight_label(weight) if isinstance(weight, str) else "convex " + weight_label(weight)
