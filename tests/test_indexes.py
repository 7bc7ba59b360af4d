import numpy as np
import pytest

from bench.datasets import synthetic_vectors
from bench.indexes import BACKENDS, ParamError, make_index
from bench.metrics import recall_vs_exact

# Generous parameters under which each backend must find the known nearest neighbors.
ACCURATE = {
    "exact": ({}, {}),
    "faiss_ivf": ({"nlist": 16}, {"nprobe": 16}),
    "hnsw": ({"M": 16, "ef_construction": 200}, {"ef": 200}),
    "scann": ({"num_leaves": 16, "reorder": 200}, {"num_leaves_to_search": 16}),
}


@pytest.fixture(scope="module")
def data():
    return synthetic_vectors(1500, 32, 40, seed=7)


def exact_top(base, queries, k):
    return np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("backend", sorted(ACCURATE))
def test_finds_known_neighbors(backend, data):
    base, queries, source = data
    build, search = ACCURATE[backend]
    index = make_index(backend, **build)
    index.fit(base, threads=2)
    index.set_search(10, **search)
    found = index.batch_query(queries, threads=2)
    assert found.ids.shape == (len(queries), 10)
    assert found.ids[:, 0].tolist() == source.tolist()
    assert recall_vs_exact(found.ids, exact_top(base, queries, 10)) >= 0.99
    # scores are inner products, in descending order
    np.testing.assert_allclose(found.scores[:, 0], np.einsum("ij,ij->i", queries, base[found.ids[:, 0]]), atol=1e-3)
    assert (np.diff(found.scores, axis=1) <= 1e-5).all()
    # the one-query latency path returns the same neighbors
    assert np.array_equal(np.stack([index.query(q) for q in queries]), found.ids)
    assert index.size_bytes() > 0


def test_exact_recall_is_one(data):
    base, queries, _ = data
    index = make_index("exact")
    index.fit(base, threads=1)
    index.set_search(50)
    assert recall_vs_exact(index.batch_query(queries, threads=1).ids, exact_top(base, queries, 50)) == 1.0


def test_low_effort_params_lose_recall(data):
    base, queries, _ = data
    index = make_index("faiss_ivf", nlist=64)
    index.fit(base, threads=2)
    index.set_search(50, nprobe=1)
    assert recall_vs_exact(index.batch_query(queries, threads=2).ids, exact_top(base, queries, 50)) < 0.9


def test_scann_short_results_are_padded_not_zero():
    base, queries, _ = synthetic_vectors(300, 16, 10, n_clusters=30, seed=2)
    index = make_index("scann", num_leaves=30, reorder=200)
    index.fit(base, threads=1)
    index.set_search(200, num_leaves_to_search=1)
    found = index.batch_query(queries, threads=1)
    assert (found.ids == -1).any(), "one leaf of 30 cannot hold 200 neighbors"
    for row, scores in zip(found.ids, found.scores):
        valid = row[row >= 0]
        assert len(set(valid.tolist())) == len(valid)
        assert np.isnan(scores[row < 0]).all() and not np.isnan(scores[row >= 0]).any()


@pytest.mark.parametrize("backend, build, search, k, message", [
    ("faiss_ivf", {"nlist": 5000}, {}, 10, r"nlist \(5000\) must be between 1 and the number of vectors \(100\)"),
    ("faiss_ivf", {"nlist": 8}, {"nprobe": 9}, 10, r"nprobe \(9\) must be between 1 and nlist \(8\)"),
    ("hnsw", {"M": 8}, {"ef": 5}, 10, r"ef \(5\) must be >= K \(10\)"),
    ("scann", {"num_leaves": 10, "reorder": 5}, {}, 10, r"reorder \(5\) must be >= K \(10\)"),
    ("scann", {"num_leaves": 10}, {"pre_reorder_num_neighbors": 5}, 10, r"pre_reorder_num_neighbors / reorder \(5\) must be >= K \(10\)"),
    ("scann", {"num_leaves": 10}, {"num_leaves_to_search": 11}, 10, r"num_leaves_to_search \(11\) must be between"),
    ("exact", {}, {}, 101, r"K \(101\) exceeds the number of indexed vectors \(100\)"),
])
def test_invalid_parameters_are_named(backend, build, search, k, message):
    base, _, _ = synthetic_vectors(100, 8, 1)
    index = make_index(backend, **build)
    with pytest.raises(ParamError, match=message):
        index.fit(base, threads=1)
        index.set_search(k, **search)


def test_unknown_names_and_types_are_rejected():
    with pytest.raises(ParamError, match=r"hnsw: unknown build parameter\(s\) \['m'\]"):
        make_index("hnsw", m=16)
    with pytest.raises(ParamError, match=r"unknown search parameter\(s\) \['nprobes'\]"):
        make_index("faiss_ivf", nlist=4).check_search(1, {"nprobes": 2})
    with pytest.raises(ParamError, match="'nlist' must be an integer"):
        make_index("faiss_ivf", nlist="64")
    with pytest.raises(ParamError, match="unknown backend 'annoy'"):
        make_index("annoy")


def test_bm25_ranks_the_source_document_first():
    from bench.datasets import synthetic_dataset

    assert set(BACKENDS) - set(ACCURATE) == {"bm25s"}
    ds = synthetic_dataset(n_docs=200, n_queries=20)
    index = make_index("bm25s", k1=0.9, b=0.4)
    index.fit(ds.doc_texts, threads=1)
    index.set_search(10)
    found = index.batch_query(ds.query_texts, threads=1)
    sources = [ds.doc_ids.index(next(iter(ds.qrels[q]))) for q in ds.query_ids]
    assert (found.ids[:, 0] == sources).mean() >= 0.9
    assert (np.diff(found.scores, axis=1) <= 1e-6).all()
    assert np.array_equal(np.stack([index.query(t) for t in ds.query_texts]), found.ids)
    assert index.size_bytes() > 0
    with pytest.raises(ParamError, match=r"bm25s: b must be in \[0, 1\]"):
        make_index("bm25s", b=2.0).fit(ds.doc_texts, threads=1)
