"""What a decision-first sweep may leave unmeasured, and the proof on stored grids that it loses nothing.

Each rule says which rows of an exhaustive grid it would never have measured, from what it would have measured
before them (the grid's own order: cheaper settings first, a subset of dev queries before all of them):

- `recall_reached`: along an ANN grid line (one index build, one K, the search-effort knob raised: ef, nprobe,
  leaves), every setting after the first whose dev recall@K is 1.0: it already returns exact search's top K.
- `over_every_budget`: along the same lines, and along a reranker's depth R over one first stage, every setting after
  the first whose end-to-end p95 already exceeds the largest budget (a cheaper neighbour is a lower bound).
- `halving`: successive halving over dev queries (a quarter, then half of them, seeded): within a budget, a row
  whose paired upper confidence bound against the current dev-best on the subset is below zero (one-sided, at
  `PRUNE_ALPHA`, far stricter than the choice's 0.05) is dropped before its remaining queries are scored.

`replay` applies each rule to a stored grid and counts what it skips and whether any skipped row is one the
exhaustive rule picks or ties with under any budget (bench.analysis.recommend decides): a pick never may be; a tie
may only where a kept tie ranks every dev query the same (the rows past recall 1.0 are such twins: the same top K at
more cost); and the decision made again on the rows left must pick the same row or one that ties with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from bench.analysis import ALPHA, DEFAULT_BUDGETS, Budget, NothingFits, candidates, paired_p, recommend, within

EFFORT_KNOBS = ("ef", "nprobe", "num_leaves_to_search", "ef_search", "hnsw_ef", "expansion_search")
PRUNE_ALPHA = 0.001  # the halving rule's one-sided level: a row must be this clearly worse on the subset to go
HALVING_SHARES = (0.25, 0.5)  # the dev-query shares scored before each cut
HALVING_SEED = 0


@dataclass(frozen=True)
class RuleReplay:
    dataset: str
    rule: str
    rows: int
    skipped: int
    picks_skipped: int  # (budget, row) pairs where the exhaustive rule's pick under that budget is skipped
    ties_skipped: int  # (budget, row) pairs where a row tying with that budget's pick on dev is skipped
    ties_lost: int  # of those, rows no kept tie has the same per-query dev nDCG@10 as (a duplicate is not a loss)
    picks_kept: int  # budgets whose pick, decided again without the skipped rows, is the same row or ties with it
    budgets: int  # budgets with a pick

    @property
    def safe(self) -> bool:
        return self.picks_skipped == 0 and self.ties_lost == 0 and self.picks_kept == self.budgets


def effort_of(search: dict) -> tuple[str, float, str] | None:
    """A search setting's effort knob, its value and the other settings (JSON): the line it lies on and where; None
    for a setting without a knob (exact search, BM25)."""
    knob = next((k for k in EFFORT_KNOBS if isinstance(search.get(k), (int, float))
                 and not isinstance(search.get(k), bool)), None)
    if knob is None:
        return None
    return knob, float(search[knob]), json.dumps({k: v for k, v in search.items() if k != knob}, sort_keys=True)


def upper_bounds(diffs: np.ndarray, alpha: float = PRUNE_ALPHA) -> np.ndarray:
    """Per row of paired per-query differences (candidate minus the best), the one-sided upper confidence bound of
    the mean difference at `alpha`; NaN where the differences do not vary (no evidence either way: never pruned)."""
    diffs = np.atleast_2d(np.asarray(diffs, dtype=float))
    n = diffs.shape[1]
    sd = diffs.std(axis=1, ddof=1)
    upper = diffs.mean(axis=1) + stats.t.ppf(1 - alpha, n - 1) * sd / np.sqrt(n)
    return np.where(sd > 0, upper, np.nan)


def effort_lines(rows: pd.DataFrame) -> list[pd.Index]:
    """First-stage rows as grid lines: the same dataset, encoder, index build, K and other search settings, ordered
    by the effort knob (rows without a knob are on no line)."""
    first = rows[rows["stage"] == "first"]
    keyed = []
    for index, search in zip(first.index, first["search_params"]):
        effort = effort_of(json.loads(search) if search else {})
        if effort is not None:
            keyed.append((index, *effort))
    if not keyed:
        return []
    table = pd.DataFrame(keyed, columns=["index", "knob", "effort", "rest"]).set_index("index")
    table = table.join(first[["dataset", "encoder", "backend", "build_params", "k"]])
    return [group.sort_values("effort").index for _, group in
            table.groupby(["dataset", "encoder", "backend", "build_params", "k", "knob", "rest"])]


def depth_lines(rows: pd.DataFrame) -> list[pd.Index]:
    """Reranked rows as lines over R: the same first stage, reranker, alpha rule and depth rule, ordered by R."""
    reranked = rows[rows["stage"] == "rerank"]
    if reranked.empty:
        return []
    alpha = reranked["fusion_alpha"].where(reranked["fusion_alpha_chosen_on"] != "dev", -1.0)
    keys = [reranked["dataset"], reranked["first_stage_id"], reranked["reranker_identity"], alpha,
            reranked["rerank_depth"]]
    return [group.sort_values("r").index for _, group in reranked.groupby(keys, dropna=False)]


def _after_first(line: pd.Index, hit: pd.Series) -> list:
    """The line's rows after its first row where `hit` holds."""
    flags = hit.reindex(line).to_numpy()
    if not flags.any():
        return []
    return list(line[int(np.argmax(flags)) + 1:])


