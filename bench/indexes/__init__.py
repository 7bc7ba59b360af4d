"""ANN backends by name. Each is one module behind `AnnIndex`, owning its parameters, checks and memory model;
adding a backend is that module plus one line in `BACKENDS`."""

from __future__ import annotations

from bench.indexes.base import AnnIndex, Neighbors, ParamError
from bench.indexes.bm25 import Bm25Index
from bench.indexes.exact import ExactIndex
from bench.indexes.faiss_hnsw import FaissHNSW
from bench.indexes.faiss_ivf import FaissIVF
from bench.indexes.faiss_ivfpq import FaissIVFPQ
from bench.indexes.faiss_ivfsq import FaissIVFSQ
from bench.indexes.faiss_sq import FaissSQ
from bench.indexes.hnsw import HnswIndex
from bench.indexes.scann_index import ScannIndex

BACKENDS: dict[str, type[AnnIndex]] = {cls.name: cls for cls in (
    ExactIndex,
    FaissIVF,
    HnswIndex,
    ScannIndex,
    Bm25Index,
    FaissSQ,
    FaissIVFSQ,
    FaissIVFPQ,
    FaissHNSW,
)}


def make_index(backend: str, **build) -> AnnIndex:
    """An unbuilt index of `backend` with validated build parameter names."""
    if backend not in BACKENDS:
        raise ParamError(f"unknown backend '{backend}'; expected one of {sorted(BACKENDS)}")
    return BACKENDS[backend](**build)


def exact_neighbors(docs, queries, k: int, threads: int, backend: str = "exact") -> Neighbors:
    """Top-`k` of every query by a backend without approximation: ground truth and first stages."""
    index = make_index(backend)
    index.fit(docs, threads)
    index.set_search(k)
    return index.batch_query(queries, threads)


__all__ = ["AnnIndex", "BACKENDS", "Neighbors", "ParamError", "exact_neighbors", "make_index"]
