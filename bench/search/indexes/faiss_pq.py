"""faiss product quantization without partitions (IndexPQ): every vector as `m` codes of `nbits` bits, all of
them scanned with asymmetric distances; optionally a refine stage re-scoring `k_factor` x K candidates against
a finer copy (`refine`: "flat", "fp16", "sq8", "sq6", "sq4"). faiss' IndexPQ takes no ID selector: no native
filtered search."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from bench.search.indexes.base import Params
from bench.search.indexes.faiss_base import (FaissIndex, check_k_factor, check_refine, refine_bytes, refine_factory,
                                      with_refine)
from bench.search.indexes.faiss_ivfpq import check_pq_build, check_pq_dim, pq_codebook_bytes, train_quietly


@dataclass(frozen=True)
class PqBuild(Params):
    m: int
    nbits: int = 8
    refine: str = "none"


@dataclass(frozen=True)
class PqSearch(Params):
    k_factor: int = 1  # refine pool = k_factor x K (1 without a refine stage)


class FaissPQ(FaissIndex):
    name = "faiss_pq"
    Build = PqBuild
    Search = PqSearch
    gate_params = ({"m": 16, "nbits": 8, "refine": "sq8"}, {"k_factor": 4})

    def check_build(self, n: int) -> None:
        check_pq_build(self.name, self.build.m, self.build.nbits, n)
        check_refine(self.name, self.build.refine)

    def effective_search(self, k, search):
        check_k_factor(self.name, search.k_factor, self.build.refine)
        return search.as_dict()

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        check_pq_dim(self.name, self.build.m, vectors.shape[1])
        faiss.omp_set_num_threads(threads)
        factory = f"PQ{self.build.m}x{self.build.nbits}" + refine_factory(self.build.refine)
        self.index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        train_quietly(self.index, vectors)
        self.index.add(vectors)

    def search_parameters(self, selector=None):
        return with_refine(None, self.build.refine, self.search["k_factor"])

    def memory_bytes(self, n: int, dim: int) -> int:
        b = self.build
        return n * ((b.m * b.nbits + 7) // 8) + pq_codebook_bytes(dim, b.nbits) + refine_bytes(b.refine, n, dim)
