import dataclasses

import numpy as np
import pytest

from bench.pipeline.config import ConfigError, EncoderSpec, load_config, parse_config
from bench.search.fusion import fuse, fuse_one
from bench.search.indexes.base import Neighbors
from bench.store.results import read_results
from bench.run.sweep import run_sweep


def lists(*rows):
    ids = np.array([[d for d, _ in row] for row in rows], dtype=np.int64)
    scores = np.array([[s for _, s in row] for row in rows], dtype=np.float32)
    return Neighbors(ids, scores)


def test_rrf_sums_reciprocal_ranks():
    # dense: 1, 2, 3; sparse: 3, 4, 1. With k = 60: doc 1 = 1/61 + 1/63, doc 3 = 1/63 + 1/61 (tie: lower id
    # first), doc 2 = 1/62, doc 4 = 1/62 (tie: 2 before 4).
    dense, sparse = lists([(1, 0.9), (2, 0.8), (3, 0.7)]), lists([(3, 9.0), (4, 5.0), (1, 1.0)])
    fused = fuse(dense, sparse, "rrf", 4, rrf_k=60)
    assert fused.ids.tolist() == [[1, 3, 2, 4]]
    assert fused.scores[0].tolist() == pytest.approx([1 / 61 + 1 / 63, 1 / 61 + 1 / 63, 1 / 62, 1 / 62])
    # a small k makes rank 1 dominate: doc 3 at ranks (3, 1) vs doc 2 at (2, -)
    assert fuse(dense, sparse, "rrf", 2, rrf_k=1).ids.tolist() == [[1, 3]]


def test_convex_mixes_min_max_normalized_scores():
    # dense normalized: 1 -> 1, 2 -> 0.5, 3 -> 0; sparse normalized: 3 -> 1, 4 -> 0.5, 1 -> 0; missing = 0.
    dense, sparse = lists([(1, 0.9), (2, 0.8), (3, 0.7)]), lists([(3, 9.0), (4, 5.0), (1, 1.0)])
    fused = fuse(dense, sparse, "convex", 4, weight=0.3)
    # 1: 0.3; 2: 0.15; 3: 0.7; 4: 0.35
    assert fused.ids.tolist() == [[3, 4, 1, 2]]
    assert fused.scores[0].tolist() == pytest.approx([0.7, 0.35, 0.3, 0.15])
    assert fuse(dense, sparse, "convex", 3, weight=1.0).ids.tolist() == [[1, 2, 3]]  # the dense list alone
    assert fuse(dense, sparse, "convex", 3, weight=0.0).ids.tolist() == [[3, 4, 1]]  # the sparse list alone


def test_missing_slots_are_ignored_and_short_results_padded():
    ids, scores = fuse_one(np.array([5, -1]), np.array([1.0, np.nan]), np.array([-1, -1]), np.array([np.nan] * 2),
                           "rrf", 3)
    assert ids.tolist() == [5, -1, -1] and np.isnan(scores[1:]).all()


def test_hybrid_config_is_checked_when_parsed(tmp_path):
    base = {"name": "h", "dataset": "synthetic", "split": "test", "k": [5],
            "backends": [{"backend": "exact"}],
            "encoders": [{"name": "dense", "type": "bi"}]}
    with pytest.raises(ConfigError, match=r"encoders\[1\].hybrid.dense: 'nope' is not a whole-document vector"):
        parse_config({**base, "encoders": [*base["encoders"], {"name": "h", "type": "hybrid", "hybrid": {"dense": "nope"}}]}, "x.toml")
    with pytest.raises(ConfigError, match=r"encoders\[1\].hybrid: fusion must be one of"):
        parse_config({**base, "encoders": [*base["encoders"],
                                          {"name": "h", "type": "hybrid", "hybrid": {"dense": "dense", "fusion": "rfr"}}]}, "x.toml")
    with pytest.raises(ConfigError, match=r"encoders\[0\].backends names backend\(s\) \['hnsw'\] missing"):
        parse_config({**base, "encoders": [{"name": "dense", "backends": ["hnsw"]}]}, "x.toml")
    with pytest.raises(ConfigError, match=r"type 'hybrid' needs a `hybrid` table"):
        parse_config({**base, "encoders": [*base["encoders"], {"name": "h", "type": "hybrid"}]}, "x.toml")


