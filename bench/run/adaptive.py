"""Adaptive rerank depth (issue 30): per query, re-score the first stage's top R in steps of `step` pairs, in
first-stage order, and stop once a rule predicts that the candidates left would not enter the top 10.

Rules (one function each, one REGISTRY line each; a rule's parameter grid is tried on dev):
- `first-gap` (tau): stop before a step whose first candidate's first-stage score, min-max normalized over the
  query's top R, is below tau. Decided from the first stage alone, so the query's pairs are scored in one call.
- `ce-patience` (p): stop after p consecutive steps in which no newly scored candidate entered the top 10 of the
  fused score so far. Scored step by step (one call per step).

The rule and its parameter are chosen on the dev queries: the fewest mean pairs among the candidates whose dev
nDCG@10 is not significantly below full-depth reranking at the same R (one-sided paired t, alpha 0.05), full depth
itself included, so a tie goes to the cheaper depth and full depth is kept when nothing cheaper ties with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

from bench.search.indexes.base import Neighbors
from bench.models.rerankers import _minmax, rerank

TOP = 10  # the depth a rule protects: the ranking's top 10 (nDCG@10)


def first_gap(first_scores: np.ndarray, cross: np.ndarray, r: int, step: int, tau: float, alpha: float) -> int:
    normalized = _minmax(first_scores[:r].astype(np.float64))
    depth = step
    while depth < r and normalized[depth] >= tau:
        depth += step
    return min(depth, r)


def ce_patience(first_scores: np.ndarray, cross: np.ndarray, r: int, step: int, patience: float, alpha: float) -> int:
    depth, quiet = min(step, r), 0
    while depth < r and quiet < patience:
        new = min(depth + step, r)
        fused = alpha * _minmax(cross[:new]) + (1 - alpha) * _minmax(first_scores[:new].astype(np.float64))
        top = set(np.argsort(-fused, kind="stable")[:TOP].tolist())
        quiet = 0 if top & set(range(depth, new)) else quiet + 1
        depth = new
    return depth


Rule = Callable[[np.ndarray, np.ndarray, int, int, float, float], int]
REGISTRY: dict[str, tuple[Rule, tuple[float, ...], bool]] = {
    # name: (rule, parameter grid tried on dev, whether its pairs are scored in one call)
    "first-gap": (first_gap, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7), True),
    "ce-patience": (ce_patience, (1, 2, 3), False),
}


@dataclass(frozen=True)
class DepthRule:
    """A chosen rule (or full depth: rule ''), its parameter, the step, and what the choice rests on."""

    rule: str
    param: float
    step: int
    chosen_on: str  # "dev", or "test" where the dataset has none
    dev_pairs_mean: float
    dev_ndcg_full: float
    dev_ndcg: float

    def text(self) -> str:
        return json.dumps({"rule": self.rule or "full depth", "param": self.param, "step": self.step,
                           "chosen_on": self.chosen_on}, sort_keys=True)

    def one_call(self) -> bool:
        return not self.rule or REGISTRY[self.rule][2]


def depths(rule: str, param: float, first: Neighbors, cross: list[np.ndarray], r: int, step: int,
           alpha: float) -> np.ndarray:
    """Pairs scored per query under `rule` (full depth R, capped by each query's valid candidates, for rule '')."""
    out = []
    for qi, scores in enumerate(cross):
        valid = int((first.ids[qi, :r] >= 0).sum())
        if not rule or valid <= step:
            out.append(valid)
            continue
        out.append(REGISTRY[rule][0](first.scores[qi, :valid], scores[:valid], valid, step, param, alpha))
    return np.asarray(out, dtype=np.int64)


def rerank_to_depths(first: Neighbors, cross: list[np.ndarray], depth: np.ndarray, alpha: float) -> np.ndarray:
    """Each query's top depth[q] re-ordered by the fused score over those candidates only (as served: nothing
    beyond them was scored); the rest keep their first-stage order."""
    out = first.ids.copy()
    for qi, d in enumerate(depth):
        if d > 0:
            one = Neighbors(first.ids[qi:qi + 1], first.scores[qi:qi + 1])
            out[qi] = rerank(one, int(d), [cross[qi][:d]], alpha)[0]
    return out


def choose_depth_rule(first: Neighbors, cross: list[np.ndarray], r: int, step: int, alpha: float,
                      ndcg: Callable[[np.ndarray], np.ndarray], chosen_on: str, alpha_level: float | None = None
                      ) -> DepthRule:
    """The cheapest rule (mean pairs) whose per-query nDCG@10 (`ndcg(ids)`, on the choice queries) is not
    significantly below full depth's (one-sided paired t at the analysis' ALPHA); full depth is a candidate."""
    from bench.analysis import ALPHA, paired_p

    alpha_level = ALPHA if alpha_level is None else alpha_level

    full_depth = depths("", 0.0, first, cross, r, step, alpha)
    full = ndcg(rerank_to_depths(first, cross, full_depth, alpha))
    best = DepthRule("", 0.0, step, chosen_on, float(full_depth.mean()), float(full.mean()), float(full.mean()))
    for name, (_, grid, _) in REGISTRY.items():
        for param in grid:
            d = depths(name, param, first, cross, r, step, alpha)
            values = ndcg(rerank_to_depths(first, cross, d, alpha))
            if paired_p(full - values, "t", "greater") < alpha_level:
                continue  # significantly worse than full depth on the choice queries
            candidate = DepthRule(name, float(param), step, chosen_on, float(d.mean()), float(full.mean()),
                                  float(values.mean()))
            if (candidate.dev_pairs_mean, -candidate.dev_ndcg) < (best.dev_pairs_mean, -best.dev_ndcg):
                best = candidate
    return best
