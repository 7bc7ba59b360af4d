import dataclasses
import json

import pytest

from bench.core.cache import cache_dir
from bench.cli import main
from bench.pipeline.config import load_config
from bench.store.results import ResultStore, read_results
from bench.run.sweep import run_sweep


@pytest.fixture
def config(tiny_model, tmp_path):
    base = load_config("configs/tiny.toml")
    encoders = [dataclasses.replace(base.encoders[0], model=tiny_model), *base.encoders[1:]]
    return dataclasses.replace(base, encoders=encoders, results=str(tmp_path / "tiny.parquet"))


class InterruptAfter(ResultStore):
    """A store that is 'killed' after writing `n` cells."""

    def __init__(self, path, n):
        super().__init__(path)
        self.left = n

    def add(self, row):
        if self.left == 0:
            raise KeyboardInterrupt
        super().add(row)
        self.left -= 1


def test_sweep_measures_every_cell_then_resumes(config):
    said = []
    first = run_sweep(config, announce=said.append)
    # the plan comes first, with an estimate per phase; rates are measured and remembered for the next plan
    assert said[0].startswith("tiny: plan: about ") and "encode corpus for minilm" in said[0]
    assert "measure cells of minilm" in said[0] and "measure cells of bm25" in said[0]
    # exact 2 K + ivf 2 nprobe x 2 K + hnsw (ef=10: K=5 only; ef=40: both) + scann 2 x 2; bm25 2 K
    assert first.planned == first.computed == 2 + 4 + 3 + 4 + 2
    assert first.skipped_invalid == 1 and first.corpora_encoded == 1
    rows = read_results(config.results_path)
    assert (rows["measured_at"] >= rows["timestamp"]).all()  # each row stamped when measured, after its run began
    frame = read_results(config.results_path)
    assert len(frame) == first.planned and frame["cell_id"].is_unique
    assert (frame.loc[frame["backend"].isin(["exact", "bm25s"]), "recall_at_k"] == 1.0).all()
    # the synthetic queries copy words of their relevant document: BM25 finds it
    assert frame.loc[frame["backend"] == "bm25s", "rr_at_10"].min() > 0.9
    assert frame[["search_p50_ms", "search_p99_ms", "query_encode_p50_ms", "throughput_qps", "index_bytes",
                  "build_s", "rss_after_build_bytes", "e2e_p95_ms"]].gt(0).all().all()
    assert (frame["search_p50_ms"] <= frame["search_p99_ms"]).all()
    assert frame["recall_at_k"].between(0, 1).all() and frame["ndcg_at_10"].between(0, 1).all()
    assert frame["n_queries"].eq(30).all() and frame["query_ids"].map(len).eq(30).all()
    assert frame["latency_samples"].eq(30 * 2).all()
    # the per-query lists average to the stored means
    for _, row in frame.iterrows():
        assert sum(row["q_ndcg_at_10"]) / 30 == pytest.approx(row["ndcg_at_10"])

    said.clear()
    again = run_sweep(config, announce=said.append)
    assert again.computed == 0 and again.already_done == first.planned and again.corpora_encoded == 0
    assert "nothing to do" in said[0]
    assert read_results(config.results_path)["timestamp"].tolist() == frame["timestamp"].tolist()



def test_the_encode_estimate_is_kept_per_document_network(config, tmp_path):
    """A corpus encode is priced at its own network's rate: all-mpnet-base-v2 at 384 tokens runs ~15x slower than
    MiniLM at 256, so one machine-wide rate announced 4 min for an hour of encoding."""
    from bench.run.estimate import Speeds, encode_rate_key

    run_sweep(config)
    spec = config.encoders[0]
    assert encode_rate_key(spec.model, spec.max_seq_length) in Speeds().values
    longer = dataclasses.replace(spec, max_seq_length=2 * spec.max_seq_length)
    other = dataclasses.replace(config, encoders=[longer], backends=config.backends[:1],
                                results=str(tmp_path / "longer.parquet"))
    said = []
    run_sweep(other, announce=said.append)
    plan = next(text for text in said if ": plan: " in text)
    encode = next((line for line in plan.splitlines() if "encode corpus for minilm" in line), plan)
    assert encode.endswith("(probe)")  # not the shorter network's measured rate
    assert encode_rate_key(spec.model, longer.max_seq_length) in Speeds().values

QUALITY = ["ndcg_at_10", "recall_at_k", "dev_ndcg_at_10", "dev_recall_at_k", "q_ndcg_at_10", "index_bytes"]
RETIMED = ["search_p50_ms", "query_encode_p50_ms", "e2e_p50_ms", "measured_at", "calibration_ms"]


def _by_cell(path):
    return read_results(path).set_index("cell_id").sort_index()