def recall_reached(rows: pd.DataFrame) -> set:
    """Rows past the first setting of their line whose dev recall@K is 1.0, and the rows reranking them."""
    done = rows["dev_recall_at_k"] >= 1.0
    skipped = {i for line in effort_lines(rows) for i in _after_first(line, done)}
    return skipped | _reranking(rows, skipped)


def over_every_budget(rows: pd.DataFrame, budgets: list[Budget] | None = None) -> set:
    """Rows past the first setting of their effort or depth line whose e2e p95 exceeds every budget."""
    largest = max(b.p95_ms for b in budgets or DEFAULT_BUDGETS)
    over = rows["e2e_p95_ms"] > largest
    skipped = {i for line in effort_lines(rows) for i in _after_first(line, over)}
    skipped |= _reranking(rows, skipped)
    return skipped | {i for line in depth_lines(rows) for i in _after_first(line, over)}


def _reranking(rows: pd.DataFrame, first_rows: set) -> set:
    """The reranked rows over skipped first-stage rows (no first stage, nothing to rerank)."""
    if not first_rows:
        return set()
    skipped = rows.loc[list(first_rows)]
    keys = set(zip(skipped["dataset"], skipped["pipeline_id"]))
    reranked = rows[rows["stage"] == "rerank"]
    return set(reranked.index[[key in keys for key in zip(reranked["dataset"], reranked["first_stage_id"])]])


def halving(rows: pd.DataFrame, budget: Budget, shares=HALVING_SHARES, alpha: float = PRUNE_ALPHA,
            seed: int = HALVING_SEED) -> set:
    """Rows within `budget` the successive-halving rounds drop: scored on a seeded share of the dev queries, a row
    goes when its paired difference to the subset's dev-best has a one-sided upper bound below zero."""
    fits = within(candidates(rows), budget)
    if len(fits) < 2:
        return set()
    first_ids = fits["dev_query_ids"].iloc[0]
    if not all(len(q) == len(first_ids) and np.array_equal(q, first_ids) for q in fits["dev_query_ids"]):
        return set()  # rows over different dev queries: not one dataset's grid
    matrix = np.vstack([np.asarray(v, dtype=float) for v in fits["dev_q_ndcg_at_10"]])
    order = np.random.default_rng(seed).permutation(matrix.shape[1])
    alive = np.ones(len(fits), dtype=bool)
    for share in shares:
        seen = order[: max(2, int(round(share * matrix.shape[1])))]
        scores = matrix[:, seen]
        best = int(np.argmax(np.where(alive, scores.mean(axis=1), -np.inf)))
        alive &= ~(upper_bounds(scores - scores[best], alpha) < 0)  # NaN (no spread) compares False: kept
    return set(fits.index[~alive])


def replay(rows: pd.DataFrame, budgets: list[Budget] | None = None, alpha: float = PRUNE_ALPHA) -> list[RuleReplay]:
    """Each rule on one dataset's derived rows: how many rows it skips (halving: rows dropped under every budget
    they fit), how many of those the exhaustive rule picks or ties with under a budget (must be 0), and whether the
    decision made again on what is left picks the same row or one that ties with it (one-sided paired t, p >= 0.05,
    as `choose` ties)."""
    budgets = budgets or DEFAULT_BUDGETS
    dataset = str(rows["dataset"].iloc[0])
    choices = {}
    for budget in budgets:
        try:
            choices[budget] = recommend(rows, budget)
        except NothingFits:
            continue
    dropped = {budget: halving(rows, budget, alpha=alpha) for budget in choices}
    fit = {budget: set(within(candidates(rows), budget).index) for budget in choices}
    always = {i for i in set().union(*fit.values()) if all(i in dropped[b] for b in choices if i in fit[b])}
    rules = {"recall_reached": ({}, recall_reached(rows)), "over_every_budget": ({}, over_every_budget(rows, budgets)),
             "halving": (dropped, always)}
    rules["all three"] = ({b: dropped[b] | rules["recall_reached"][1] | rules["over_every_budget"][1]
                           for b in choices}, set().union(*(skipped for _, skipped in rules.values())))
    out = []
    for name, (per_budget, skipped) in rules.items():
        picks = ties = lost = kept = 0
        for budget, choice in choices.items():
            gone = per_budget.get(budget, skipped)
            picks += choice.pick.name in gone
            tied_gone = set(choice.ties.index) & gone
            ties += len(tied_gone)
            lost += _without_twin(choice.ties, tied_gone)
            kept += _same_or_tied(rows.drop(index=list(gone & set(rows.index))), budget, choice)
        out.append(RuleReplay(dataset, name, len(rows), len(skipped), picks, ties, lost, kept, len(choices)))
    return out


def _without_twin(ties: pd.DataFrame, gone: set) -> int:
    """How many of the skipped tied rows have no kept tied row with the very same per-query dev nDCG@10."""
    kept = [np.asarray(v, dtype=float) for i, v in ties["dev_q_ndcg_at_10"].items() if i not in gone]
    return sum(not any(np.array_equal(np.asarray(ties.at[i, "dev_q_ndcg_at_10"], dtype=float), k) for k in kept)
               for i in gone)


def _same_or_tied(rest: pd.DataFrame, budget: Budget, exhaustive) -> bool:
    """Whether the decision on `rest` picks the exhaustive pick, or a row not significantly below it on dev."""
    try:
        pick = recommend(rest, budget).pick
    except NothingFits:
        return False
    if pick.name == exhaustive.pick.name:
        return True
    diff = np.asarray(exhaustive.pick["dev_q_ndcg_at_10"], dtype=float) - np.asarray(pick["dev_q_ndcg_at_10"],
                                                                                     dtype=float)
    return paired_p(diff, "t", "greater") >= ALPHA
