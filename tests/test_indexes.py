import dataclasses

import numpy as np
import pytest

from bench.data.datasets import synthetic_vectors
from bench.search.indexes import BACKENDS, CATALOG, ParamError, make_index
from bench.data.metrics import recall_vs_exact

# Generous parameters under which each backend must find the known nearest neighbors.
ACCURATE = {
    "exact": ({}, {}),
    "faiss_ivf": ({"nlist": 16}, {"nprobe": 16}),
    "hnsw": ({"M": 16, "ef_construction": 200}, {"ef": 200}),
    "scann": ({"num_leaves": 16, "reorder": 200}, {"num_leaves_to_search": 16}),
    "faiss_hnsw": ({"M": 16, "ef_construction": 200}, {"ef": 200}),
}
# Compressed backends: scores are approximate, so the checks are on neighbors and on the memory they save.
COMPRESSED = {
    "faiss_sq": ({"storage": "fp16"}, {}),
    "faiss_ivfsq": ({"nlist": 16, "storage": "sq8"}, {"nprobe": 16}),
    "faiss_ivfpq": ({"nlist": 16, "m": 16, "nbits": 8, "refine": "sq8"}, {"nprobe": 16, "k_factor": 8}),
    "faiss_hnsw_sq8": ({"M": 16, "ef_construction": 200, "storage": "sq8"}, {"ef": 200}),
}
# Every backend and variant, for the memory model: serialized bytes within 1% of `memory_bytes`.
MEMORY = [
    ("exact", {}), ("faiss_ivf", {"nlist": 50}), ("hnsw", {"M": 8, "ef_construction": 40}),
    ("scann", {"num_leaves": 40, "dimensions_per_block": 2, "reorder": 50}),
    ("faiss_sq", {"storage": "fp16"}), ("faiss_sq", {"storage": "sq4"}),
    ("faiss_ivfsq", {"nlist": 50, "storage": "sq6"}), ("faiss_ivfsq", {"nlist": 50, "storage": "fp16"}),
    ("faiss_ivfpq", {"nlist": 50, "m": 16, "nbits": 8}), ("faiss_ivfpq", {"nlist": 50, "m": 8, "refine": "flat"}),
    ("faiss_ivfpq", {"nlist": 50, "m": 16, "nbits": 4, "fast_scan": True, "refine": "sq8"}),
    ("faiss_hnsw", {"M": 8, "ef_construction": 40}), ("faiss_hnsw", {"M": 16, "ef_construction": 40, "storage": "sq8"}),
]


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


flat_ivf = make_index("faiss_ivf", nlist=16)


@pytest.mark.parametrize("variant", sorted(COMPRESSED))
def test_compressed_backends_find_neighbors_in_less_memory(variant, data):
    base, queries, source = data
    build, search = COMPRESSED[variant]
    index = make_index(variant.removesuffix("_sq8"), **build)
    index.fit(base, threads=2)
    index.set_search(10, **search)
    found = index.batch_query(queries, threads=2)
    assert found.ids[:, 0].tolist() == source.tolist()
    assert recall_vs_exact(found.ids, exact_top(base, queries, 10)) >= 0.95
    assert (np.diff(found.scores, axis=1) <= 1e-3).all()
    assert np.array_equal(np.stack([index.query(q) for q in queries]), found.ids)
    n, dim = len(base), base.shape[1]
    per_vector = (index.memory_bytes(2 * n, dim) - index.memory_bytes(n, dim)) / n  # fixed costs cancel
    uncompressed = make_index("faiss_hnsw", **{**build, "storage": "flat"}) if variant == "faiss_hnsw_sq8" else flat_ivf
    assert per_vector < uncompressed.memory_bytes(2 * n, dim) / n - uncompressed.memory_bytes(n, dim) / n - dim * 2


@pytest.mark.parametrize("backend,build", MEMORY, ids=lambda v: str(v))
def test_memory_model_matches_the_serialized_index(backend, build):
    vectors, _, _ = synthetic_vectors(8000, 64, 1)
    index = make_index(backend, **build)
    index.fit(vectors, 2)
    assert index.size_bytes() == pytest.approx(index.memory_bytes(8000, 64), rel=0.01)


VECTOR_BACKENDS = sorted(name for name, listing in CATALOG.items() if listing.input == "vectors")


