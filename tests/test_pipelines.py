"""Pipelines as typed objects (bench.pipeline.ids, bench.pipeline.stages) and what each stage adds (bench.analysis)."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from bench.analysis import Budget, contribution_table, recommend, with_derived
from bench.pipeline.ids import Pipeline
from bench.pipeline.stages import RETRIEVERS, model_name_of, retriever_of
from bench.store.results import read_results

N = 60
DEV = [f"dev{i}" for i in range(N)]
TEST = [f"test{i}" for i in range(N)]
MINILM = "sentence-transformers/all-MiniLM-L6-v2@sha256:83c1a1b15af6d02e"
CROSS = ".cache/models/cross-listwise-fa794334ad52269aeb054417@sha256:9dee9ac8c30ffa08|max_length=192"


def row(dataset="scifact", encoder="minilm-bi", kind="bi", backend="exact", search=None, k=100, dev=None, test=None,
        p95=10.0, **rerank):
    rng = np.random.default_rng(len(dataset) + k)
    dev = rng.uniform(0.2, 0.8, N) if dev is None else np.asarray(dev, float)
    test = rng.uniform(0.2, 0.8, N) if test is None else np.asarray(test, float)
    base = {
        "cell_id": f"{dataset}-{encoder}-{backend}-{k}-{json.dumps(search)}-{rerank}", "dataset": dataset,
        "encoder": encoder, "encoder_type": kind, "model_identity": "text" if kind == "bm25" else MINILM,
        "backend": backend, "build_params": "{}", "search_params": json.dumps(search or {}, sort_keys=True), "k": k,
        "chunking": "", "fusion_weight_chosen_on": "dev" if kind == "hybrid" else "", "stage": "first", "r": 0,
        "reranker": "", "reranker_identity": "", "fusion_alpha": np.nan, "fusion_alpha_chosen_on": "",
        "n_dev_queries": N, "e2e_p50_ms": p95 / 2, "e2e_p95_ms": p95, "index_bytes": 2**20, "encoder_params": 0,
        "reranker_params": 0, "encoder_bytes": np.nan, "n_docs": 1000, "n_chunks": 0, "dim": 8,
        "encoder_saw_eval_docs": False, "reranker_saw_eval_docs": False, "recall_at_k": 1.0, "dev_recall_at_k": 1.0,
        "ndcg_at_10": test.mean(), "query_ids": TEST, "q_ndcg_at_10": test.tolist(),
        "dev_ndcg_at_10": dev.mean(), "dev_query_ids": DEV, "dev_q_ndcg_at_10": dev.tolist()}
    if rerank:
        base.update({"stage": "rerank", "reranker_identity": CROSS, "fusion_alpha_chosen_on": "", **rerank})
    return base


def test_the_same_pipeline_has_the_same_id_on_every_dataset():
    """Reranker names differ between configs and the convex weight dev chose differs; the pipeline does not."""
    convex = {"depth": 1000, "fusion": "convex"}
    a = row("scifact", "hybrid-convex", "hybrid", search={**convex, "weight": 0.55}, k=1000)
    b = row("nfcorpus", "my-hybrid", "hybrid", search={**convex, "weight": 0.6}, k=1000)
    assert Pipeline.of_row(a).pipeline_id == Pipeline.of_row(b).pipeline_id
    assert Pipeline.of_row(a).tuned() == {"weight": 0.55} and Pipeline.of_row(b).tuned() == {"weight": 0.6}
    assert "convex, weight chosen on dev" in Pipeline.of_row(a).name()
    fixed = {**a, "fusion_weight_chosen_on": ""}  # a weight fixed by the config is part of the identity
    assert Pipeline.of_row(fixed).pipeline_id != Pipeline.of_row(a).pipeline_id and "w=0.55" in Pipeline.of_row(fixed).name()
    reranked = [row(d, r=10, fusion_alpha=0.5, reranker=name) for d, name in (("scifact", "ce-distilled"),
                                                                               ("nfcorpus", "ce-distilled-scifact"))]
    assert len({Pipeline.of_row(r).pipeline_id for r in reranked}) == 1
    assert Pipeline.of_row(reranked[0]).without_rerank().pipeline_id == Pipeline.of_row(row()).pipeline_id
    other_r = row(r=20, fusion_alpha=0.5)
    assert Pipeline.of_row(other_r).pipeline_id != Pipeline.of_row(reranked[0]).pipeline_id


def test_every_kind_is_registered_and_an_unknown_kind_is_named():
    assert {"bi", "twin", "bm25", "hybrid"} <= set(RETRIEVERS)
    assert retriever_of(row(kind="bm25", backend="bm25s")).name().startswith("BM25")
    with pytest.raises(ValueError, match="'splade' is not a registered stage kind"):
        retriever_of(row(kind="splade"))


def test_model_names_keep_models_apart():
    assert model_name_of(MINILM) == "all-MiniLM-L6-v2@83c1a1b1"
    assert model_name_of(CROSS) == "cross-listwise@9dee9ac8|max_length=192"
    assert model_name_of(".cache/models/bi-heads-f0a0317d9255201bd58710c1@sha256:79fb7e10cfe04026") == "bi-heads@79fb7e10"


def test_a_reranker_that_adds_nothing_is_not_a_candidate():
    """Three rerank rows over one first stage: one gains 0.1 on every dev query, one ties (noise around 0), one is
    fused at alpha 0. Only the first is credited and can be recommended; the tie is cheaper than the gain but it
    cannot stand in for the first stage it repeats."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.7, N)
    first = row(dev=base, test=base, p95=10.0)
    gains = row(dev=base + 0.1, test=base + 0.05, p95=500.0, r=20, fusion_alpha=0.5)
    ties = row(dev=base + rng.normal(0, 0.05, N), test=base, p95=300.0, r=10, fusion_alpha=0.5)
    zero = row(dev=base, test=base, p95=200.0, r=10, fusion_alpha=0.0)
    frame = with_derived(pd.DataFrame([first, gains, ties, zero]))
    by_r = frame.set_index("cell_id")
    assert not by_r.loc[gains["cell_id"], "adds_nothing"] and by_r.loc[ties["cell_id"], "adds_nothing"]
    assert by_r.loc[zero["cell_id"], "adds_nothing"]
    assert by_r.loc[gains["cell_id"], "stage_delta_dev"] == pytest.approx(0.1)
    assert by_r.loc[gains["cell_id"], "stage_delta_test"] == pytest.approx(0.05)
    assert recommend(frame, Budget(1000, 1000)).pick["cell_id"] == gains["cell_id"]
    assert recommend(frame, Budget(400, 1000)).pick["cell_id"] == first["cell_id"]  # not the tie at 300 ms
    table = contribution_table(frame)
    assert list(table["against"]) == ["its first stage"] and table.iloc[0]["dev delta"] == "+0.100 ± 0.000"


