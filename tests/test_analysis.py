"""Statistics and selection (bench.analysis): intervals, Holm, Pareto, and the dev-then-cheapest choice."""

import json

import numpy as np
import pandas as pd
import pytest

from bench.analysis import Budget, NothingFits, choose, holm, pareto, recommend, reranker_in_use, select, t_interval
from bench.cli import main

N = 40  # dev and test queries each
DEV = [f"dev{i}" for i in range(N)]
TEST = [f"test{i}" for i in range(N)]


def row(name, p95, mb, dev, test, recall=1.0, saw=False, backend=None):
    """One results row: per-query nDCG@10 lists on dev and test (means and lists agree)."""
    dev, test = np.asarray(dev, float), np.asarray(test, float)
    return {
        "cell_id": name, "dataset": "d", "encoder": "bi", "encoder_type": "bi", "model_identity": "m@sha256:0",
        "n_dev_queries": N, "backend": backend or name, "build_params": json.dumps({}),
        "search_params": json.dumps({"name": name}), "k": 100, "r": 0, "stage": "first", "reranker": "", "reranker_identity": "", "fusion_alpha": np.nan, "fusion_alpha_chosen_on": "",
        "e2e_p50_ms": p95 / 2, "e2e_p95_ms": p95, "index_bytes": int(mb * 2**20), "encoder_params": 0,
        "reranker_params": 0, "encoder_bytes": np.nan, "n_docs": 1000, "n_chunks": 0, "dim": 8, "encoder_saw_eval_docs": saw,
        "reranker_saw_eval_docs": False, "recall_at_k": recall, "dev_recall_at_k": recall,
        "ndcg_at_10": test.mean(), "query_ids": TEST, "q_ndcg_at_10": test.tolist(),
        "dev_ndcg_at_10": dev.mean(), "dev_query_ids": DEV, "dev_q_ndcg_at_10": dev.tolist(),
    }


def scores(mean, seed, spread=0.25):
    return np.clip(np.random.default_rng(seed).normal(mean, spread, N), 0, 1)


def table():
    """Four configurations whose dev differences are large (0.15+) against a per-query spread of 0.05."""
    base = scores(0.5, 0, 0.2)
    return pd.DataFrame([
        row("fast-low", 0.5, 10, base - 0.3, base - 0.3, recall=0.8),
        row("mid", 2.0, 20, base - 0.15, base - 0.15, recall=0.97),
        row("rerank", 40.0, 20, base + 0.15, base + 0.15),
        row("big-slow", 3.0, 400, base, base),
    ])


@pytest.mark.parametrize("budget, expected", [
    (Budget(1000, 1000), "rerank"),
    (Budget(10, 1000), "big-slow"),
    (Budget(10, 100), "mid"),
    (Budget(1, 100), "fast-low"),
])
def test_recommender_known_answers(budget, expected):
    assert recommend(table(), budget).pick["backend"] == expected


def test_nothing_fits_names_the_budget():
    with pytest.raises(NothingFits, match="no configuration has end-to-end p95 <= 10"):
        recommend(table(), Budget(10, 100, min_recall=0.99))


def test_within_noise_the_cheaper_configuration_wins():
    noisy = scores(0.6, 1)
    rows = pd.DataFrame([
        row("slow-better", 30.0, 50, noisy + np.random.default_rng(2).normal(0.004, 0.05, N), noisy),
        row("fast", 10.0, 50, noisy, noisy),
    ])
    assert rows.loc[0, "dev_ndcg_at_10"] > rows.loc[1, "dev_ndcg_at_10"]  # the slow one is the dev-best ...
    choice = choose(rows)
    assert choice.dev_best["cell_id"] == "slow-better"
    assert choice.pick["cell_id"] == "fast" and choice.p_vs_best >= 0.05  # ... but not significantly: a tie


def test_a_significant_difference_is_not_a_tie():
    base = scores(0.5, 3)
    rows = pd.DataFrame([row("slow-better", 30.0, 50, base + 0.2, base), row("fast", 10.0, 50, base, base)])
    choice = choose(rows)
    assert choice.pick["cell_id"] == "slow-better" and len(choice.ties) == 1


