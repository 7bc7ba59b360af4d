"""hnswlib HNSW graph: build `M`, `ef_construction`; search `ef` (candidate list size, >= K)."""

from __future__ import annotations

import os

import hnswlib
import numpy as np

from bench.indexes.base import AllowedIds, AnnIndex, Neighbors, pad_missing, require, serialized_size


class HnswIndex(AnnIndex):
    name = "hnsw"
    native_filter = "hnswlib filter callback"
    build_params = {"M": int, "ef_construction": int, "seed": int}
    search_params = {"ef": int}

    def check_build(self, n: int) -> None:
        m, efc = self.build.get("M", 16), self.build.get("ef_construction", 200)
        require(2 <= m <= 2048, f"hnsw: M ({m}) must be between 2 and 2048")
        require(efc >= 1, f"hnsw: ef_construction ({efc}) must be >= 1")

    def check_search(self, k, search):
        checked = super().check_search(k, search)
        ef = checked.get("ef", k)
        require(ef >= k, f"hnsw: ef ({ef}) must be >= K ({k})")
        return {"ef": ef}

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        self.index = hnswlib.Index(space="ip", dim=vectors.shape[1])
        self.index.init_index(max_elements=len(vectors), M=self.build.get("M", 16),
                              ef_construction=self.build.get("ef_construction", 200),
                              random_seed=self.build.get("seed", 100))
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
