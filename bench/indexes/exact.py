"""Exact inner-product search (faiss IndexFlatIP): ground truth and baseline."""

from __future__ import annotations

import faiss
import numpy as np

from bench.indexes.base import AllowedIds, AnnIndex, Neighbors, pad_missing


class ExactIndex(AnnIndex):
    name = "exact"
    native_filter = "faiss IDSelectorBatch"

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        faiss.omp_set_num_threads(threads)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)

    def _set_search(self, k, search) -> None:
        faiss.omp_set_num_threads(1)

    def query(self, vector: np.ndarray) -> np.ndarray:
        return self.index.search(vector[None, :], self.k)[1][0]

    def filtered_query(self, vector: np.ndarray, allowed: AllowedIds) -> np.ndarray:
        params = faiss.SearchParameters(sel=allowed.faiss_selector)
        return self.index.search(vector[None, :], self.k, params=params)[1][0]

    def batch_query(self, vectors: np.ndarray, threads: int) -> Neighbors:
        faiss.omp_set_num_threads(threads)
        try:
            scores, ids = self.index.search(vectors, self.k)
        finally:
            faiss.omp_set_num_threads(1)
        return pad_missing(ids, scores, ids < 0)

    def size_bytes(self) -> int:
        return int(faiss.serialize_index(self.index).size)
