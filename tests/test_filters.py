import numpy as np
import pytest

from bench.data.datasets import synthetic_vectors
from bench.series.filters import (STRATEGIES, FilterBackend, FilterConfig, filtered_exact, keep_allowed, run_filters,
                           strategy_call, tenant_filters)
from bench.search.indexes import make_index
from bench.search.indexes.base import AllowedIds, ParamError
from bench.store.results import FILTER_SCHEMA, ResultStore, read_results

BACKENDS = [FilterBackend("exact"), FilterBackend("faiss_ivf", {"nlist": 32}, {"nprobe": 8}),
            FilterBackend("hnsw", {"M": 16, "ef_construction": 100}, {"ef": 50}),
            FilterBackend("scann", {"num_leaves": 30, "dimensions_per_block": 2, "reorder": 100},
                          {"num_leaves_to_search": 10, "pre_reorder_num_neighbors": 100}),
            FilterBackend("qdrant_edge", {"m": 16, "ef_construct": 64}, {"hnsw_ef": 50})]


@pytest.fixture(scope="module")
def vectors():
    docs, queries, _ = synthetic_vectors(3000, 32, 40)
    return docs, queries


def test_filtered_ground_truth_is_the_masked_exact_ranking(vectors):
    docs, queries = vectors
    mask = np.zeros(len(docs), dtype=bool)
    mask[::7] = True
    allowed = AllowedIds(mask)
    for q in queries[:5]:
        scores = np.where(mask, docs @ q, -np.inf)
        assert filtered_exact(docs, q, allowed, 10).tolist() == np.argsort(-scores, kind="stable")[:10].tolist()
    few = np.zeros(len(docs), dtype=bool)
    few[[3, 9]] = True
    assert filtered_exact(docs, queries[0], AllowedIds(few), 5).tolist()[2:] == [-1, -1, -1]


def test_tenants_give_the_selectivity():
    _, filters = tenant_filters(20000, 50, 0.1, seed=0)
    assert np.mean([a.mask.mean() for a in filters]) == pytest.approx(0.1, rel=0.1)


def test_keep_allowed_pads_and_drops():
    allowed = AllowedIds(np.array([True, False, True, False, True]))
    assert keep_allowed(np.array([1, 0, 3, -1]), allowed, 3).tolist() == [0, -1, -1]


@pytest.mark.parametrize("spec", BACKENDS, ids=lambda b: b.backend)
def test_no_strategy_ever_returns_a_failing_id(vectors, spec):
    docs, queries = vectors
    index = make_index(spec.backend, **spec.build)
    index.fit(docs, 2)
    for selectivity in (0.01, 0.2):
        _, filters = tenant_filters(len(docs), len(queries), selectivity, seed=1)
        for strategy in STRATEGIES:
            try:
                call, _ = strategy_call(strategy, index, spec, docs, 10, selectivity, 1000)
            except ParamError:
                assert strategy == "native" and spec.backend == "scann"
                continue
            for q, allowed in zip(queries, filters):
                ids = np.asarray(call(q, allowed), dtype=np.int64)
                ids = ids[ids >= 0]
                assert allowed.mask[ids].all(), (spec.backend, strategy, selectivity)


def test_post_filtering_at_one_percent_comes_back_short_unless_inflated(vectors):
    docs, queries = vectors
    spec = BACKENDS[2]
    index = make_index(spec.backend, **spec.build)
    index.fit(docs, 2)
    _, filters = tenant_filters(len(docs), len(queries), 0.01, seed=2)

    def short(strategy):
        call, asked = strategy_call(strategy, index, spec, docs, 10, 0.01, 1000)
        results = [np.asarray(call(q, a)) for q, a in zip(queries, filters)]
        return sum((r >= 0).sum() < min(10, a.mask.sum()) for r, a in zip(results, filters)), asked

    plain, asked_plain = short("postfilter")
    inflated, asked_inflated = short("postfilter-inflated")
    assert asked_plain == 10 and asked_inflated == 1000
    assert plain > 0.8 * len(queries) and inflated < plain


def test_filter_run_writes_rows_and_resumes(tiny_model, tmp_path):
    config = FilterConfig(name="f", dataset="synthetic", model=tiny_model, max_seq_length=32, k=5,
                          selectivities=[0.1, 0.5], backends=[BACKENDS[0], BACKENDS[2]])
    store = ResultStore(tmp_path / "f.parquet", FILTER_SCHEMA)
    # exact: 4 strategies x 2 selectivities; hnsw: 3 (no prefilter row) x 2
    assert run_filters(config, store=store) == 14
    frame = read_results(tmp_path / "f.parquet", schema=FILTER_SCHEMA)
    assert frame["violations"].eq(0).all()
    assert frame.loc[frame["strategy"] == "prefilter", "recall_at_k"].eq(1.0).all()
    assert run_filters(config, store=ResultStore(tmp_path / "f.parquet", FILTER_SCHEMA)) == 0
