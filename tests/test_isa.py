"""The instruction set a row ran on: recorded on every row, part of the host's identity, and what decides whether a
stored quality is reused or scored again (int8 networks only)."""

import numpy as np

import bench.core.env as env
from bench.core.instruction_sets import isa_dependent_runtimes
from bench.data.datasets import synthetic_dataset
from bench.models.rerankers import CrossEncoderScorer, ScoreCache, cross_scores


def as_host(monkeypatch, flags: str, level: str, capability: str = "AVX512"):
    """This process seen as a host with other CPU flags (what `instruction_set` reads)."""
    isa = {**env.instruction_set(), "cpu_flags": flags, "int8_level": level, "torch_cpu_capability": capability}
    monkeypatch.setattr(env, "instruction_set", lambda: isa)
    return isa


def test_int8_level_follows_the_cpu_flags():
    assert env.int8_level(("avx2", "fma")) == "avx2"
    assert env.int8_level(("avx2", "fma", "avx512f", "avx512bw", "avx512vl")) == "avx512"
    assert env.int8_level(("avx2", "avx512f", "avx512bw", "avx512_vnni")) == "avx512-vnni"
    assert env.int8_level(("avx2", "avx512f", "avx512bw", "avx512_vnni", "amx_tile", "amx_int8")) == "amx"


def test_every_sweep_row_records_its_instruction_set(reranked_tiny_sweep):
    from bench.store.results import read_results

    frame = read_results(reranked_tiny_sweep.results_path)
    here = env.instruction_set()
    for column in env.ISA_COLUMNS:
        assert (frame[column] == here[column]).all(), column
    assert set(frame["host_id"]) == {env.host_id()}
    assert "avx2" in here["cpu_flags"].split()  # every supported host


def test_the_host_id_changes_with_the_instruction_set(monkeypatch):
    """Two virtual machines that report the same CPU model, cores and memory but other instruction sets are two hosts."""
    here = env.host_id()
    env.host_id.cache_clear()
    try:
        as_host(monkeypatch, "avx2 fma avx512f avx512bw avx512vl avx512_vnni", "avx512-vnni")
        assert env.host_id() != here
    finally:
        env.host_id.cache_clear()


def test_the_rescoring_rule():
    """Re-scored: a row whose quality rests on int8 kernels other than this host's (or unrecorded); reused: the rest."""
    here = env.instruction_set()
    other = "amx" if here["int8_level"] != "amx" else "avx2"
    fp32 = {"query_precision": "fp32", "doc_precision": "fp32", "query_runtime": "torch",
            "reranker_identity": "m@1|max_length=192", **here}
    int8_reranker = {**fp32, "reranker_identity": "m@1|max_length=192|int8"}
    ort_int8 = {**fp32, "reranker_identity": "m@1|max_length=128|int8|onnxruntime"}
    int8_queries = {**fp32, "query_precision": "int8", "reranker_identity": ""}
    assert isa_dependent_runtimes(fp32) == ()
    assert isa_dependent_runtimes(int8_reranker) == ("torch",)
    assert isa_dependent_runtimes(ort_int8) == ("onnxruntime",)
    assert isa_dependent_runtimes(int8_queries) == ("torch",)
    for row in (fp32, int8_reranker, ort_int8, int8_queries):
        assert not env.rescored_here(row)  # measured on this instruction set: reused
    for row in (int8_reranker, ort_int8, int8_queries):
        assert env.rescored_here({**row, "int8_level": other})  # another one: scored again
        assert env.rescored_here({**row, "int8_level": None})  # not recorded (older rows): scored again
    assert not env.rescored_here({**fp32, "int8_level": other, "cpu_flags": "avx2 fma avx512f"})  # fp32: reused