def test_a_drifted_host_retimes_latency_and_keeps_quality(config, monkeypatch):
    first = run_sweep(config)
    before = _by_cell(config.results_path)
    assert before["calibration_ms"].eq(0.5).all() and before["query_encode_calibration_ms"].gt(0).all()
    assert run_sweep(config).computed == 0  # an unchanged host measures nothing
    monkeypatch.setattr("bench.run.sweep.calibrate", lambda: 0.5 * 1.25)  # 25% slower than when the rows were timed
    monkeypatch.setattr("bench.run.measure.time_kernel", lambda: 0.5 * 1.25)
    said = []
    busy = run_sweep(config, announce=said.append)  # a busy (or slower) host alone re-times nothing: one line says so
    assert busy.computed == busy.retimed == 0
    assert any(f"{len(before)} stored rows were timed in 1 run(s) whose calibration kernel read 0.500-0.500 ms, now "
               "0.625 ms" in line and "--retime re-times them" in line for line in said)
    said.clear()
    drifted = run_sweep(config, announce=said.append, retime=True)
    assert drifted.retimed == drifted.computed == first.computed
    assert any("latencies re-timed" in line and "quality is kept" in line for line in said)
    after = _by_cell(config.results_path)
    assert after.index.equals(before.index)
    for column in QUALITY:  # quality as stored, not recomputed (an HNSW built on 2 threads can differ when rebuilt)
        assert after[column].map(lambda v: list(v) if column.startswith("q_") else v).tolist() == \
            before[column].map(lambda v: list(v) if column.startswith("q_") else v).tolist()
    assert (after["measured_at"] > before["measured_at"]).all()
    assert after["calibration_ms"].eq(0.625).all()
    assert run_sweep(config).computed == 0  # the re-timed rows carry the new figure


def test_within_tolerance_or_new_latency_settings(config, monkeypatch):
    from bench.store.results import ResultStore

    run_sweep(config)
    monkeypatch.setattr("bench.run.sweep.calibrate", lambda: 0.5 * 1.05)  # within the default 10%
    assert run_sweep(config).computed == 0
    store = ResultStore(config.results_path)
    store.add({**store.load().iloc[0].to_dict(), "calibration_ms": 1.0})  # one noisy row: its run's median holds
    said = []
    assert run_sweep(config, announce=said.append).computed == 0
    # ... but that row was timed while the host ran 2x slower than the rest of its run: said, and --retime re-times it
    assert any("1 stored rows were timed while the host ran slower than the rest of their run" in line for line in said)
    monkeypatch.setattr("bench.run.measure.time_kernel", lambda: 0.5)
    noisy = run_sweep(config, retime=True)
    assert noisy.retimed == noisy.computed == 1
    assert read_results(config.results_path)["calibration_ms"].lt(1.0).all()
    from bench.analysis import CALIBRATION_TOLERANCE  # what the report counts with: the config's default
    assert CALIBRATION_TOLERANCE == type(config.measure)().calibration_tolerance
    measure = dataclasses.replace(config.measure, repeats=1)  # a latency setting: same cells, re-timed
    again = run_sweep(dataclasses.replace(config, measure=measure))
    assert again.retimed == again.computed == again.planned
    frame = read_results(config.results_path)
    assert frame["latency_samples"].eq(30).all() and frame["latency_settings"].str.contains('"repeats": 1').all()


def test_killed_sweep_completes_only_missing_cells(config):
    with pytest.raises(KeyboardInterrupt):
        run_sweep(config, store=InterruptAfter(config.results_path, 5))
    assert len(read_results(config.results_path)) == 5
    rest = run_sweep(config)
    assert rest.already_done == 5 and rest.computed == rest.planned - 5
    frame = read_results(config.results_path)
    assert len(frame) == rest.planned and frame["cell_id"].is_unique


def test_redo_remeasures(config):
    run_sweep(config)
    redo = run_sweep(config, redo=True)
    assert redo.computed == redo.planned
    assert len(read_results(config.results_path)) == redo.planned


def test_cli_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "b"\ndataset = "synthetic"\nsplit = "test"\nk = [5]\n'
                   '[[encoders]]\nname = "e"\n[[backends]]\nbackend = "hnsw"\nsearch = { eff = [10] }\n')
    assert main(["run", str(bad)]) == 2
    assert "hnsw: unknown search parameter(s) ['eff']" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "no such config file" in capsys.readouterr().err


