"""faiss IVF over scalar-quantized vectors: `nlist` k-means lists holding each vector's `storage` codes
("sq8", "sq6", "sq4": that many bits per dimension, trained per-dimension ranges; "fp16": half floats).
Search: `nprobe`."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from bench.search.indexes.base import Params, check_choice
from bench.search.indexes.faiss_base import FACTORY_CODE, STORAGES, FaissIndex, code_bytes, trained_bytes
from bench.search.indexes.faiss_ivf import IvfSearch, check_ivf_build, check_nprobe, ivf_lists_bytes


@dataclass(frozen=True)
class IvfSqBuild(Params):
    nlist: int
    storage: str = "sq8"
    seed: int = 1234


class FaissIVFSQ(FaissIndex):
    name = "faiss_ivfsq"
    native_filter = "faiss IDSelectorBatch in SearchParametersIVF"
    Build = IvfSqBuild
    Search = IvfSearch
    gate_params = ({"nlist": 128, "storage": "sq8"}, {"nprobe": 8})

    def check_build(self, n: int) -> None:
        check_ivf_build(self.name, self.build.nlist, n)
        check_choice(self.name, "storage", self.build.storage, STORAGES)

    def effective_search(self, k, search):
        check_nprobe(self.name, search.nprobe, self.build.nlist)
        return search.as_dict()

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        faiss.omp_set_num_threads(threads)
        factory = f"IVF{self.build.nlist},{FACTORY_CODE[self.build.storage]}"
        self.index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        faiss.extract_index_ivf(self.index).cp.seed = self.build.seed
        self.index.train(vectors)
        self.index.add(vectors)

    def search_parameters(self, selector=None):
        return faiss.SearchParametersIVF(sel=selector, nprobe=self.search["nprobe"])

    def memory_bytes(self, n: int, dim: int) -> int:
        storage = self.build.storage
        return n * code_bytes(storage, dim) + trained_bytes(storage, dim) + ivf_lists_bytes(n, self.build.nlist, dim)
