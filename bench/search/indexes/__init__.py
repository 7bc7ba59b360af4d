"""ANN backends by name. Each is one module behind `AnnIndex`, owning its parameters, checks, memory model and
gate setting; adding a backend is that module plus one line in `REGISTRY` (the tests pick it up from there)."""

from __future__ import annotations

import importlib

from bench.search.indexes.base import AnnIndex, Neighbors, ParamError

REGISTRY = (
    "bench.search.indexes.exact:ExactIndex",
    "bench.search.indexes.faiss_ivf:FaissIVF",
    "bench.search.indexes.hnsw:HnswIndex",
    "bench.search.indexes.scann_index:ScannIndex",
    "bench.search.indexes.bm25:Bm25Index",
    "bench.search.indexes.faiss_sq:FaissSQ",
    "bench.search.indexes.faiss_ivfsq:FaissIVFSQ",
    "bench.search.indexes.faiss_ivfpq:FaissIVFPQ",
    "bench.search.indexes.faiss_hnsw:FaissHNSW",
    "bench.search.indexes.faiss_pq:FaissPQ",
)


def load_registry(paths) -> dict[str, type]:
    """`"module:Class"` registry lines -> {cls.name: cls} (the backends here, the fusion rules in bench.search.fusion)."""
    classes = [getattr(importlib.import_module(module), name) for module, name in (p.split(":") for p in paths)]
    return {cls.name: cls for cls in classes}


BACKENDS: dict[str, type[AnnIndex]] = load_registry(REGISTRY)


def make_index(backend: str, **build) -> AnnIndex:
    """An unbuilt index of `backend` with validated build parameter names."""
    if backend not in BACKENDS:
        raise ParamError(f"unknown backend '{backend}'; expected one of {sorted(BACKENDS)}")
    return BACKENDS[backend](**build)


def exact_neighbors(docs, queries, k: int, threads: int, backend: str = "exact") -> Neighbors:
    """Top-`k` of every query by a backend without approximation: ground truth and first stages."""
    return exact_neighbors_at(docs, queries, [k], threads, backend)[k]


def exact_neighbors_at(docs, queries, ks, threads: int, backend: str = "exact", **build) -> dict[int, Neighbors]:
    """The same, one index built once and searched at each of `ks` (not a deeper search cut: which members of a tie
    at the cut a library keeps is its own)."""
    index = make_index(backend, **build)
    index.fit(docs, threads)
    found = {}
    for k in dict.fromkeys(ks):
        index.set_search(k)
        found[k] = index.batch_query(queries, threads)
    return found


__all__ = ["AnnIndex", "BACKENDS", "Neighbors", "ParamError", "exact_neighbors", "exact_neighbors_at", "make_index"]
