"""Exact inner-product search (faiss IndexFlatIP): ground truth and baseline."""

from __future__ import annotations

import faiss
import numpy as np

from bench.search.indexes.faiss_base import FaissIndex


class ExactIndex(FaissIndex):
    name = "exact"
    native_filter = "faiss IDSelectorBatch"
    gate_params = ({}, {})

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        faiss.omp_set_num_threads(threads)
        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(vectors)

    def memory_bytes(self, n: int, dim: int) -> int:
        return n * dim * 4  # the float32 vectors