def test_hybrid_first_stage_through_the_sweep(tiny_model, tmp_path):
    base = load_config("configs/tiny.toml")
    dense = dataclasses.replace(base.encoders[0], model=tiny_model)
    rrf = EncoderSpec("hyb-rrf", type="hybrid", hybrid={"dense": "minilm", "fusion": "rrf", "depth": [20, 50]},
                      backends=["exact", "hnsw"])
    convex = EncoderSpec("hyb-convex", type="hybrid", hybrid={"dense": "minilm", "fusion": "convex", "depth": [20]},
                         backends=["exact", "hnsw"])
    config = dataclasses.replace(base, encoders=[dense, base.encoders[1], rrf, convex], results=str(tmp_path / "h.parquet"))
    run_sweep(config)
    frame = read_results(config.results_path)
    hybrid = frame[frame["encoder_type"] == "hybrid"]
    assert set(frame[frame["encoder"] == "minilm"]["backend"]) == {"exact", "faiss_ivf", "hnsw", "scann"}
    assert set(hybrid["backend"]) == {"exact", "hnsw"}  # each hybrid runs on the backends it names
    # rrf: exact (2 depths x K 5, 20) + hnsw ef=40 at depth 20 (K 5, 20; ef=10 reaches neither depth, ef=40 not
    # depth 50: skipped, not an error, as the grid is shared with the dense encoder); convex: exact and hnsw ef=40, 2 K
    assert sorted(hybrid.groupby("encoder").size().items()) == [("hyb-convex", 4), ("hyb-rrf", 6)]
    exact = hybrid[hybrid["backend"] == "exact"]
    assert (exact["recall_at_k"] == 1.0).all()  # the exact dense side reproduces the ground truth
    # memory holds both indexes: more than the dense index alone
    dense_exact = frame[(frame["encoder"] == "minilm") & (frame["backend"] == "exact")]["index_bytes"].iloc[0]
    assert (exact["index_bytes"] > dense_exact).all()
    import json

    params = [json.loads(p) for p in hybrid[hybrid["encoder"] == "hyb-convex"]["search_params"]]
    assert all(p["fusion"] == "convex" and 0 < p["weight"] < 1 and p["depth"] == 20 for p in params)
    # the synthetic queries copy words of their document: BM25 finds it, and fusion with a random dense
    # model keeps it near the top
    bm25 = frame[frame["encoder"] == "bm25"]["ndcg_at_10"].max()
    assert exact["ndcg_at_10"].max() >= 0.5 * bm25

    from conftest import render_report

    text, tables = render_report(frame, tmp_path / "report")
    assert "### Hybrid first stage: BM25 + dense" in text and "hybrids.csv" in text
    table = tables["hybrids.csv"]
    assert "hyb-convex,convex w=" in table and "hyb-rrf,RRF k=60,20," in table and "hyb-rrf,RRF k=60,50," in table
    assert "test" not in table.splitlines()[0]  # the grid shows dev figures


def test_weighted_rrf_weighs_each_side_reciprocal_ranks():
    dense, sparse = lists([(1, 0.9), (2, 0.8), (3, 0.7)]), lists([(3, 9.0), (4, 5.0), (1, 1.0)])
    fused = fuse(dense, sparse, "weighted_rrf", 4, weight=0.8, rrf_k=60)
    # 1: 0.8/61 + 0.2/63; 2: 0.8/62; 3: 0.8/63 + 0.2/61; 4: 0.2/62
    assert fused.ids.tolist() == [[1, 3, 2, 4]]
    assert fused.scores[0].tolist() == pytest.approx([0.8 / 61 + 0.2 / 63, 0.8 / 63 + 0.2 / 61, 0.8 / 62, 0.2 / 62])
    # weight 0.5 ranks as plain RRF
    assert fuse(dense, sparse, "weighted_rrf", 4, weight=0.5).ids.tolist() == fuse(dense, sparse, "rrf", 4).ids.tolist()


def test_a_registered_fusion_rule_runs_in_the_tiny_sweep(tiny_model, tmp_path):
    """A rule added as one file plus one registry line (weighted RRF) runs through config, the dev weight choice,
    the sweep and the pipeline identity without any other change."""
    from bench.analysis import with_derived

    base = load_config("configs/tiny.toml")
    dense = dataclasses.replace(base.encoders[0], model=tiny_model)
    weighted = EncoderSpec("hyb-wrrf", type="hybrid", backends=["exact"],
                           hybrid={"dense": "minilm", "fusion": "weighted_rrf", "weight": "dev", "depth": [20]})
    config = dataclasses.replace(base, encoders=[dense, base.encoders[1], weighted], results=str(tmp_path / "w.parquet"))
    run_sweep(config)
    frame = with_derived(read_results(config.results_path))
    rows = frame[frame["encoder"] == "hyb-wrrf"]
    assert len(rows) == 2 and (rows["recall_at_k"] == 1.0).all()  # K 5 and 20 over exact search: the ground truth
    import json

    params = [json.loads(p) for p in rows["search_params"]]
    assert all(p["fusion"] == "weighted_rrf" and p["rrf_k"] == 60 and 0 < p["weight"] < 1 for p in params)
    assert (rows["fusion_weight_chosen_on"] == "dev").all()
    assert rows["pipeline_name"].str.contains("+ BM25, weighted RRF k=60, weight chosen on dev, depth 20", regex=False).all()
    with pytest.raises(ConfigError, match="weight does not apply to fusion 'rrf'"):
        parse_config({"name": "h", "dataset": "synthetic", "split": "test", "k": [5], "backends": [{"backend": "exact"}],
                      "encoders": [{"name": "dense"}, {"name": "h", "type": "hybrid",
                                                        "hybrid": {"dense": "dense", "fusion": "rrf", "weight": 0.3}}]},
                     "x.toml")


