"""faiss IVF-PQ: `nlist` k-means lists holding product-quantized codes (`m` sub-vectors of `nbits` bits each;
`fast_scan` packs 4-bit codes for SIMD scanning), optionally with a refine stage that re-scores a pool of
`k_factor` x K candidates against a second copy of the vectors (`refine`: "flat" float32, "fp16", "sq8",
"sq6", "sq4"; "none" keeps only the PQ codes). Search: `nprobe`, `k_factor`.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from bench.indexes.base import Params, quiet_fd2, require
from bench.indexes.faiss_base import FACTORY_CODE, FaissIndex, code_bytes, trained_bytes
from bench.indexes.faiss_ivf import check_ivf_build, check_nprobe, ivf_lists_bytes

REFINES = ("none", *FACTORY_CODE)


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


class FaissIVFPQ(FaissIndex):
    name = "faiss_ivfpq"
    native_filter = "faiss IDSelectorBatch in SearchParametersIVF"
    Build = IvfPqBuild
    Search = IvfPqSearch
    short_names = {"k_factor": "kf"}
    gate_params = ({"nlist": 128, "m": 32, "nbits": 8}, {"nprobe": 8})

    def check_build(self, n: int) -> None:
        b = self.build
        check_ivf_build(self.name, b.nlist, n)
        require(b.m >= 1, f"{self.name}: m ({b.m}) must be >= 1")
        require(1 <= b.nbits <= 16, f"{self.name}: nbits ({b.nbits}) must be between 1 and 16")
        require(not b.fast_scan or b.nbits == 4, f"{self.name}: fast_scan needs nbits = 4, got {b.nbits}")
        require(n >= 2 ** b.nbits, f"{self.name}: nbits ({b.nbits}) needs at least {2 ** b.nbits} vectors to train "
                                   f"its codebooks, got {n}")
        require(b.refine in REFINES, f"{self.name}: refine '{b.refine}' must be one of {list(REFINES)}")

    def effective_search(self, k, search):
        check_nprobe(self.name, search.nprobe, self.build.nlist)
        require(search.k_factor >= 1, f"{self.name}: k_factor ({search.k_factor}) must be >= 1")
        require(search.k_factor == 1 or self.build.refine != "none",
                f"{self.name}: k_factor ({search.k_factor}) needs a refine stage (refine = 'none')")
        return search.as_dict()

    def factory(self) -> str:
        b = self.build
        text = f"IVF{b.nlist},PQ{b.m}x{b.nbits}{'fs' if b.fast_scan else ''}"
        if b.refine == "none":
            return text
        return text + (",RFlat" if b.refine == "flat" else f",Refine({FACTORY_CODE[b.refine]})")

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        require(vectors.shape[1] % self.build.m == 0,
                f"{self.name}: m ({self.build.m}) must divide the dimension ({vectors.shape[1]})")
        faiss.omp_set_num_threads(threads)
        self.index = faiss.index_factory(vectors.shape[1], self.factory(), faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(self.index)
        ivf.cp.seed = self.build.seed
        with quiet_fd2():  # faiss warns on stderr when a PQ codebook gets < 39 training points per centroid
            self.index.train(vectors)
        self.index.add(vectors)

    def search_parameters(self, selector=None):
        ivf = faiss.SearchParametersIVF(sel=selector, nprobe=self.search["nprobe"])
        if self.build.refine == "none":
            return ivf
        params = faiss.IndexRefineSearchParameters(k_factor=self.search["k_factor"], base_index_params=ivf)
        params.keep_alive = ivf  # faiss holds a raw pointer to the base parameters
        return params

    def memory_bytes(self, n: int, dim: int) -> int:
        b = self.build
        if b.fast_scan:  # codes packed per list in blocks of 32 vectors: on average half a block of padding
            codes = n * b.m // 2 + b.nlist * 16 * b.m // 2
        else:
            codes = n * ((b.m * b.nbits + 7) // 8)
        refine = 0 if b.refine == "none" else n * code_bytes(b.refine, dim) + trained_bytes(b.refine, dim)
        return codes + ivf_lists_bytes(n, b.nlist, dim) + dim * (2 ** b.nbits) * 4 + refine