def test_grid_skips_cross_parameter_violations_but_not_hopeless_points(config):
    from bench.pipeline.config import BackendSpec
    from bench.data.datasets import synthetic_dataset
    from bench.search.indexes import ParamError
    from bench.run.plan import plan_cells

    ds = synthetic_dataset(n_docs=300, n_queries=30, n_topics=6)
    ivf = BackendSpec("faiss_ivf", build={"nlist": [4, 16]}, search={"nprobe": [2, 8]})
    cells, skipped = plan_cells(dataclasses.replace(config, backends=[ivf], k=[5]), ds, config.encoders[0])
    assert skipped == 1  # nprobe 8 > nlist 4
    assert sorted((c.build["nlist"], c.search["nprobe"]) for c in cells) == [(4, 2), (16, 2), (16, 8)]
    hopeless = BackendSpec("faiss_ivf", build={"nlist": [4]}, search={"nprobe": [8]})
    with pytest.raises(ParamError, match=r"nprobe \(8\) must be between 1 and nlist \(4\).*invalid for every"):
        plan_cells(dataclasses.replace(config, backends=[hopeless], k=[5]), ds, config.encoders[0])


def test_a_cell_id_depends_on_the_cell_alone_not_on_its_siblings(config, tiny_cross_encoder):
    """Adding an alpha to a reranker, a depth to a hybrid or a backend to an encoder's list leaves every existing cell's
    id as it was (it once orphaned 8 variant rows); the migration maps the old rule's ids onto these."""
    from bench.pipeline.config import EncoderSpec, RerankerSpec, RerankSpec
    from bench.data.datasets import synthetic_dataset
    from bench.run.plan import plan_cells

    ds = synthetic_dataset(n_docs=300, n_queries=30, n_topics=6)
    dense = dataclasses.replace(config.encoders[0], backends=["exact"])
    hybrid = EncoderSpec("fused", type="hybrid", hybrid={"dense": dense.name, "fusion": "rrf", "depth": [20]},
                         backends=["exact"])

    def ids(alphas, depths, backends):
        rerank = RerankSpec(rerankers=[RerankerSpec("ce", model=tiny_cross_encoder, max_length=32, alpha=alphas)],
                            r=[5], k=[10])
        grid = dataclasses.replace(config, rerank=rerank, k=[10])
        found = {}
        for spec in (dataclasses.replace(dense, backends=backends),
                     dataclasses.replace(hybrid, hybrid={**hybrid.hybrid, "depth": depths}, backends=backends)):
            cells, _ = plan_cells(grid, ds, spec, identity="m@sha256:0")
            for cell in cells:
                found[(spec.type, cell.backend, json.dumps(cell.search, sort_keys=True))] = cell.cell_id
                found.update({(spec.type, cell.backend, json.dumps(cell.search, sort_keys=True), ch.alpha): ch.cell_id
                              for ch in cell.children})
        return found

    before = ids([1.0], [20], ["exact"])
    after = ids([1.0, 0.5], [20, 40], ["exact", "hnsw"])
    assert len(after) > len(before) and {key: after[key] for key in before} == before