def test_a_fusion_is_credited_against_each_member_alone():
    rng = np.random.default_rng(1)
    dense = rng.uniform(0.2, 0.7, N)
    rows = [row(dev=dense, test=dense, k=100),
            row(encoder="bm25", kind="bm25", backend="bm25s", dev=dense - 0.05, test=dense - 0.05, k=100),
            row(encoder="hyb", kind="hybrid", search={"depth": 100, "fusion": "convex", "weight": 0.5}, k=100,
                dev=dense + 0.02, test=dense + 0.03)]
    table = contribution_table(with_derived(pd.DataFrame(rows))).set_index("against")
    assert table.loc["dense alone", "dev delta"] == "+0.020 ± 0.000" and table.loc["dense alone", "adds"] == "adds"
    assert table.loc["BM25 alone", "test delta"] == "+0.080 ± 0.000"


def test_committed_results_name_their_pipelines():
    """On the reference results: pipeline ids are unique within a dataset, and shared across datasets."""
    frame = with_derived(read_results("results/scifact.parquet", "results/nfcorpus.parquet"))
    assert not frame.duplicated(["dataset", "pipeline_id"]).any()
    assert (frame.groupby("pipeline_id")["dataset"].nunique() == 2).sum() >= 50


def test_end_to_end_adds_samples_not_medians():
    """Encode and search timed 3 passes x 4 queries; a slow encode and a slow search of different queries do not
    hide each other's tail: every total is a real sample of each stage, and no total percentile is below the
    encode's own."""
    from bench.core.timing import LatencyStats, end_to_end

    rng = np.random.default_rng(0)
    encode = LatencyStats.from_ms(rng.exponential(5.0, (3, 4)))
    search = LatencyStats.from_ms(rng.exponential(1.0, (3, 6)))  # more queries timed: the first 4 are paired
    rerank = LatencyStats.from_ms(np.array([100.0, 200.0, 300.0, 400.0, 500.0]))  # one pass, as the reranker's
    e2e = end_to_end(encode, search)
    assert e2e.samples == 12
    np.testing.assert_allclose(e2e.samples_ms, encode.samples_ms + search.samples_ms[:, :4])
    assert e2e.p95_ms >= encode.p95_ms and e2e.p99_ms >= encode.p99_ms >= encode.p95_ms
    full = end_to_end(encode, search, rerank)
    np.testing.assert_allclose(full.samples_ms - e2e.samples_ms, np.tile([100.0, 200.0, 300.0, 400.0], (3, 1)))


