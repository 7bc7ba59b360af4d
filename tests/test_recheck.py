"""`python -m bench recheck`: the reference decision's rows measured on this host and decided again."""

import dataclasses
from pathlib import Path

from bench.analysis import Budget
from bench.pipeline.config import load_config
from bench.core.env import host_id
from bench.run.recheck import recheck
from bench.store.results import ResultStore, read_results
from bench.run.sweep import run_sweep

TINY = Path(__file__).resolve().parent.parent / "configs" / "tiny.toml"


def test_recheck_measures_the_picks_here_keeps_fp32_quality_and_rescores_int8(tiny_model, spread_cross_encoder,
                                                                             tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    text = TINY.read_text().replace('name = "tiny"', 'name = "tinyr"').replace(
        '"sentence-transformers/all-MiniLM-L6-v2"', f'"{tiny_model}"')
    text = text[: text.index("[[backends]]")] + '''[[backends]]
backend = "exact"

[[backends]]
backend = "bm25s"
build = { k1 = [0.9], b = [0.4] }

[rerank]
r = [10]
k = [20]
latency_queries = 4

[[rerank.rerankers]]
name = "ce"
model = "%s"
max_length = 32
alpha = [1.0]

[[rerank.rerankers]]
name = "ce-int8"
model = "%s"
max_length = 32
precision = "int8"
alpha = [1.0]
''' % (spread_cross_encoder, spread_cross_encoder)
    (configs / "tinyr.toml").write_text(text)
    config = load_config(configs / "tinyr.toml")
    reference_path = tmp_path / "reference.parquet"
    run_sweep(dataclasses.replace(config, results=str(reference_path)))
    ResultStore(reference_path).compact()
    reference = read_results(reference_path)
    assert {"first", "rerank"} <= set(reference["stage"])
    # as if measured elsewhere, on AMX int8 kernels; a planted dev quality shows which rows keep the stored figure
    reference["host_id"], reference["int8_level"], reference["cpu_flags"] = "elsewhere", "amx", "avx2 amx_int8"
    rerank = reference["stage"] == "rerank"
    # every rerank row planted as perfect on dev: tied with BM25 (perfect on these synthetic queries), so re-checked
    reference.loc[rerank, "dev_ndcg_at_10"] = 1.0
    reference.loc[rerank, "dev_q_ndcg_at_10"] = reference.loc[rerank, "dev_q_ndcg_at_10"].map(lambda q: [1.0] * len(q))
    ResultStore(reference_path)._write(reference)

    messages = []
    out = recheck([reference_path], [Budget(10_000, 10_000)], tmp_path, None, messages.append, configs=configs)
    assert "recheck of 1 decisions" in messages[0] and "on host " + host_id() in messages[0]  # the plan first
    here = read_results(tmp_path / f"recheck-{host_id()}-tinyr.parquet")
    assert set(here["host_id"]) == {host_id()}  # the re-measured rows are this host's
    mine = here.set_index("cell_id")
    kept = here[(here["stage"] == "rerank") & ~here["reranker_identity"].str.contains("int8")]
    rescored = here[(here["stage"] == "rerank") & here["reranker_identity"].str.contains("int8")]
    assert len(kept) and len(rescored)
    # fp32 rerank rows: re-timed here, quality kept from the reference (the planted figure)
    assert (kept["dev_ndcg_at_10"] == 1.0).all() and (kept["rerank_timed_identity"] != "").all()
    # int8 rows measured on other int8 kernels: scored again here (the random cross-encoder is not perfect)
    assert (rescored["dev_ndcg_at_10"] < 1.0).all() and (rescored["int8_level"] == here["int8_level"].iloc[0]).all()
    assert out.splitlines()[0].startswith("| dataset | budget")  # the two decision tables first
    assert "synthetic" in out and "Host speed" in out and "instruction set not recorded" not in out
    assert all(mine.loc[c, "host_id"] == host_id() for c in mine.index)


def test_a_pick_that_differs_only_in_k_with_the_same_ranking_is_not_a_change_of_what_to_deploy():
    import numpy as np
    import pandas as pd

    from bench.run.recheck import same_pipeline_but_k, same_ranking_but_k

    row = pd.Series({"dataset": "d", "encoder": "bm25", "model_identity": "", "backend": "bm25s", "build_params": "{}",
                     "search_params": "{}", "stage": "first", "reranker": None, "r": np.nan, "fusion_alpha": np.nan,
                     "k": 10, "q_ndcg_at_10": np.array([0.5, 1.0]), "dev_q_ndcg_at_10": np.array([0.0, 0.3])})
    deeper = row.copy()
    deeper["k"] = 100
    assert same_ranking_but_k(row, deeper)
    tie_kept_otherwise = deeper.copy()
    tie_kept_otherwise["dev_q_ndcg_at_10"] = np.array([0.0, 0.31])
    assert same_pipeline_but_k(row, tie_kept_otherwise) and not same_ranking_but_k(row, tie_kept_otherwise)
    other = deeper.copy()
    other["backend"] = "exact"
    assert not same_pipeline_but_k(row, other) and not same_ranking_but_k(row, other)
