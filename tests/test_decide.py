"""The decision mode (bench.run.decide): what it skips is logged with its rule, it never skips what the exhaustive
sweep picks or ties with, and a second call resumes without measuring again."""

import dataclasses

import pandas as pd
import pytest

from bench.analysis import Budget, NothingFits, recommend, with_derived
from bench.pipeline.config import BackendSpec, RerankerSpec, RerankSpec, load_config
from bench.run.decide import run_decision
from bench.run.sweep import run_sweep
from bench.store.results import ResultStore

BUDGETS = [Budget(10000, 1000), Budget(50, 1000)]


def _config(tiny_model, tmp_path, rerank=None, queries=30):
    """configs/tiny.toml with the tiny model, HNSW's ef raised in small steps (the line reaches recall 1.0 early on
    300 documents, so the settings after it are what `recall_reached` may skip), exact search and BM25."""
    base = load_config("configs/tiny.toml")
    encoders = [dataclasses.replace(base.encoders[0], model=tiny_model), *base.encoders[1:]]
    backends = [b for b in base.backends if b.backend in ("exact", "bm25s")]
    backends.append(BackendSpec("hnsw", build={"M": [8], "ef_construction": [50]},
                                search={"ef": [5, 10, 20, 40, 80, 160]}))
    return dataclasses.replace(base, encoders=encoders, backends=backends, results=str(tmp_path / "tiny.parquet"),
                               synthetic={**base.synthetic, "n_queries": queries}, **({"rerank": rerank} if rerank else {}))


def _picks(frame: pd.DataFrame) -> dict:
    rows = frame if "pipeline" in frame else with_derived(frame)
    out = {}
    for budget in BUDGETS:
        try:
            choice = recommend(rows, budget)
        except NothingFits:
            continue
        out[budget] = (choice.pick["cell_id"], set(choice.ties["cell_id"]))
    return out


def test_decide_skips_settings_past_recall_1_logs_why_and_picks_what_the_exhaustive_sweep_picks(tiny_model, tmp_path):
    config = _config(tiny_model, tmp_path)
    run = run_decision([config], BUDGETS, folder=tmp_path / "decide", announce=lambda text: None)
    skipped = [s for s in run.skips if s.rule == "recall_reached"]
    assert skipped, "the ef line reaches recall 1.0 before ef=160 on 300 documents: later settings are skipped"
    assert all("dev recall@K 1.0 already at ef=" in s.reason for s in skipped)
    measured = run.frames["tiny"]
    assert not set(measured["cell_id"]) & {s.cell_id for s in run.skips}
    log = pd.read_csv(tmp_path / "decide" / "decide-tiny.skips.csv")
    assert sorted(log["cell_id"]) == sorted(s.cell_id for s in run.skips)

    run_sweep(config)  # the exhaustive sweep of the same cells
    exhaustive = ResultStore(config.results_path).load()
    assert len(exhaustive) == len(measured) + len(run.skips)
    picks = _picks(exhaustive)
    for budget, (pick, ties) in _picks(measured).items():
        assert pick in ties | {picks[budget][0]}, "the decision mode picks the exhaustive pick or a row tied with it"
        assert picks[budget][0] not in {s.cell_id for s in run.skips}
        assert not picks[budget][1] & {s.cell_id for s in run.skips} - {s.cell_id for s in skipped}

    again = run_decision([config], BUDGETS, folder=tmp_path / "decide", announce=lambda text: None)
    assert again.rows_measured == run.rows_measured  # resumed: nothing measured twice, the same skips
    assert {s.cell_id for s in again.skips} == {s.cell_id for s in run.skips}
    stored = run_decision([config], BUDGETS, folder=tmp_path / "decide", measure=False)
    assert stored.skips == again.skips and stored.rows_measured == run.rows_measured and stored.waves_run == again.waves_run


def test_decide_halves_rerank_children_over_dev_queries_and_never_drops_the_pick(tiny_model, tiny_cross_encoder,
                                                                                  tmp_path):
    """A random cross-encoder ruins the ranking: halving drops its children on a quarter of the dev queries, against
    the measured first stages, and the exhaustive sweep shows none of them is a pick or a tie."""
    rerank = RerankSpec(rerankers=[RerankerSpec("ce", model=tiny_cross_encoder, max_length=32, alpha=[1.0])],
                        r=[5, 10], k=[20], latency_queries=4)
    config = _config(tiny_model, tmp_path, rerank, queries=300)  # 75 dev queries: 19 in the first round
    run = run_decision([config], BUDGETS, folder=tmp_path / "decide", announce=lambda text: None)
    halved = [s for s in run.skips if s.rule == "halving"]
    assert halved and all("dev queries below" in s.reason for s in halved)
    assert run.pairs_halving > 0

    run_sweep(config)
    exhaustive = ResultStore(config.results_path).load()
    for pick, ties in _picks(exhaustive).values():
        assert not ({pick} | ties) & {s.cell_id for s in halved}


def test_decide_with_a_time_limit_says_what_it_did_not_measure(tiny_model, tmp_path):
    from bench.run.decide import skipped_line

    config = _config(tiny_model, tmp_path)
    run = run_decision([config], BUDGETS, minutes=1e-6, folder=tmp_path / "decide", announce=lambda text: None)
    assert run.rows_measured == 0 and run.waves_skipped
    assert {s.rule for s in run.skips} == {"time limit"}
    assert "waves not started for the time limit" in skipped_line(run)


def test_decide_rejects_bad_input_before_any_work(tmp_path, capsys):
    from bench.cli import main

    assert main(["decide", "configs/tiny.toml", "--p95-ms", "50"]) == 2
    assert main(["decide", "configs/tiny.toml", "--minutes", "0"]) == 2
    assert main(["decide", "configs/tiny.toml", "--reference", str(tmp_path / "none.parquet")]) == 2
    assert not list(tmp_path.glob("decide-*"))


def test_decide_trains_and_scores_no_reranker_when_no_first_stage_fits_a_budget(tiny_model, tiny_cross_encoder, tmp_path,
                                                                                  monkeypatch):
    """A budget no first stage fits: every rerank child is skipped (over every budget) and the cross-encoder is never
    loaded, so never trained (bench.run.prepare.Rerankers.get trains on first use)."""
    from bench.run.prepare import Rerankers

    rerank = RerankSpec(rerankers=[RerankerSpec("ce", model=tiny_cross_encoder, max_length=32, alpha=[1.0])],
                        r=[5], k=[20], latency_queries=4)
    config = _config(tiny_model, tmp_path, rerank)
    loaded = []
    original = Rerankers.get
    monkeypatch.setattr(Rerankers, "get", lambda self, name: loaded.append(name) or original(self, name))
    run = run_decision([config], [Budget(1e-6, 1000)], folder=tmp_path / "decide", announce=lambda text: None)
    assert not loaded and run.pairs_scored == run.pairs_halving == 0
    children = [s for s in run.skips if ">> rerank" in s.what]
    assert children and {s.rule for s in children} == {"over_every_budget"}
    assert (run.frames["tiny"]["stage"] == "first").all()
