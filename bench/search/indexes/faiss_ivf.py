"""faiss IVF-Flat: k-means coarse quantizer with `nlist` lists; `nprobe` lists scanned per query."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import faiss
import numpy as np

from bench.search.indexes.base import Params, require
from bench.search.indexes.faiss_base import FaissIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IvfBuild(Params):
    nlist: int
    seed: int = 1234


@dataclass(frozen=True)
class IvfSearch(Params):
    nprobe: int = 1


def check_ivf_build(backend: str, nlist: int, n: int) -> None:
    require(1 <= nlist <= n, f"{backend}: nlist ({nlist}) must be between 1 and the number of vectors ({n})")
    if n < 39 * nlist:
        log.info("%s: %d vectors train %d lists (faiss advises >= 39 per list)", backend, n, nlist)


def check_nprobe(backend: str, nprobe: int, nlist: int) -> None:
    require(1 <= nprobe <= nlist, f"{backend}: nprobe ({nprobe}) must be between 1 and nlist ({nlist})")


def ivf_lists_bytes(n: int, nlist: int, dim: int) -> int:
    """What every faiss IVF index keeps besides its codes: an int64 id per vector, the list sizes, centroids."""
    return n * 8 + nlist * 8 + nlist * dim * 4


class FaissIVF(FaissIndex):
    name = "faiss_ivf"
    native_filter = "faiss IDSelectorBatch in SearchParametersIVF"
    Build = IvfBuild
    Search = IvfSearch
    gate_params = ({"nlist": 128}, {"nprobe": 8})

    def check_build(self, n: int) -> None:
        check_ivf_build(self.name, self.build.nlist, n)

    def effective_search(self, k, search):
        check_nprobe(self.name, search.nprobe, self.build.nlist)
        return search.as_dict()

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        faiss.omp_set_num_threads(threads)
        dim = vectors.shape[1]
        self.quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(self.quantizer, dim, self.build.nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = self.build.seed
        self.index.train(vectors)
        self.index.add(vectors)

    def search_parameters(self, selector=None):
        return faiss.SearchParametersIVF(sel=selector, nprobe=self.search["nprobe"])

    def memory_bytes(self, n: int, dim: int) -> int:
        return n * dim * 4 + ivf_lists_bytes(n, self.build.nlist, dim)