def test_sweep_with_reranking(config, tiny_cross_encoder, monkeypatch):
    from bench.pipeline.config import RerankerSpec, RerankSpec

    rerank = RerankSpec(rerankers=[RerankerSpec("ce", model=tiny_cross_encoder, max_length=32, alpha=[1.0, 0.0])],
                        r=[5, 10], k=[20], latency_queries=4)
    config = dataclasses.replace(config, rerank=rerank,
                                 backends=[b for b in config.backends if b.backend in ("exact", "hnsw")])
    first = run_sweep(config)
    frame = read_results(config.results_path)
    reranked = frame[frame["r"] > 0]
    # K=20 cells: exact and hnsw ef=40; each with 2 alphas x 2 R
    assert len(reranked) == 2 * 2 * 2 and (reranked["r"] <= reranked["k"]).all()
    assert first.computed == len(frame)
    assert reranked["rerank_p50_ms"].gt(0).all() and reranked["rerank_latency_queries"].eq(4).all()
    assert (reranked["e2e_p50_ms"] > reranked["rerank_p50_ms"]).all()
    assert frame.loc[frame["r"] == 0, "rerank_p50_ms"].isna().all()
    assert frame["stage"].tolist() == ["rerank" if r > 0 else "first" for r in frame["r"]]
    exact = frame[frame["backend"] == "exact"]
    plain = exact[(exact["r"] == 0) & (exact["k"] == 20)].iloc[0]
    fused0 = exact[(exact["fusion_alpha"] == 0.0) & (exact["r"] == 10)].iloc[0]
    assert fused0["q_ndcg_at_10"].tolist() == plain["q_ndcg_at_10"].tolist()  # alpha 0 = first stage
    # each pair scored once: the second cell at K=20 found the exact cell's pairs in the cache;
    # the test queries and the 8 dev queries (25% of the synthetic train split) are both reranked
    assert frame["n_dev_queries"].eq(8).all() and frame["dev_query_ids"].map(len).eq(8).all()
    assert reranked["cross_pairs_scored"].sum() <= (30 + 8) * 10
    from bench.run.estimate import Speeds, score_rate_key  # the scoring rate is remembered for this variant, not any reranker

    assert score_rate_key(tiny_cross_encoder, 32) in Speeds().values
    again = run_sweep(config)
    assert again.computed == 0
    stored = _by_cell(config.results_path)
    monkeypatch.setattr("bench.run.sweep.calibrate", lambda: 1.0)  # a drifted host: rerank rows re-timed too
    assert run_sweep(config).computed == 0
    retimed = run_sweep(config, retime=True)
    assert retimed.retimed == len(frame)
    after = _by_cell(config.results_path)
    assert after["fusion_alpha"].equals(stored["fusion_alpha"]) and after["ndcg_at_10"].equals(stored["ndcg_at_10"])
    assert (after.loc[after["r"] > 0, "measured_at"] > stored.loc[stored["r"] > 0, "measured_at"]).all()
    redo = run_sweep(config, redo=True)
    redone = read_results(config.results_path)
    assert redo.computed == len(redone) and redone.loc[redone["r"] > 0, "cross_pairs_scored"].eq(0).all()

    # the report regenerates byte for byte, with real PNG plots
    out, plots = config.results_path.parent / "report.md", config.results_path.parent / "plots"
    assert main(["report", str(config.results_path), "--out", str(out), "--plots", str(plots)]) == 0
    text = out.read_bytes()
    assert main(["report", str(config.results_path), "--out", str(out), "--plots", str(plots)]) == 0
    assert out.read_bytes() == text
    pngs = sorted(plots.glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    report = text.decode()
    assert report.startswith("# Retrieval stack benchmark report\n")
    assert report.splitlines()[4] == "## The decision"
    assert "Settings, depths and every \"best\" row are chosen on 8 dev queries (25% of train (seed 0))" in report
    for section in ["### Cost per encoder type", "### Frontiers (dev quality)", "### K x R",
                    "### Significance against the baseline", "### What each stage adds"]:
        assert section in report
    assert all(f"plots/{p.name}" in report for p in pngs)


def test_trained_towers_are_encoder_types_in_the_sweep(config):
    from bench.pipeline.config import EncoderSpec

    train = {"mode": "heads", "backbone": config.encoders[0].model, "max_seq_length": 64, "epochs": 3,
             "batch_size": 10, "hard_negatives": "none"}
    towers = [EncoderSpec("bi-heads", "bi", train=train), EncoderSpec("twin-heads", "twin", train=train)]
    exact = [b for b in config.backends if b.backend == "exact"]
    config = dataclasses.replace(config, encoders=[config.encoders[0], *towers], backends=exact)
    summary = run_sweep(config)
    assert summary.computed == 3 * 2
    frame = read_results(config.results_path).set_index("encoder")
    assert dict(frame["encoder_mode"].groupby(level=0).first()) == {"minilm": "pretrained", "bi-heads": "heads",
                                                                      "twin-heads": "heads"}
    params = frame["encoder_params"].groupby(level=0).first()
    head = 32 * 32 + 32  # a 32-d linear projection with bias
    assert params["bi-heads"] == params["minilm"] + head and params["twin-heads"] == params["minilm"] + 2 * head
    assert frame.loc[["bi-heads", "twin-heads"], "encoder_train_s"].gt(0).all()
    assert frame.loc["minilm", "encoder_train_s"].isna().all()
    from conftest import render_report

    text, tables = render_report(read_results(config.results_path), config.results_path.parent / "report")
    assert "### Encoder types, trained like for like" in text
    assert "twin-heads,twin-tower,heads," in tables["encoder-types.csv"] and "p Holm" in tables["encoder-types.csv"]
    # the synthetic splits judge different documents: the guard drops nothing, and the report splits by it
    assert "### What trained models gain on seen and unseen documents" in text
    assert not frame["encoder_saw_eval_docs"].any()
    # trained once: a re-run measures nothing and trains nothing
    assert run_sweep(config).computed == 0
    from bench.pipeline.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"encoders\[0\].train: only types bi and twin"):
        parse_config({"name": "b", "dataset": "synthetic", "split": "test", "k": [5],
                      "encoders": [{"name": "x", "type": "bm25", "train": train}], "backends": [{"backend": "exact"}]},
                     "inline.toml")


