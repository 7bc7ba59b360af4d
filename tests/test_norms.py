"""normalize = false: the raw pooled vector (before the Normalize module), its own identity and cache, cell ids of
normalized encoders unchanged, and the norms watched."""

import dataclasses
import re

import numpy as np
import pytest


def test_an_unnormalized_encoder_gives_the_raw_pooled_vectors(tiny_model):
    from bench.models.encoders import SentenceEncoder

    unit = SentenceEncoder(tiny_model, 32)
    raw = SentenceEncoder(tiny_model, 32, normalize=False)
    texts = ["a first text", "another, longer second text with more words"]
    u, r = unit.encode_docs(texts), raw.encode_docs(texts)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(np.linalg.norm(r, axis=1), 1.0)
    np.testing.assert_allclose(r / np.linalg.norm(r, axis=1, keepdims=True), u, atol=1e-5)  # the same direction
    assert raw.identity == unit.identity + "|unnormalized" and raw.doc_identity != unit.doc_identity
    with pytest.raises(ValueError, match="torch only"):
        SentenceEncoder(tiny_model, 32, query_runtime="onnxruntime", normalize=False)


def test_normalize_false_runs_in_the_sweep_with_its_own_cells(tiny_model, tmp_path):
    from bench.pipeline.config import load_config
    from bench.series.norms import top_norm_share
    from bench.store.results import read_results
    from bench.run.sweep import run_sweep

    base = load_config("configs/tiny.toml")
    dense = dataclasses.replace(base.encoders[0], model=tiny_model)
    raw = dataclasses.replace(dense, name="raw", normalize=False)
    config = dataclasses.replace(base, encoders=[dense, raw], results=str(tmp_path / "n.parquet"),
                                 backends=[b for b in base.backends if b.backend == "exact"])
    run_sweep(config)
    rows = read_results(config.results_path)
    assert rows.groupby("encoder")["normalize"].first().to_dict() == {dense.name: True, "raw": False}
    assert set(rows.loc[rows["encoder"] == "raw", "cell_id"]).isdisjoint(rows.loc[rows["encoder"] != "raw", "cell_id"])
    # a normalized encoder's cell ids are the ones they were before the option existed
    from bench.run.plan import _spec_key
    assert "normalize" not in _spec_key(dense) and _spec_key(raw)["normalize"] is False
    docs = np.array([[1.0, 0.0], [10.0, 0.0], [0.0, 1.0]] + [[0.0, 1.0]] * 97)
    assert top_norm_share(docs, np.array([[1.0, 0.1]]), top=1) == 1.0  # the largest norm wins an inner product


def test_the_norms_table_reads_unit_norms_for_normalized_encoders(tiny_model, tmp_path):
    from bench.series.norms import norms_table, norms_text

    text = open("configs/tiny.toml").read()
    config = tmp_path / "tiny.toml"
    config.write_text(text.replace("sentence-transformers/all-MiniLM-L6-v2", tiny_model))
    table = norms_table(config)
    assert len(table) and np.allclose(table[["p1", "p50", "p99"]].to_numpy(dtype=float), 1.0, atol=1e-4)
    assert "spread 1.00" in norms_text(table)


def test_the_mips_reduction_keeps_inner_products_and_runs_every_backend_family(tiny_model, tmp_path):
    from bench.search.indexes import exact_neighbors, make_index
    from bench.data.metrics import recall_vs_exact
    from bench.search.mips import ReducedIndex, augment_docs, augment_queries

    rng = np.random.default_rng(0)
    docs = (rng.normal(size=(2000, 16)) * rng.lognormal(0, 0.5, size=(2000, 1))).astype(np.float32)
    queries = rng.normal(size=(50, 16)).astype(np.float32) * 3
    augmented, top = augment_docs(docs)
    np.testing.assert_allclose(np.linalg.norm(augmented, axis=1), top, rtol=1e-5)  # every document at norm M
    np.testing.assert_allclose(augment_queries(queries) @ augmented.T, queries @ docs.T, rtol=1e-4, atol=1e-4)
    truth = exact_neighbors(docs, queries, 10, 1).ids
    # at exhaustive settings every family finds the exact inner-product top 10 through the reduction (how fast each
    # gets there is what configs/unnormalized.toml measures: a graph over reduced vectors can need far more effort)
    for backend, build, search in [("exact", {}, {}), ("hnsw", {"M": 16, "ef_construction": 200}, {"ef": 2000}),
                                   ("faiss_ivf", {"nlist": 16}, {"nprobe": 16})]:
        index = ReducedIndex(make_index(backend, **build))
        index.fit(docs, 1)
        index.set_search(10, **search)
        found = index.batch_query(queries, 1).ids
        assert recall_vs_exact(found, truth) >= 0.99, backend
        assert np.array_equal(index.query(queries[0])[:3], found[0, :3])