@pytest.mark.parametrize("backend", VECTOR_BACKENDS)
def test_every_backend_at_its_gate_setting(backend):
    """What every registered vector backend owes, checked at the setting it declares for the latency gate: a new
    backend (one module + one registry line) is covered here without touching this file."""
    cls = BACKENDS[backend]
    assert cls.gate_params is not None, f"{backend} declares no gate_params"
    base, queries, _ = synthetic_vectors(8000, 64, 50, seed=3)
    build, search = cls.gate_params
    index = make_index(backend, **build)
    index.fit(base, threads=2)
    index.set_search(10, **search)
    found = index.batch_query(queries, threads=2)
    valid = found.ids >= 0
    assert found.ids.shape == (50, 10) and (found.ids[valid] < len(base)).all()
    assert all(len(set(row[row >= 0])) == (row >= 0).sum() for row in found.ids)
    assert (np.diff(np.nan_to_num(found.scores, nan=-np.inf), axis=1) <= 1e-3).all()
    assert np.array_equal(np.stack([index.query(q) for q in queries]), found.ids)
    assert recall_vs_exact(found.ids, exact_top(base, queries, 10)) >= 0.5
    if cls.memory_model_error is not None:  # None: an engine without a memory model (its size is measured)
        assert index.size_bytes() == pytest.approx(index.memory_bytes(8000, 64), rel=cls.memory_model_error)
    assert index.size_bytes() > 0
    # rows record every search parameter as run, and every build parameter with its default
    assert set(index.check_search(10, search)) == {f.name for f in dataclasses.fields(cls.Search)}
    assert set(index.build.as_dict()) == {f.name for f in dataclasses.fields(cls.Build)}
    grown = index.search_at_least(200, search)
    index.check_search(200, grown)  # candidate lists grown to K are valid at K
    if cls.native_filter:  # filtered inside the library: only allowed ids come back
        from bench.search.indexes.base import AllowedIds

        allowed = AllowedIds(np.arange(len(base)) % 3 == 0)
        for q in queries[:5]:
            ids = index.filtered_query(q, allowed)
            assert allowed.mask[ids[ids >= 0]].all() and (ids >= 0).sum() > 0


def test_rows_record_effective_search_parameters():
    index = make_index("hnsw")
    assert index.check_search(10, {}) == {"ef": 10}
    assert make_index("faiss_ivf", nlist=8).check_search(5, {}) == {"nprobe": 1}
    assert make_index("scann", num_leaves=8, reorder=300).check_search(5, {}) == {
        "num_leaves_to_search": 1, "pre_reorder_num_neighbors": 300}
    assert make_index("faiss_ivfpq", nlist=8, m=4).build.as_dict() == {
        "nlist": 8, "m": 4, "nbits": 8, "fast_scan": False, "refine": "none", "seed": 1234}


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
    ("faiss_ivfpq", {"nlist": 4, "m": 4}, {}, 10, r"nbits \(8\) needs at least 256 vectors to train"),
    ("faiss_ivfpq", {"nlist": 4, "m": 4, "nbits": 4}, {"k_factor": 4}, 10, r"k_factor \(4\) needs a refine stage"),
    ("faiss_ivfpq", {"nlist": 4, "m": 4, "nbits": 8, "fast_scan": True}, {}, 10, r"fast_scan needs nbits = 4"),
    ("faiss_ivfpq", {"nlist": 4, "m": 4, "nbits": 4, "refine": "sq3"}, {}, 10, r"refine 'sq3' must be one of"),
    ("faiss_ivfpq", {"nlist": 4, "m": 3, "nbits": 4}, {}, 10, r"m \(3\) must divide the dimension \(8\)"),
    ("faiss_ivfsq", {"nlist": 4, "storage": "int8"}, {}, 10, r"storage 'int8' must be one of"),
    ("faiss_hnsw", {"storage": "pq"}, {}, 10, r"storage 'pq' must be one of"),
    ("faiss_hnsw", {}, {"ef": 5}, 10, r"faiss_hnsw: ef \(5\) must be >= K \(10\)"),
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
    with pytest.raises(ParamError, match="faiss_ivfpq: build parameter 'm' is required"):
        make_index("faiss_ivfpq", nlist=4)


@pytest.mark.parametrize("backend", ["bm25s", "lucene"])
def test_bm25_ranks_the_source_document_first(backend):
    from bench.data.datasets import synthetic_dataset

    assert [name for name, listing in CATALOG.items() if listing.input == "text"] == ["bm25s", "lucene"]
    ds = synthetic_dataset(n_docs=200, n_queries=20)
    index = make_index(backend, k1=0.9, b=0.4)
    index.fit(ds.doc_texts, threads=1)
    index.set_search(10)
    found = index.batch_query(ds.query_texts, threads=1)
    sources = [ds.doc_ids.index(next(iter(ds.qrels[q]))) for q in ds.query_ids]
    assert (found.ids[:, 0] == sources).mean() >= 0.9
    assert (np.diff(np.nan_to_num(found.scores, nan=-np.inf), axis=1) <= 1e-6).all()  # lucene: short when few match
    assert np.array_equal(np.stack([index.query(t) for t in ds.query_texts]), found.ids)
    assert index.size_bytes() > 0
    with pytest.raises(ParamError, match=backend + r": b must be in \[0, 1\]"):
        make_index(backend, b=2.0).fit(ds.doc_texts, threads=1)
