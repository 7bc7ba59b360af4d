"""hnswlib HNSW graph: build `M`, `ef_construction`; search `ef` (candidate list size, >= K; default K)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import hnswlib
import numpy as np

from bench.search.indexes.base import AllowedIds, AnnIndex, Neighbors, Params, pad_missing, require, serialized_size


@dataclass(frozen=True)
class HnswBuild(Params):
    M: int = 16
    ef_construction: int = 200
    seed: int = 100


@dataclass(frozen=True)
class HnswSearch(Params):
    ef: int | None = None  # None: ef = K


def check_graph_build(backend: str, m: int, ef_construction: int) -> None:
    require(2 <= m <= 2048, f"{backend}: M ({m}) must be between 2 and 2048")
    require(ef_construction >= 1, f"{backend}: ef_construction ({ef_construction}) must be >= 1")


def effective_ef(backend: str, k: int, ef: int | None) -> int:
    ef = k if ef is None else ef
    require(ef >= k, f"{backend}: ef ({ef}) must be >= K ({k})")
    return ef


def ef_at_least(k: int, search: dict, name: str = "ef") -> dict:
    """`search` with the candidate-list size `name` grown to at least K (the graph's candidate list must hold K)."""
    return {**search, name: max(search.get(name) or k, k)}


class HnswIndex(AnnIndex):
    name = "hnsw"
    native_filter = "hnswlib filter callback"
    Build = HnswBuild
    Search = HnswSearch
    gate_params = ({"M": 16, "ef_construction": 100}, {"ef": 50})

    def check_build(self, n: int) -> None:
        check_graph_build(self.name, self.build.M, self.build.ef_construction)

    def effective_search(self, k, search):
        return {"ef": effective_ef(self.name, k, search.ef)}

    def search_at_least(self, k, search):
        return ef_at_least(k, search)

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        self.index = hnswlib.Index(space="ip", dim=vectors.shape[1])
        self.index.init_index(max_elements=len(vectors), M=self.build.M, ef_construction=self.build.ef_construction,
                              random_seed=self.build.seed)
        self.index.add_items(vectors, np.arange(len(vectors)), num_threads=threads)

    def _set_search(self, k, search) -> None:
        self.index.set_ef(search["ef"])

    def query(self, vector: np.ndarray) -> np.ndarray:
        return self.index.knn_query(vector[None, :], k=self.k, num_threads=1)[0][0]

    def filtered_query(self, vector: np.ndarray, allowed: AllowedIds) -> np.ndarray:
        try:
            return self.index.knn_query(vector[None, :], k=self.k, num_threads=1, filter=allowed.accepts)[0][0]
        except RuntimeError:  # hnswlib refuses to return fewer than k: count the query as answered short
            return np.full(self.k, -1, dtype=np.int64)

    def batch_query(self, vectors: np.ndarray, threads: int) -> Neighbors:
        labels, distances = self.index.knn_query(vectors, k=self.k, num_threads=threads)
        # hnswlib's "ip" space returns 1 - <q, x>.
        return pad_missing(labels.astype(np.int64), 1.0 - distances, np.zeros(labels.shape, dtype=bool))

    def size_bytes(self) -> int:
        return serialized_size(lambda folder: self.index.save_index(os.path.join(folder, "hnsw.bin")))

    def memory_bytes(self, n: int, dim: int) -> int:
        # Level 0 per element: link count, 2M links, the vector, the label; a link-list size per element; on
        # average 1/(M-1) upper levels of (count + M links).
        m = self.build.M
        return int(n * (4 + 2 * m * 4 + dim * 4 + 8) + n * 4 + n / (m - 1) * (m * 4 + 4))