def test_ray_executor_gives_the_local_numbers(config, tmp_path, monkeypatch):
    from bench.run.executors import RayExecutor

    one_thread = dataclasses.replace(config.measure, build_threads=1, throughput_threads=1)
    local = dataclasses.replace(config, measure=one_thread)
    on_ray = dataclasses.replace(local, results=str(tmp_path / "ray.parquet"))
    run_sweep(local)
    executor = RayExecutor(num_cpus=2)
    try:
        summary = run_sweep(on_ray, executor=executor)
    finally:
        executor.close()
    assert summary.computed == summary.planned
    a = read_results(local.results_path).set_index("cell_id").sort_index()
    b = read_results(on_ray.results_path).set_index("cell_id").sort_index()
    assert list(a.index) == list(b.index)  # the same cells, the same schema
    for column in ["recall_at_k", "ndcg_at_10", "recall_at_100", "rr_at_10", "index_bytes", "queries_short"]:
        assert a[column].tolist() == b[column].tolist(), column
    assert b["search_p50_ms"].gt(0).all() and b["host_id"].eq(a["host_id"].iloc[0]).all()
    # resumable like a local run: nothing left to do (the workers timed the real calibration kernel: the same
    # host reads about the same figure)
    monkeypatch.setattr("bench.run.sweep.calibrate", lambda: float(b["calibration_ms"].median()))
    assert run_sweep(on_ray, executor=LocalExecutorForCheck()).computed == 0


class LocalExecutorForCheck:
    def run(self, measurer, groups, desc, total):
        raise AssertionError("nothing should be measured")


