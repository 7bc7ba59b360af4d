"""What every faiss-backed index shares: one `faiss.Index`, per-search `SearchParameters` (with an optional
ID selector for filtered search), OpenMP threads set per call, and the serialized size.

A faiss backend builds `self.index` in `_fit` and says in `search_parameters` which parameters object runs
its search; this class does the rest. `code_bytes` is the per-vector storage of faiss' vector codes.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from bench.search.indexes.base import AllowedIds, AnnIndex, Neighbors, ParamError, check_choice, pad_missing, require

# Bytes per dimension of faiss' stored vector codes ("flat" = float32; scalar quantizers by bit width).
CODE_BYTES_PER_DIM = {"flat": 4.0, "fp16": 2.0, "sq8": 1.0, "sq6": 0.75, "sq4": 0.5}
FACTORY_CODE = {"flat": "Flat", "fp16": "SQfp16", "sq8": "SQ8", "sq6": "SQ6", "sq4": "SQ4"}
STORAGES = ("fp16", "sq8", "sq6", "sq4")  # compressed storages (every code but float32)


def code_bytes(storage: str, dim: int) -> int:
    """Bytes one vector takes in faiss' `storage` codes (rounded up to whole bytes as faiss does)."""
    if storage not in CODE_BYTES_PER_DIM:
        raise ParamError(f"unknown vector storage '{storage}'; expected one of {sorted(CODE_BYTES_PER_DIM)}")
    return int(np.ceil(CODE_BYTES_PER_DIM[storage] * dim))


def trained_bytes(storage: str, dim: int) -> int:
    """What a scalar quantizer keeps after training: per-dimension min and range (float32) for sq4/6/8."""
    return 2 * dim * 4 if storage.startswith("sq") else 0


REFINES = ("none", *FACTORY_CODE)  # a refine stage's second copy of the vectors, "none" for no refine stage


def check_refine(backend: str, refine: str) -> None:
    check_choice(backend, "refine", refine, REFINES)


def check_k_factor(backend: str, k_factor: int, refine: str) -> None:
    require(k_factor >= 1, f"{backend}: k_factor ({k_factor}) must be >= 1")
    require(k_factor == 1 or refine != "none", f"{backend}: k_factor ({k_factor}) needs a refine stage (refine = 'none')")


def refine_factory(refine: str) -> str:
    """The index_factory suffix of a refine stage."""
    if refine == "none":
        return ""
    return ",RFlat" if refine == "flat" else f",Refine({FACTORY_CODE[refine]})"


def refine_bytes(refine: str, n: int, dim: int) -> int:
    """What a refine stage keeps: a second copy of every vector in `refine` codes."""
    return 0 if refine == "none" else n * code_bytes(refine, dim) + trained_bytes(refine, dim)


def with_refine(base, refine: str, k_factor: int):
    """Search parameters for an index with a refine stage around `base` (the base index's parameters)."""
    if refine == "none":
        return base
    params = faiss.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=base)
    params.keep_alive = base  # faiss holds a raw pointer to the base parameters
    return params


class FaissIndex(AnnIndex):
    """A backend over one `faiss.Index` (built in `_fit`)."""

    index: Any

    def search_parameters(self, selector=None):
        """The faiss SearchParameters of the current search setting (with `selector` when filtering)."""
        return faiss.SearchParameters(sel=selector) if selector is not None else None

    def _set_search(self, k, search) -> None:
        self.search = search
        self.params = self.search_parameters()  # built once per setting, outside the timed path
        faiss.omp_set_num_threads(1)

    def query(self, vector: np.ndarray) -> np.ndarray:
        return self.index.search(vector[None, :], self.k, params=self.params)[1][0]

    def filtered_query(self, vector: np.ndarray, allowed: AllowedIds) -> np.ndarray:
        return self.index.search(vector[None, :], self.k, params=self.search_parameters(allowed.faiss_selector))[1][0]

    def batch_query(self, vectors: np.ndarray, threads: int) -> Neighbors:
        faiss.omp_set_num_threads(threads)
        try:
            scores, ids = self.index.search(vectors, self.k, params=self.params)
        finally:
            faiss.omp_set_num_threads(1)
        return pad_missing(ids, scores, ids < 0)

    def size_bytes(self) -> int:
        return int(faiss.serialize_index(self.index).size)
