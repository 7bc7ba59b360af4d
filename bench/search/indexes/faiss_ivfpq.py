"""faiss IVF-PQ: `nlist` k-means lists holding product-quantized codes (`m` sub-vectors of `nbits` bits each;
`fast_scan` packs 4-bit codes for SIMD scanning), optionally with a refine stage that re-scores a pool of
`k_factor` x K candidates against a second copy of the vectors (`refine`: "flat" float32, "fp16", "sq8",
"sq6", "sq4"; "none" keeps only the PQ codes). Search: `nprobe`, `k_factor`.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from bench.search.indexes.base import Params, quiet_fd2, require
from bench.search.indexes.faiss_base import (FaissIndex, check_k_factor, check_refine, refine_bytes, refine_factory,
                                      with_refine)
from bench.search.indexes.faiss_ivf import check_ivf_build, check_nprobe, ivf_lists_bytes


@dataclass(frozen=True)
class IvfPqBuild(Params):
    nlist: int
    m: int
    nbits: int = 8
    fast_scan: bool = False
    refine: str = "none"
    seed: int = 1234


@dataclass(frozen=True)
class IvfPqSearch(Params):
    nprobe: int = 1
    k_factor: int = 1  # refine pool = k_factor x K (1 without a refine stage)


def check_pq_build(backend: str, m: int, nbits: int, n: int) -> None:
    require(m >= 1, f"{backend}: m ({m}) must be >= 1")
    require(1 <= nbits <= 16, f"{backend}: nbits ({nbits}) must be between 1 and 16")
    require(n >= 2 ** nbits, f"{backend}: nbits ({nbits}) needs at least {2 ** nbits} vectors to train its codebooks, got {n}")


def check_pq_dim(backend: str, m: int, dim: int) -> None:
    require(dim % m == 0, f"{backend}: m ({m}) must divide the dimension ({dim})")


def pq_codebook_bytes(dim: int, nbits: int) -> int:
    """The PQ centroids: 2^nbits per sub-vector, float32."""
    return dim * (2 ** nbits) * 4


def train_quietly(index, vectors) -> None:
    with quiet_fd2():  # faiss warns on stderr when a PQ codebook gets < 39 training points per centroid
        index.train(vectors)


class FaissIVFPQ(FaissIndex):
    name = "faiss_ivfpq"
    native_filter = "faiss IDSelectorBatch in SearchParametersIVF"
    Build = IvfPqBuild
    Search = IvfPqSearch
    gate_params = ({"nlist": 128, "m": 32, "nbits": 8}, {"nprobe": 8})

    def check_build(self, n: int) -> None:
        b = self.build
        check_ivf_build(self.name, b.nlist, n)
        require(not b.fast_scan or b.nbits == 4, f"{self.name}: fast_scan needs nbits = 4, got {b.nbits}")
        check_pq_build(self.name, b.m, b.nbits, n)
        check_refine(self.name, b.refine)

    def effective_search(self, k, search):
        check_nprobe(self.name, search.nprobe, self.build.nlist)
        check_k_factor(self.name, search.k_factor, self.build.refine)
        return search.as_dict()

    def factory(self) -> str:
        b = self.build
        return f"IVF{b.nlist},PQ{b.m}x{b.nbits}{'fs' if b.fast_scan else ''}" + refine_factory(b.refine)

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        check_pq_dim(self.name, self.build.m, vectors.shape[1])
        faiss.omp_set_num_threads(threads)
        self.index = faiss.index_factory(vectors.shape[1], self.factory(), faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(self.index)
        ivf.cp.seed = self.build.seed
        train_quietly(self.index, vectors)
        self.index.add(vectors)

    def search_parameters(self, selector=None):
        ivf = faiss.SearchParametersIVF(sel=selector, nprobe=self.search["nprobe"])
        return with_refine(ivf, self.build.refine, self.search["k_factor"])

    def memory_bytes(self, n: int, dim: int) -> int:
        b = self.build
        if b.fast_scan:  # codes packed per list in blocks of 32 vectors: on average half a block of padding
            codes = n * b.m // 2 + b.nlist * 16 * b.m // 2
        else:
            codes = n * ((b.m * b.nbits + 7) // 8)
        return codes + ivf_lists_bytes(n, b.nlist, dim) + pq_codebook_bytes(dim, b.nbits) + refine_bytes(b.refine, n, dim)


