"""faiss IVF-Flat: k-means coarse quantizer with `nlist` lists; `nprobe` lists scanned per query."""

from __future__ import annotations

import logging

import faiss
import numpy as np

from bench.indexes.base import AllowedIds, AnnIndex, Neighbors, pad_missing, require

log = logging.getLogger(__name__)


class FaissIVF(AnnIndex):
    name = "faiss_ivf"
    native_filter = "faiss IDSelectorBatch in SearchParametersIVF"
    build_params = {"nlist": int, "seed": int}
    search_params = {"nprobe": int}

    def check_build(self, n: int) -> None:
        nlist = self.build.get("nlist")
        require(nlist is not None, "faiss_ivf: build parameter 'nlist' is required")
        require(1 <= nlist <= n, f"faiss_ivf: nlist ({nlist}) must be between 1 and the number of vectors ({n})")
        if n < 39 * nlist:
            log.info("faiss_ivf: %d vectors train %d lists (faiss advises >= 39 per list)", n, nlist)

    def check_search(self, k, search):
        checked = super().check_search(k, search)
        nprobe = checked.get("nprobe", 1)
        require(1 <= nprobe <= self.build["nlist"],
                f"faiss_ivf: nprobe ({nprobe}) must be between 1 and nlist ({self.build['nlist']})")
        return {"nprobe": nprobe}

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        faiss.omp_set_num_threads(threads)
        dim = vectors.shape[1]
        self.quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(self.quantizer, dim, self.build["nlist"], faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = self.build.get("seed", 1234)
        self.index.train(vectors)
        self.index.add(vectors)

    def _set_search(self, k, search) -> None:
        self.params = faiss.SearchParametersIVF(nprobe=search["nprobe"])
        faiss.omp_set_num_threads(1)

    def query(self, vector: np.ndarray) -> np.ndarray:
        return self.index.search(vector[None, :], self.k, params=self.params)[1][0]

    def filtered_query(self, vector: np.ndarray, allowed: AllowedIds) -> np.ndarray:
        params = faiss.SearchParametersIVF(sel=allowed.faiss_selector, nprobe=self.params.nprobe)
        return self.index.search(vector[None, :], self.k, params=params)[1][0]

    def batch_query(self, vectors: np.ndarray, threads: int) -> Neighbors:
        faiss.omp_set_num_threads(threads)
        try:
            scores, ids = self.index.search(vectors, self.k, params=self.params)
        finally:
            faiss.omp_set_num_threads(1)
        return pad_missing(ids, scores, ids < 0)

    def size_bytes(self) -> int:
        return int(faiss.serialize_index(self.index).size)