def test_int8_scores_from_another_instruction_set_are_scored_again_not_reused(spread_cross_encoder, tmp_path,
                                                                               monkeypatch):
    """The score cache holds int8 scores per int8 kernel family: a host of another one scores its pairs again (the
    fp32 scores, which do not depend on it, are reused)."""
    ds = synthetic_dataset(n_docs=30, n_queries=4)
    ids = np.tile(np.arange(8), (4, 1))
    cache = ScoreCache(tmp_path / "s.sqlite")
    as_host(monkeypatch, "avx2 fma avx512f avx512bw avx512vl avx512_vnni", "avx512-vnni")
    for precision in ("fp32", "int8"):
        _, scored = cross_scores(CrossEncoderScorer(spread_cross_encoder, max_length=32, precision=precision), cache,
                                 ds, ids, r=8)
        assert scored == 32
    as_host(monkeypatch, "avx2 fma", "avx2", "AVX2")  # the same cache on an AVX2-only host
    fp32 = CrossEncoderScorer(spread_cross_encoder, max_length=32)
    int8 = CrossEncoderScorer(spread_cross_encoder, max_length=32, precision="int8")
    assert int8.identity.endswith("|int8") and int8.scores_key == f"{int8.identity}|torch {env.instruction_set()['torch_quantized_engine']} avx2"
    assert cross_scores(fp32, cache, ds, ids, r=8)[1] == 0  # reused
    assert cross_scores(int8, cache, ds, ids, r=8)[1] == 32  # scored again
    assert cross_scores(int8, cache, ds, ids, r=8)[1] == 0  # and cached for this instruction set


def test_int8_query_vectors_are_cached_per_int8_kernels(tiny_model, monkeypatch):
    from bench.models.encoders import embed_dataset
    from bench.run.hooks import make_encoder

    ds = synthetic_dataset(n_docs=20, n_queries=3)
    encoder = make_encoder("bi", tiny_model, 32, query_precision="int8")
    as_host(monkeypatch, "avx2 fma avx512f avx512bw avx512_vnni", "avx512-vnni")
    first = embed_dataset(encoder, ds)
    assert not first.cached
    as_host(monkeypatch, "avx2 fma", "avx2", "AVX2")
    monkeypatch.setattr(encoder, "encode_queries", lambda *a, **k: np.zeros((3, first.queries.shape[1]), np.float32))
    again = embed_dataset(encoder, ds)
    assert again.cached  # the fp32 corpus is reused
    assert not np.array_equal(again.queries, first.queries)  # the int8 queries were encoded again on this host


def test_recommend_says_when_a_pick_rests_on_int8_kernels():
    import pandas as pd

    from bench.render.text import int8_note

    fp32 = pd.Series({"query_precision": "fp32", "doc_precision": "fp32", "reranker_identity": "", "int8_level": "avx2"})
    assert int8_note(fp32) == ""
    note = int8_note(pd.Series({**fp32, "query_precision": "int8", "query_runtime": "torch"}))
    assert "int8 kernels (torch; measured on int8 kernel family: avx2)" in note and "bench recheck" in note


def test_the_int8_table_pairs_each_variant_with_fp32_on_its_own_host():
    """On the committed results: per host, each int8 variant against fp32 torch at its length, with its verdict; the
    report's lines say what int8 buys on each host's kernels."""
    from bench.analysis.rerankers import int8_by_isa
    from bench.render.rerankers import int8_isa_summary
    from bench.store.results import read_results

    table = int8_by_isa([read_results("results/rerank-variants.parquet"), read_results("results/rerank-int8-isa.parquet")])
    assert table["host"].nunique() == 2 and set(table.loc[table["host"] == "8244a55633f7", "int8 kernels"]) == {"avx2"}
    int8 = table[table["precision"] == "int8"]
    assert set(int8["int8 holds"]) <= {"yes: ties on dev", "no: worse on dev"} and len(int8) >= 10
    fp32 = table[table["precision"] == "fp32"]
    assert (fp32["dev delta"] == 0).all()  # each fp32 row is its own reference
    text = int8_isa_summary(table)
    assert "avx2" in text and "speed-up" in text
