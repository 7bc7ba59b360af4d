"""ANN backends by name. Each is one module behind `AnnIndex`, owning its parameters, checks, memory model and
gate setting; adding a backend is that module plus one line in `bench.search.catalog.LISTINGS` (the tests pick it up from there)."""

from __future__ import annotations

from bench.search.indexes.base import AnnIndex, Neighbors, ParamError
from bench.search.catalog import CATALOG, LISTINGS, load_registry

_LOADED: dict[str, type[AnnIndex]] = {}


def __getattr__(name: str):
    """`BACKENDS` ({name: class}) loads the libraries on first use, so that `bench.search.indexes.base` (Neighbors,
    ParamError) and the catalog stay importable without faiss, hnswlib or ScaNN."""
    if name != "BACKENDS":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if not _LOADED:
        _LOADED.update(load_registry(listing.path for listing in LISTINGS))
    return _LOADED


def make_index(backend: str, **build) -> AnnIndex:
    """An unbuilt index of `backend` with validated build parameter names."""
    backends = __getattr__("BACKENDS")
    if backend not in backends:
        raise ParamError(f"unknown backend '{backend}'; expected one of {sorted(backends)}")
    return backends[backend](**build)


def exact_neighbors(docs, queries, k: int, threads: int, backend: str = "exact") -> Neighbors:
    """Top-`k` of every query by a backend without approximation: ground truth and first stages."""
    return exact_neighbors_at(docs, queries, [k], threads, backend)[k]


def exact_neighbors_at(docs, queries, ks, threads: int, backend: str = "exact", **build) -> dict[int, Neighbors]:
    """The same, one index built once and searched at each of `ks` (not a deeper search cut: which members of a tie
    at the cut a library keeps is its own)."""
    index = make_index(backend, **build)
    try:
        index.fit(docs, threads)
        found = {}
        for k in dict.fromkeys(ks):
            index.set_search(k)
            found[k] = index.batch_query(queries, threads)
        return found
    finally:
        index.close()  # an engine's server or folder


__all__ = ["AnnIndex", "BACKENDS", "CATALOG", "Neighbors", "ParamError", "exact_neighbors", "exact_neighbors_at", "make_index"]
