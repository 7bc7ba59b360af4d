"""Adaptive rerank depth: the rules, the choice on dev (ties to fewer pairs, full depth kept when nothing cheaper
ties), and an adaptive child through the tiny sweep."""

import dataclasses
import json

import numpy as np

from bench.run.adaptive import ce_patience, choose_depth_rule, depths, first_gap, rerank_to_depths
from bench.search.indexes import Neighbors


def test_first_gap_stops_where_the_first_stage_scores_fall():
    scores = np.array([1.0, 0.95, 0.9, 0.85, 0.3, 0.2, 0.1, 0.05, 0.0, 0.0])
    assert first_gap(scores, np.zeros(10), 10, 2, 0.5, 1.0) == 4  # candidate 4 (0.3) is below tau: stop there
    assert first_gap(scores, np.zeros(10), 10, 2, 0.0, 1.0) == 10


def test_ce_patience_stops_after_quiet_steps():
    cross = np.concatenate([np.linspace(10, 1, 10), np.full(20, -5.0)])  # nothing after the top 10 comes close
    first = np.linspace(1, 0, 30)
    assert ce_patience(first, cross, 30, 5, 1, 1.0) == 15  # one quiet step past the first ten
    late = cross.copy()
    late[27] = 100.0  # a late winner: patience 1 misses it, full depth finds it
    assert ce_patience(first, late, 30, 5, 1, 1.0) == 15


def test_the_choice_keeps_full_depth_unless_a_cheaper_rule_ties():
    rng = np.random.default_rng(0)
    n, r = 40, 20
    ids = np.tile(np.arange(r), (n, 1))
    first = Neighbors(ids, np.tile(np.linspace(1, 0, r), (n, 1)).astype(np.float32))
    # the relevant document sits at first-stage rank 15 and the cross-encoder finds it: stopping early loses it
    cross = [rng.normal(0, 0.1, r) for _ in range(n)]
    for c in cross:
        c[15] = 5.0

    def ndcg(found):
        return np.array([1.0 / np.log2(2 + list(row[:10]).index(15)) if 15 in row[:10] else 0.0 for row in found])

    rule = choose_depth_rule(first, cross, r, 5, 1.0, ndcg, "dev")
    assert rule.rule in ("", "ce-patience") and rule.dev_ndcg == rule.dev_ndcg_full == 1.0
    easy = [np.where(np.arange(r) == 0, 5.0, c) for c in cross]  # now the winner is first: stopping early ties
    easy_ndcg = lambda found: (np.asarray(found)[:, 0] == 0).astype(float)
    cheap = choose_depth_rule(first, easy, r, 5, 1.0, easy_ndcg, "dev")
    assert cheap.rule and cheap.dev_pairs_mean < r
    d = depths(cheap.rule, cheap.param, first, easy, r, 5, 1.0)
    assert (rerank_to_depths(first, easy, d, 1.0)[:, 0] == 0).all()
    assert json.loads(cheap.text())["chosen_on"] == "dev"


def test_an_adaptive_child_runs_in_the_tiny_sweep(tiny_model, tiny_cross_encoder, tmp_path):
    from bench.analysis import with_derived
    from bench.pipeline.config import RerankerSpec, RerankSpec, load_config
    from bench.store.results import read_results
    from bench.run.sweep import run_sweep

    base = load_config("configs/tiny.toml")
    rerank = RerankSpec(rerankers=[RerankerSpec("ce", model=tiny_cross_encoder, max_length=32)], r=[10], k=[20],
                        latency_queries=4, adaptive_step=4)
    sweep = dataclasses.replace(base, encoders=[dataclasses.replace(base.encoders[0], model=tiny_model)],
                                results=str(tmp_path / "a.parquet"), rerank=rerank,
                                backends=[b for b in base.backends if b.backend == "exact"])
    run_sweep(sweep)
    rows = with_derived(read_results(sweep.results_path))
    reranked = rows[rows["stage"] == "rerank"]
    adaptive = reranked[reranked["rerank_depth_rule"] != ""]
    fixed = reranked[reranked["rerank_depth_rule"] == ""]
    assert len(adaptive) == len(fixed) > 0
    row = adaptive.iloc[0]
    assert json.loads(row["rerank_depth_rule"])["chosen_on"] == "dev"
    assert len(row["q_rerank_pairs"]) == len(row["query_ids"]) and max(row["q_rerank_pairs"]) <= 10
    assert 0 <= row["top10_changed_share"] <= 1
    assert "adaptive depth (rule chosen on dev)" in row["pipeline_name"]
    assert set(adaptive["pipeline_id"]).isdisjoint(fixed["pipeline_id"])
    # an axis of its own in the K x R tables and the significance table (stage2), not a duplicate of the fixed depth
    assert adaptive["stage2"].str.endswith(" adaptive").all() and not fixed["stage2"].str.contains("adaptive").any()
    assert np.isnan(fixed["top10_changed_share"].astype(float)).all()
    from bench.analysis.rerankers import variant_table
    table = variant_table(rows, "ce")
    assert set(table["depth"].str.startswith("adaptive")) == {True, False}
    assert (table.loc[table["depth"] == "fixed", "dev delta"] == 0).all()