def test_ann_never_beats_exact_at_the_same_cost_on_noise():
    base = scores(0.6, 4)
    rows = pd.DataFrame([
        row("exact", 10.0, 8, base, base, recall=1.0),
        row("hnsw-ef10", 9.9, 9, base + np.where(np.arange(N) == 0, 0.05, 0), base, recall=0.93),
    ])
    assert choose(rows).pick["cell_id"] == "exact"  # p95 within the tie band, memory too, then recall decides


@pytest.mark.parametrize("ann_p95, expected", [(9.0, "exact"), (8.0, "ann")])
def test_a_latency_gain_inside_timing_noise_is_a_tie(ann_p95, expected):
    """10 vs 9 ms is inside run-to-run timing noise (LATENCY_TIE): the smaller index wins; 10 vs 8 ms is not."""
    base = scores(0.6, 6)
    rows = pd.DataFrame([row("exact", 10.0, 8, base, base), row("ann", ann_p95, 9, base, base)])
    assert choose(rows).pick["cell_id"] == expected


def test_the_dev_choice_is_reported_even_when_test_prefers_another():
    base = scores(0.5, 5, 0.1)
    rows = pd.DataFrame([
        row("dev-best", 20.0, 50, base + 0.2, base - 0.1),
        row("test-best", 20.0, 50, base, base + 0.2),
    ])
    choice = choose(rows)
    assert choice.pick["cell_id"] == "dev-best"
    assert choice.test_interval()[0] == pytest.approx((base - 0.1).mean())


def test_choose_refuses_to_mix_datasets():
    rows = table()
    rows.loc[0, "dataset"] = "other"
    with pytest.raises(ValueError, match="one dataset at a time"):
        choose(rows)


def test_excluding_models_that_saw_the_documents():
    rows = table()
    rows.loc[2, "encoder_saw_eval_docs"] = True
    assert recommend(rows, Budget(1000, 1000)).pick["backend"] == "rerank"
    assert recommend(rows, Budget(1000, 1000), exclude_seen=True).pick["backend"] == "big-slow"


def test_t_interval_matches_a_hand_value():
    # mean 3, sample sd sqrt(2.5), n = 5: half-width = t(0.975, 4) * sqrt(2.5 / 5) = 2.776445 * 0.707107
    mean, half = t_interval([1, 2, 3, 4, 5])
    assert mean == 3 and half == pytest.approx(1.963243, abs=1e-6)


@pytest.mark.parametrize("bad", [dict(p95_ms=-5, memory_mb=1), dict(p95_ms=float("nan"), memory_mb=1),
                                 dict(p95_ms=5, memory_mb=1, min_recall=1.5)])
def test_budget_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        Budget(**bad)


def test_recommend_cli(tmp_path, capsys, monkeypatch):
    import bench.cli as cli

    frame = table().assign(dev_source="25% of train (seed 0)", n_dev_queries=N, e2e_p50_ms=1.0, config_name="x")
    monkeypatch.setattr(cli, "read_results", lambda *paths: frame)
    monkeypatch.chdir(tmp_path)  # no results/composed.parquet here
    assert main(["recommend", "x.parquet", "--p95-ms", "0.1", "--memory-mb", "1000"]) == 1
    assert "nothing fits" in capsys.readouterr().err
    assert main(["recommend", "x.parquet", "--p95-ms", "5", "--memory-mb", "1000"]) == 0
    out = capsys.readouterr().out
    assert "recommended m big-slow name=big-slow, top 100" in out and "dev nDCG@10 0.488 ± 0.051" in out and "test nDCG@10" in out and " ± " in out
    assert 'sweep = "configs/x.toml"' in out and "cells = [" in out  # its pipeline block
    for args in (["--p95-ms", "-5"], ["--p95-ms", "nan"], ["--p95-ms", "5", "--min-recall", "1.5"],
                 ["--p95-ms", "5", "--top", "0"]):
        assert main(["recommend", "x.parquet", "--memory-mb", "100", *args]) == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_pareto_keeps_undominated_rows():
    frame = table()
    front = pareto(frame, "ndcg_at_10", "e2e_p95_ms")
    assert front["backend"].tolist() == ["fast-low", "mid", "big-slow", "rerank"]
    frame.loc[3, "ndcg_at_10"] = 0.30  # big-slow now dominated by mid
    assert "big-slow" not in pareto(frame, "ndcg_at_10", "e2e_p95_ms")["backend"].tolist()