def _synthetic_as_beir(root, seed):
    """The synthetic collection (test and train splits) written in BEIR layout under `root`."""
    import json

    from bench.data.datasets import synthetic_dataset

    test, train = (synthetic_dataset(n_docs=300, n_queries=30, n_topics=6, seed=seed, split=s) for s in ("test", "train"))
    root.mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": t}) + "\n"
                                               for d, t in zip(test.doc_ids, test.doc_texts)))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for ds in (test, train)
                                                for q, t in zip(ds.query_ids, ds.query_texts)))
    (root / "qrels").mkdir()
    for ds in (test, train):
        (root / "qrels" / f"{ds.split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"{q}\t{d}\t{g}\n" for q, judged in ds.qrels.items() for d, g in judged.items()))
    return root


def test_two_datasets_in_one_report_and_recommend_per_dataset(config, tmp_path, capsys):
    exact = [b for b in config.backends if b.backend in ("exact", "hnsw")]
    one = dataclasses.replace(config, backends=exact)
    other = dataclasses.replace(one, dataset=str(_synthetic_as_beir(tmp_path / "synth-b", seed=7)), synthetic={},
                                results=str(tmp_path / "b.parquet"))
    run_sweep(one)
    run_sweep(other)
    paths = [str(one.results_path), str(other.results_path)]
    out, plots = tmp_path / "report.md", tmp_path / "plots"
    assert main(["report", *paths, "--out", str(out), "--plots", str(plots)]) == 0
    text = out.read_text()
    assert "## Across datasets" in text and "## Why, on synth-b" in text and "## Why, on synthetic" in text
    # the decision: a line per dataset and budget, each with its block
    decision = text.split("## The decision")[1].split("\n\n")[1].splitlines()[2:]
    assert sorted({line.split(" | ")[0] for line in decision}) == ["| synth-b", "| synthetic"]
    # a budget nothing fits on this host (5 ms, on a busy one) says so; every other line links its block
    assert len(decision) == 2 * 6 and all(".toml)" in line or "nothing fits" in line for line in decision)
    assert sum(".toml)" in line for line in decision) >= 2 * 4
    # one pipeline for both (named by its model's identity, the same on both), a test column per dataset
    over = text.split("## Across datasets")[1].split("\n\n")[2].splitlines()
    assert over[0].startswith("| budget | pipeline | mean dev nDCG@10 | mean test nDCG@10 | synth-b test | synthetic test |")
    assert (plots / "synth-b" / "pareto_ndcg.png").exists() and (plots / "synthetic" / "pareto_ndcg.png").exists()
    capsys.readouterr()
    assert main(["recommend", *paths, "--p95-ms", "1000", "--memory-mb", "1000"]) == 0
    printed = capsys.readouterr().out
    assert "synth-b: recommended" in printed and "synthetic: recommended" in printed
    assert main(["recommend", *paths, "--p95-ms", "1000", "--memory-mb", "1000", "--over-mean"]) == 0
    assert "over the mean of 2 datasets (synth-b, synthetic; each weighs the same): recommended" in capsys.readouterr().out
    assert main(["summary", *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["dataset", "K", "recall@K"] and lines[0].endswith("pipeline")
    assert max(map(len, lines)) <= 160
    # one row per dataset, encoder, backend and K: bm25 is not in these configs' backends, so 2 x 2 x 2
    assert sum(1 for line in lines if line.split()[:1] in (["synthetic"], ["synth-b"])) == 2 * 2 * 2


def test_reranking_one_dataset_with_a_model_trained_on_another(config, tmp_path, tiny_model, tiny_cross_encoder):
    from bench.pipeline.config import RerankerSpec, RerankSpec

    train = {"dataset": "synthetic", "backbone": tiny_cross_encoder, "first_stage": tiny_model, "negatives": 3,
             "batch_queries": 8, "max_length": 32, "neg_rank_lo": 1, "neg_rank_hi": 10, "dev_r": 5}
    rerank = RerankSpec(rerankers=[RerankerSpec("ce", train=train, max_length=32, alpha=[1.0, "dev"])], r=[5],
                        k=[5], latency_queries=4)
    other = dataclasses.replace(config, dataset=str(_synthetic_as_beir(tmp_path / "synth-c", seed=11)), synthetic={},
                                encoders=config.encoders[:1], rerank=rerank,
                                backends=[b for b in config.backends if b.backend == "exact"])
    run_sweep(other)
    frame = read_results(other.results_path)
    reranked = frame[frame["r"] > 0]
    assert len(reranked) == 2 and (reranked["dataset"] == "synth-c").all()
    # "dev": the alpha of ALPHAS best on this cell's dev queries, so never below alpha = 1 there
    alone, chosen = (reranked[reranked["fusion_alpha_chosen_on"] == rule].iloc[0] for rule in ("", "dev"))
    assert alone["fusion_alpha"] == 1.0 and chosen["dev_ndcg_at_10"] >= alone["dev_ndcg_at_10"]
    assert not reranked["reranker_saw_eval_docs"].any() and reranked["reranker_train_s"].gt(0).all()


def test_cli_run_is_quiet_and_counts_depths_that_do_not_fit(tmp_path, capsys, tiny_cross_encoder):
    text = ('name = "b"\ndataset = "synthetic"\nsplit = "test"\nk = [5, 20]\nsynthetic = { n_docs = 300, n_queries = 30 }\n'
            '[[encoders]]\nname = "bm25"\ntype = "bm25"\n[[backends]]\nbackend = "bm25s"\n'
            f'[rerank]\nr = [10]\n[[rerank.rerankers]]\nname = "c"\nmodel = "{tiny_cross_encoder}"\nmax_length = 32\n')
    (tmp_path / "b.toml").write_text(text)
    assert main(["run", str(tmp_path / "b.toml"), "--results", str(tmp_path / "b.parquet")]) == 0
    printed = capsys.readouterr()
    assert "DEBUG" not in printed.err and "b: plan: about" in printed.err
    # R = 10 does not fit K = 5: one skipped point, and the K = 20 cell is reranked
    assert "3 rows measured and 0 re-timed (first stage + rerank), 1 grid points skipped (invalid combinations, e.g. ef < K or R > K)" \
        in printed.out


def test_cells_no_longer_configured_are_kept_unless_pruned(config):
    run_sweep(config)
    before = read_results(config.results_path)
    smaller = dataclasses.replace(config, backends=[b for b in config.backends if b.backend != "hnsw"])
    said = []
    run_sweep(smaller, announce=said.append)
    assert "3 stored rows are of cells no longer in the config (kept; --prune moves them to the history file)" in " ".join(said)
    assert len(read_results(config.results_path)) == len(before)
    said.clear()
    summary = run_sweep(smaller, prune=True, announce=said.append)
    after = read_results(config.results_path)
    assert summary.computed == 0 and len(after) == len(before) - 3 and "hnsw" not in set(after["backend"])
    from bench.store.results import history_path

    assert any("--prune moved 3 rows of cells no longer in the config to" in line for line in said)
    assert set(read_results(history_path(config.results_path))["backend"]) == {"hnsw"}  # moved, not deleted


def test_precision_variants_share_or_reencode_the_corpus_and_get_their_section(config, tmp_path):
    minilm = config.encoders[0]
    variants = [dataclasses.replace(minilm, name="minilm-q8", query_precision="int8", backends=["exact"]),
                dataclasses.replace(minilm, name="minilm-int8", query_precision="int8", doc_precision="int8",
                                    backends=["exact"]),
                dataclasses.replace(minilm, name="minilm-ort", query_runtime="onnxruntime", backends=["exact"]),
                dataclasses.replace(minilm, name="minilm-ort-docs", doc_runtime="onnxruntime", backends=["exact"])]
    config = dataclasses.replace(config, encoders=[minilm, *variants])
    summary = run_sweep(config)
    assert summary.corpora_encoded == 3  # fp32 (shared with the query-side variants), int8, and by ONNX Runtime
    frame = read_results(config.results_path)
    exact = frame[(frame["backend"] == "exact") & (frame["k"] == 5)].set_index("encoder")
    assert exact.loc["minilm-q8", ["query_precision", "doc_precision"]].tolist() == ["int8", "fp32"]
    assert exact.loc["minilm-int8", "doc_precision"] == "int8" and exact["encode_batch_size"].eq(minilm.batch_size).all()
    assert exact["encoder_device"].eq("cpu").all() and exact["query_encode_calibration_ms"].gt(0).all()
    assert exact.loc["minilm-q8", "corpus_encode_s"] == exact.loc["minilm", "corpus_encode_s"]
    # ONNX Runtime runs the exported query network: the same vectors as torch, so the same ranking and quality
    assert exact.loc["minilm-ort", "query_runtime"] == "onnxruntime" and exact.loc["minilm", "query_runtime"] == "torch"
    assert exact.loc["minilm-ort", "ndcg_at_10"] == pytest.approx(exact.loc["minilm", "ndcg_at_10"], abs=1e-9)
    # its size is the exported file, weights inside (no external data file beside it)
    assert exact.loc["minilm-ort", "encoder_bytes"] == pytest.approx(exact.loc["minilm", "encoder_bytes"], rel=0.1)
    assert sorted(p.suffix for p in (cache_dir() / "onnx").iterdir()) == [".onnx", ".sha256"]  # + its checksum
    from conftest import render_report

    text, tables = render_report(frame, tmp_path / "report")
    assert "### Encoding levers: precision per side" in text and "baseline minilm" in text
    table = tables["encoding-levers.csv"]
    assert "\nminilm-q8,int8,fp32," in table and "\nminilm-int8,int8,int8," in table
    assert "\nminilm-ort,fp32,fp32,onnxruntime,torch," in table and "delta vs fp32" in table.splitlines()[0]
    # the corpus encoded by ONNX Runtime: its own document identity, cells and corpus cache; the same rankings
    assert exact.loc["minilm-ort-docs", "doc_runtime"] == "onnxruntime" and exact.loc["minilm", "doc_runtime"] == "torch"
    assert exact.loc["minilm-ort-docs", "model_identity"].endswith(",doc_runtime=onnxruntime")
    assert "\nminilm-ort-docs,fp32,fp32,torch,onnxruntime," in table


def test_rows_summed_from_medians_are_retimed_per_sample_without_scoring_again(config, tiny_cross_encoder,
                                                                                monkeypatch):
    """Rows whose e2e was summed from per-query medians (before per-sample sums) are re-timed by --retime: their
    stages timed again and summed per sample, their quality kept. A rerank child is only timed (its pairs are not
    scored again), also when its reranker's weights are gone and the spec's model here has others (the row says
    which weights were timed); a first-stage row of another encoder model is measured whole."""
    from bench.pipeline.config import RerankerSpec, RerankSpec

    rerank = RerankSpec(rerankers=[RerankerSpec("ce", model=tiny_cross_encoder, max_length=32, alpha=[1.0])],
                        r=[5, 10], k=[20], latency_queries=4)
    config = dataclasses.replace(config, rerank=rerank,
                                 backends=[b for b in config.backends if b.backend in ("exact", "hnsw")])
    run_sweep(config)
    store = ResultStore(config.results_path)
    measured = store.load()
    current = measured.loc[measured["r"] > 0, "reranker_identity"].iloc[0]
    assert measured.loc[measured["r"] > 0, "rerank_timed_identity"].eq(current).all()
    first_only = measured[(measured["r"] == 0) & (measured["k"] == 5) & (measured["backend"] == "hnsw")].iloc[0]
    for row in measured.to_dict("records"):
        old = {"e2e_method": "sum of per-query medians", "e2e_p95_ms": row["query_encode_p95_ms"] / 2,
               "rerank_timed_identity": ""}
        if row["r"] > 0:
            old["reranker_identity"] = "gone@sha256:0000"  # trained elsewhere; this cache holds other weights
        if row["cell_id"] == first_only["cell_id"]:
            old["model_identity"] = "retrained@sha256:0000"
        store.add({**row, **old})
    said = []
    assert run_sweep(config, announce=said.append).computed == 0  # without --retime: kept, one line says so
    assert any(f"{len(measured)} stored rows carry an e2e summed from per-query medians" in line for line in said)

    def no_scoring(*args, **kwargs):
        raise AssertionError("a re-timed child's pairs were scored again")

    monkeypatch.setattr("bench.run.measure.cross_scores", no_scoring)
    # a rebuilt index may land below the rerank threshold (HNSW builds on 2 threads vary): a re-timed first stage keeps
    # its stored quality, so its children are re-timed on the stored recall
    monkeypatch.setattr("bench.run.measure.CellMeasurer._recall", lambda self, ids, truth: {"recall_at_k": 0.0,
                                                                                        "dev_recall_at_k": 0.0})
    said.clear()
    retimed = run_sweep(config, retime=True, announce=said.append)
    assert retimed.computed == len(measured) and retimed.retimed == len(measured) - 1
    plan = next(line for line in said if ": plan" in line)  # the estimate times the stage, scores no pairs
    assert "time ce at R=5 (re-timed rows)" in plan and "score pairs" not in plan
    after = _by_cell(config.results_path)
    before = measured.set_index("cell_id").sort_index()
    assert after["e2e_method"].eq("per-sample sums").all()
    assert (after["e2e_p95_ms"] >= after["query_encode_p95_ms"]).all() and (after["e2e_p99_ms"] >= after["e2e_p95_ms"]).all()
    children = after[after["r"] > 0]
    assert children["reranker_identity"].eq("gone@sha256:0000").all()  # the quality's model, as stored
    assert children["rerank_timed_identity"].eq(current).all()  # the weights timed
    assert children["q_ndcg_at_10"].map(list).tolist() == before.loc[children.index, "q_ndcg_at_10"].map(list).tolist()
    assert (children["e2e_p50_ms"] > children["rerank_p50_ms"]).all()
    assert after.loc[first_only["cell_id"], "model_identity"] == first_only["model_identity"]  # measured whole
    assert run_sweep(config, retime=True).computed == 0


def test_the_plan_trains_a_shared_model_once_counts_its_steps_and_resumes_its_checkpoint(config, tmp_path, tiny_model,
                                                                                       tiny_cross_encoder):
    """Variants of one trained reranker (fp32, int8) plan one training; its steps count the judged pairs and the
    title pseudo-queries (as bench.models.train.cross does); after a checkpoint the plan counts only the steps left."""
    import json

    from bench.pipeline.config import RerankerSpec, RerankSpec
    from bench.run.prepare import Rerankers
    from bench.data.splits import positives

    train = {"dataset": "synthetic", "backbone": tiny_cross_encoder, "first_stage": tiny_model, "negatives": 3,
             "batch_queries": 8, "max_length": 32, "neg_rank_lo": 1, "neg_rank_hi": 10, "dev_r": 5,
             "title_queries": 20}
    rerank = RerankSpec(rerankers=[RerankerSpec("ce", train=train, max_length=32, alpha=[1.0]),
                                   RerankerSpec("ce-int8", train=train, max_length=32, alpha=[1.0], precision="int8")],
                        r=[5], k=[5], latency_queries=4)
    other = dataclasses.replace(config, dataset=str(_synthetic_as_beir(tmp_path / "synth-d", seed=12)), synthetic={},
                                encoders=config.encoders[:1], rerank=rerank,
                                backends=[b for b in config.backends if b.backend == "exact"])
    phases = run_sweep(other, plan_only=True).phases
    training = [p for p in phases if p.what.startswith("train ")]
    assert len(training) == 1 and training[0].basis in ("probe", "measured here")
    train_config, splits, model = Rerankers(other, None).training("ce")
    examples = sum(len(p) for p in positives(splits.train).values()) + 20
    assert training[0].amount == -(-examples // 8)
    calibration = [p for p in phases if p.what.startswith("calibrate ")]  # dev queries' top-dev_r, scored after it
    assert len(calibration) == 1 and calibration[0].amount == len(splits.dev.query_ids) * 5
    scoring = [p for p in phases if p.what.startswith("score pairs: ")]  # one phase per reranker, not per first stage
    assert [p.what.split()[2] for p in scoring] == ["ce", "ce-int8"]
    partial = model.with_name(model.name + ".partial")
    partial.mkdir(parents=True)
    (partial / "progress.json").write_text(json.dumps({"step": 2, "total_steps": training[0].amount}))
    resumed = [p for p in run_sweep(other, plan_only=True).phases if p.what.startswith("train ")]
    assert resumed[0].amount == training[0].amount - 2 and "resuming after step 2" in resumed[0].what


def test_the_plan_counts_pairs_that_first_stages_share_once():
    """Pairs are scored once per reranker (the score cache): BM25 after a dense list adds the "other" share, a hybrid
    of two listed sides the small hybrid share; a hybrid without its sides listed is a list of its own."""
    from types import SimpleNamespace

    from bench.run.estimate import NOVEL_SHARE, distinct_pairs

    def stage(name, kind, dense=None):
        return SimpleNamespace(spec=SimpleNamespace(name=name, type=kind), dense=dense)

    dense = stage("minilm", "bi")
    hybrid = stage("hybrid", "hybrid", dense=dense)
    listed, distinct = distinct_pairs(10, [(hybrid, 20), (dense, 20), (stage("bm25", "bm25"), 20)])
    assert listed == 600
    assert distinct == round(200 * (1 + NOVEL_SHARE["other"] + NOVEL_SHARE["hybrid of listed sides"]))
    assert distinct_pairs(10, [(hybrid, 20), (dense, 20)])[1] == round(200 * (1 + NOVEL_SHARE["other"]))
    assert distinct_pairs(10, [(dense, 20)]) == (200, 200)