def test_a_dev_weight_without_dev_queries_is_chosen_on_test_and_says_so(tiny_model, tmp_path, caplog):
    """A dataset with only test qrels: weight = "dev" proceeds with one warning, and every output marks the weight
    "chosen on test" (rows, pipeline name, the report's display)."""
    import logging

    from conftest import render_report
    from test_sweep import _synthetic_as_beir

    from bench.analysis import with_derived

    root = _synthetic_as_beir(tmp_path / "test-only", seed=3)
    (root / "qrels" / "train.tsv").unlink()
    base = load_config("configs/tiny.toml")
    dense = dataclasses.replace(base.encoders[0], model=tiny_model)
    convex = EncoderSpec("hyb", type="hybrid", backends=["exact"], hybrid={"dense": "minilm", "fusion": "convex",
                                                                          "depth": [20]})
    config = dataclasses.replace(base, dataset=str(root), synthetic={}, encoders=[dense, base.encoders[1], convex],
                                 backends=[b for b in base.backends if b.backend in ("exact", "bm25s")],
                                 results=str(tmp_path / "t.parquet"))
    with caplog.at_level(logging.WARNING):
        run_sweep(config)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "no dev queries" in r.getMessage()]
    assert len(warned) == 1 and 'marked "chosen on test"' in warned[0]
    frame = with_derived(read_results(config.results_path))
    rows = frame[frame["encoder"] == "hyb"]
    assert (rows["fusion_weight_chosen_on"] == "test").all()
    assert rows["pipeline_name"].str.contains("convex, weight chosen on test").all()
    assert rows["pipeline"].str.contains(r"convex, weight 0\.\d\d \(test\)").all()
    text, _ = render_report(read_results(config.results_path), tmp_path / "report")
    assert "weight chosen on test" in text and "[chosen on test]" in text  # the decision table marks the pick too


def test_fusion_ranks_equal_scores_by_corpus_row_whatever_order_the_library_returned():
    """Two libraries (or one on another instruction set) may return documents of equal score in either order: the
    reciprocal ranks, and so the fused list, are the same for both."""
    dense = lists([(1, 0.9), (2, 0.8), (3, 0.7)])
    one, other = lists([(5, 4.0), (7, 2.0), (4, 2.0), (1, 1.0)]), lists([(5, 4.0), (4, 2.0), (7, 2.0), (1, 1.0)])
    for method in ("rrf", "weighted_rrf", "convex"):
        assert fuse(dense, one, method, 5).ids.tolist() == fuse(dense, other, method, 5).ids.tolist()
    # 4 takes rank 2 and 7 rank 3 on the BM25 side: 4 ahead of 7 after fusion
    assert fuse(dense, one, "rrf", 6).ids[0].tolist().index(4) < fuse(dense, one, "rrf", 6).ids[0].tolist().index(7)


def test_bm25_is_exact_against_itself_at_every_k(tmp_path):
    """BM25 is its own ground truth: with equal scores at the cut (common on the synthetic collection), a search at
    K keeps other members of a tie than a deeper search cut to K, so the truth of a K cell is a search at K."""
    base = load_config("configs/tiny.toml")
    bm25 = next(e for e in base.encoders if e.type == "bm25")
    config = dataclasses.replace(base, encoders=[bm25], k=[5, 10, 20, 50], results=str(tmp_path / "b.parquet"),
                                 backends=[b for b in base.backends if b.backend == "bm25s"])
    run_sweep(config)
    frame = read_results(config.results_path)
    assert sorted(frame["k"]) == [5, 10, 20, 50]
    assert (frame["recall_at_k"] == 1.0).all() and (frame["dev_recall_at_k"] == 1.0).all()