def test_a_composed_run_times_every_stage_per_query_and_keeps_the_medians_view():
    """A fake pipeline whose stages take known ticks: the totals are measured per query, the 'from medians' view
    is computed from the same samples, and a slow query in one pass shows in the totals' tail only."""
    from bench.series.composed import composed_columns, time_composed

    class Fake:
        def __init__(self):
            self.calls = 0

        def encode(self, text):
            self.calls += 1
            return text

        def search(self, item):
            return item

        def rerank(self, text, first):
            return first

        def __call__(self, text):
            return self.rerank(text, self.search(self.encode(text)))

    samples = time_composed(Fake(), ["a", "b", "c"], repetitions=2, warmup=1)
    assert set(samples) == {"encode", "search", "rerank", "e2e", "kernel"}
    assert all(v.shape == (2, 3) for v in samples.values())
    assert (samples["e2e"] >= samples["encode"]).all()
    fixed = {name: np.ones((3, 4)) for name in ("encode", "search", "rerank", "kernel")}
    fixed["encode"][0, 0] = 50.0  # one slow encode, pass 0 query 0
    fixed["e2e"] = fixed["encode"] + fixed["search"] + fixed["rerank"]
    columns = composed_columns(fixed)
    assert columns["e2e_p99_ms"] > 40 and columns["medians_e2e_p99_ms"] == pytest.approx(3.0)


def test_composed_figures_join_their_sweep_rows():
    from bench.analysis.series import with_composed
    from bench.store.results import COMPOSED_SCHEMA

    frame = read_results("results/nfcorpus.parquet")
    composed = read_results("results/composed.parquet", schema=COMPOSED_SCHEMA)
    joined = with_composed(frame, composed)
    timed = joined.dropna(subset=["composed_e2e_p95_ms"])
    assert len(joined) == len(frame) and len(timed) == (composed["dataset"] == "nfcorpus").sum() > 0
    assert (timed["composed_e2e_p99_ms"] >= timed["composed_e2e_p95_ms"]).all()


def test_the_report_shows_each_stage_once_per_first_stage_over_exact_search():
    from bench.render.sweep import _one_backend_each

    table = pd.DataFrame({"dataset": ["d"] * 5, "stage": ["ce", "ce", "ce", "fuse", "fuse"],
                          "over": ["m · hnsw", "m · exact", "b · bm25s", "h · hnsw", "h · hnsw"],
                          "against": ["its first stage"] * 3 + ["dense alone", "BM25 alone"]})
    shown = _one_backend_each(table)
    assert shown["over"].tolist() == ["m · exact", "b · bm25s", "h · hnsw", "h · hnsw"]  # table order kept


def test_one_name_is_one_pipeline_and_k_is_named_only_where_it_changes_the_top_10():
    """Over the committed rows: rows that share a name are the same pipeline but for K, and where they differ in K
    their per-query nDCG@10 is the same on dev and test (up to the order of equal scores: at most 1% of queries)."""
    for path in ("results/scifact.parquet", "results/nfcorpus.parquet"):
        frame = with_derived(read_results(path))
        for (_, name), rows in frame.groupby(["dataset", "pipeline_name"]):
            keys = {json.dumps({**Pipeline.of_row(row).key(), "k": None}, sort_keys=True) for _, row in rows.iterrows()}
            assert len(keys) == 1, name
            for column in ("q_ndcg_at_10", "dev_q_ndcg_at_10"):
                first = np.asarray(rows[column].iloc[0])
                for values in rows[column].iloc[1:]:
                    assert (np.abs(np.asarray(values) - first) > 1e-12).mean() <= 0.01, (name, column)
        timed_k = frame[frame["pipeline_name"].str.contains(", top ")]
        assert len(timed_k) and not timed_k["backend"].isin(["exact", "bm25s"]).all()  # ANN names keep their K