def test_over_the_mean_of_datasets_a_configuration_must_fit_everywhere_and_ties_go_cheaper():
    from bench.analysis import recommend_over_mean

    a, b = scores(0.5, 11, 0.2), scores(0.3, 12, 0.2)
    noise = np.random.default_rng(13).normal(0, 0.05, N)
    noise += 0.003 - noise.mean()  # a gain of 0.003 against a per-query spread of 0.05: within noise
    rows = pd.DataFrame([
        row("slow", 30.0, 50, a + noise, a, backend="hnsw") | {"dataset": "A"},
        row("fast", 10.0, 50, a, a, backend="exact") | {"dataset": "A"},
        row("slow", 30.0, 50, b + noise, b, backend="hnsw") | {"dataset": "B"},
        row("fast", 12.0, 50, b, b, backend="exact") | {"dataset": "B"},
        row("only-a", 1.0, 5, a + 0.3, a, backend="scann") | {"dataset": "A"},  # not measured on B: never chosen
    ])
    choice = recommend_over_mean(rows, Budget(100, 100))
    assert list(choice.pick["backend"]) == ["exact", "exact"] and choice.dev_best["backend"].iloc[0] == "hnsw"
    assert choice.candidates == 2 and choice.ties == 2 and choice.p_vs_best >= 0.05
    mean, half = choice.interval()
    assert mean == pytest.approx((a.mean() + b.mean()) / 2) and 0 < half < 0.1
    with pytest.raises(NothingFits, match="on every one of A, B"):
        recommend_over_mean(rows, Budget(11, 100))  # "fast" is 12 ms on B


def test_the_mean_over_datasets_has_the_interval_of_independent_means():
    """One dataset: its own t-interval; two copies of one: the half-width shrinks by sqrt(2) at the same df."""
    from scipy import stats

    from bench.analysis import mean_of_means_interval

    sample = np.random.default_rng(5).uniform(0, 1, 40)
    assert mean_of_means_interval([sample]) == pytest.approx(t_interval(sample))
    mean, half = mean_of_means_interval([sample, sample + 0.2])
    assert mean == pytest.approx(sample.mean() + 0.1)
    assert half == pytest.approx(stats.t.ppf(0.975, 39) * sample.std(ddof=1) / np.sqrt(2 * 40))


def test_a_reranker_fused_at_alpha_zero_does_not_stand_for_the_reranker():
    """At alpha 0 the fused order is the first stage's: the cheapest rerank row ties with the best on dev, but it
    says nothing about the reranker, so a reranker's dev-chosen row comes from rows that use its scores."""
    base = scores(0.6, 3, 0.2)
    first = row("first", 10.0, 20, base, base)
    unused = {**row("unused", 500.0, 20, base, base), "stage": "rerank", "r": 10, "fusion_alpha": 0.0}
    used = {**row("used", 1000.0, 20, base - 0.01, base + 0.02), "stage": "rerank", "r": 20, "fusion_alpha": 0.3}
    reranked = pd.DataFrame([unused, used])
    assert select(reranked)["cell_id"] == "unused"  # tied on dev and cheaper: what `select` alone would pick
    assert select(reranker_in_use(reranked))["cell_id"] == "used"
    assert recommend(pd.DataFrame([first, unused, used]), Budget(2000, 1000)).pick["cell_id"] == "first"


def test_paired_p_of_many_rows_is_paired_p_of_each():
    from bench.analysis import paired_p, paired_p_rows

    rng = np.random.default_rng(0)
    diffs = np.vstack([rng.normal(0.01, 0.1, size=(20, 50)).round(3), np.zeros((1, 50)), np.full((1, 50), 0.02),
                       np.full((1, 50), -0.02)])
    for alternative in ("greater", "two-sided", "less"):
        assert np.array_equal(paired_p_rows(diffs, alternative), [paired_p(d, "t", alternative) for d in diffs])