def test_a_reduced_encoder_runs_in_the_sweep_as_its_own_pipeline(tiny_model, tmp_path):
    from bench.analysis import with_derived
    from bench.pipeline.config import load_config
    from bench.store.results import read_results
    from bench.run.sweep import run_sweep

    base = load_config("configs/tiny.toml")
    unit = dataclasses.replace(base.encoders[0], model=tiny_model)
    raw = dataclasses.replace(unit, name="raw", normalize=False)
    reduced = dataclasses.replace(raw, name="raw-reduced", mips_reduction=True)
    config = dataclasses.replace(base, encoders=[unit, raw, reduced], results=str(tmp_path / "m.parquet"), k=[10],
                                 backends=[b for b in base.backends if b.backend in ("exact", "hnsw")])
    run_sweep(config)
    rows = with_derived(read_results(config.results_path))
    assert rows.groupby("encoder")["mips_reduction"].first().to_dict() == {"raw": False, "raw-reduced": True,
                                                                          unit.name: False}
    exact = rows[rows["backend"] == "exact"].set_index("encoder")
    assert (exact.loc[["raw-reduced"], "recall_at_k"] == 1.0).all()  # the reduction is exact under exact search
    assert "(MIPS reduction)" in exact.loc[["raw-reduced"], "pipeline_name"].iloc[0]
    assert set(rows.loc[rows["encoder"] == "raw", "pipeline_id"]).isdisjoint(
        rows.loc[rows["encoder"] == "raw-reduced", "pipeline_id"])

    # the report's section: the raw encoder against its normalized twin (paired, test and dev), each backend natively
    # and through the reduction; the same text from `python -m bench unnormalized`
    from bench.analysis.unnormalized import normalization_pairs
    from bench.render.unnormalized import unnormalized_section

    pairs = normalization_pairs(rows)
    assert [(p.raw["encoder"], p.normalized["encoder"]) for p in pairs] == [("raw", unit.name)]
    test = pairs[0].delta("test")
    assert test[3] == 30 and test[0] == pytest.approx(pairs[0].raw["ndcg_at_10"] - pairs[0].normalized["ndcg_at_10"])
    text = unnormalized_section(read_results(config.results_path))
    assert f"| raw / {unit.name} |" in text
    # native / reduced, each with its test recall@10 and p95
    assert re.search(r"hnsw ef=\d+ \([\d.]+, [\d.]+ ms\)( not reached)? / ef=\d+ \([\d.]+, [\d.]+ ms\)", text)
    from bench.cli import main

    assert main(["unnormalized", config.results_path.as_posix()]) == 0
    assert main(["unnormalized", config.results_path.as_posix(), "--norms", str(tmp_path / "none.csv")]) == 2


def test_a_planted_high_norm_document_wins_inner_product_loses_cosine_and_the_reduction_keeps_the_order():
    from bench.search.indexes import exact_neighbors, make_index
    from bench.search.mips import ReducedIndex, augment_docs, augment_queries

    rng = np.random.default_rng(1)
    query = rng.normal(size=16).astype(np.float32)
    query /= np.linalg.norm(query)
    docs = rng.normal(size=(500, 16)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    docs[:20] = query + 0.3 * docs[:20]  # twenty documents close to the query in angle, norm ~1
    docs[:20] /= np.linalg.norm(docs[:20], axis=1, keepdims=True)
    side = rng.normal(size=16).astype(np.float32)
    side -= (side @ query) * query
    planted = (0.5 * query + np.sqrt(0.75) * side / np.linalg.norm(side)) * 6.0  # cosine 0.5, norm 6
    docs[-1] = planted
    ip = exact_neighbors(docs, query[None], 10, 1).ids[0]
    unit = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    cosine = exact_neighbors(unit, query[None], 10, 1).ids[0]
    assert ip[0] == len(docs) - 1  # found first by exact inner product (3.0 against at most ~1)
    assert len(docs) - 1 not in cosine  # missed by cosine (0.5 against the twenty near the query)
    queries = np.vstack([query, rng.normal(size=(30, 16)).astype(np.float32)])
    truth = exact_neighbors(docs, queries, 10, 1).ids
    # through the reduction, a metric search (L2 distance, or cosine) ranks as exact inner product, in order
    augmented, _ = augment_docs(docs)
    lifted = augment_queries(queries)
    l2 = ((lifted[:, None, :] - augmented[None, :, :]) ** 2).sum(-1)
    assert np.array_equal(np.argsort(l2, axis=1, kind="stable")[:, :10], truth)
    cos = exact_neighbors(augmented / np.linalg.norm(augmented, axis=1, keepdims=True),
                          lifted / np.linalg.norm(lifted, axis=1, keepdims=True), 10, 1).ids
    assert np.array_equal(cos, truth) and cos[0, 0] == len(docs) - 1
    index = ReducedIndex(make_index("exact"))
    index.fit(docs, 1)
    index.set_search(10)
    assert np.array_equal(index.batch_query(queries, 1).ids, truth)  # the exact top 10, in order, for every query