def test_a_pipeline_has_one_name_in_the_report_tables_blocks_summary_and_recommend(reranked_tiny_sweep, tmp_path,
                                                                                   capsys):
    from bench.cli import main
    from bench.render import build_report

    path = reranked_tiny_sweep.results_path
    frame = read_results(path)
    report = build_report(frame, ["tiny.parquet"], tmp_path / "plots", "plots/", tables_dir=tmp_path / "tables",
                          pipelines_dir=tmp_path / "pipelines", out=tmp_path / "report.md")
    assert main(["summary", str(path), "--all"]) == 0
    summary = capsys.readouterr().out
    assert main(["recommend", str(path), "--p95-ms", "100000", "--memory-mb", "100000"]) == 0
    recommended = capsys.readouterr().out
    blocks = "".join(p.read_text() for p in (tmp_path / "pipelines").glob("*.toml"))
    tables = "".join(p.read_text() for p in (tmp_path / "tables").rglob("*.csv"))
    derived = with_derived(frame)
    picks = [line.split(" | ")[2] for line in report.split("## The decision")[1].split("\n\n")[1].splitlines()[2:]]
    assert picks
    for shown in set(picks):
        assert shown in set(derived["pipeline"])  # the decision table prints the row's name, nothing else
        for where, text in {"summary": summary, "recommend": recommended, "blocks": blocks, "tables": tables}.items():
            assert shown in text, (shown, where)
    assert not re.search(r"\b[0-9a-f]{12}\b", re.sub(r"\([^)]*\)", "", report.split("## Environment")[0]))


def test_one_latency_per_decision_the_budget_the_tie_break_and_the_table_read_the_same_figure():
    from bench.analysis.decisions import decide
    from bench.analysis.series import with_composed
    from bench.core.figures import timing_text
    from bench.render.decision import decision_lines
    from bench.store.results import COMPOSED_SCHEMA

    frame = with_derived(read_results("results/nfcorpus.parquet"))
    composed = read_results("results/composed.parquet", schema=COMPOSED_SCHEMA)
    budget = Budget(50, 200)
    decision = decide(with_composed(frame, composed), budget)
    pick = decision.choice.pick
    assert decision.e2e_ms[1] == pick["e2e_p95_ms"] <= budget.p95_ms  # what `within` filtered on
    # the pick's own composed run over the budget: the pick is decided again, on the composed figure
    slow = composed.iloc[[0]].assign(sweep_cell_id=pick["cell_id"], host_id=pick["host_id"], e2e_p50_ms=55.0,
                                     e2e_p95_ms=60.0, e2e_p99_ms=70.0, measured_at=pd.Timestamp.now(tz="UTC"))
    joined = with_composed(frame, pd.concat([composed, slow], ignore_index=True))
    assert joined.loc[joined["cell_id"] == pick["cell_id"], "e2e_figure"].eq("composed run").all()
    again = decide(joined, budget)
    assert again.choice.pick["cell_id"] != pick["cell_id"]
    assert again.e2e_ms[1] == again.choice.pick["e2e_p95_ms"] <= budget.p95_ms
    # within budget, the composed figure is the one shown (unmarked), and the table prints exactly it
    fast = slow.assign(e2e_p50_ms=9.0, e2e_p95_ms=10.0, e2e_p99_ms=11.0)
    timed = decide(with_composed(frame, pd.concat([composed, fast], ignore_index=True)), budget)
    assert timed.e2e_source == "composed run" and timed.e2e_ms[1] == 10.0 == timed.choice.pick["e2e_p95_ms"]
    rows = [line for line in "\n".join(decision_lines([decision, timed], {})).splitlines() if line.startswith("| nfcorpus")]
    assert f"| {timing_text(decision.e2e_ms[1])} (sweep) |" in rows[0] and f"| {timing_text(10.0)} |" in rows[1]
