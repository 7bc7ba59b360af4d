"""faiss HNSW: the same graph as hnswlib (`M`, `ef_construction`; search `ef`, default K) over vectors kept as
`storage` codes: "flat" (float32, IndexHNSWFlat), "fp16", or "sq8" / "sq6" / "sq4" (IndexHNSWSQ)."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from bench.search.indexes.base import Params, check_choice
from bench.search.indexes.faiss_base import FACTORY_CODE, FaissIndex, code_bytes, trained_bytes
from bench.search.indexes.hnsw import HnswSearch, check_graph_build, ef_at_least, effective_ef


@dataclass(frozen=True)
class FaissHnswBuild(Params):
    M: int = 16
    ef_construction: int = 200
    storage: str = "flat"


class FaissHNSW(FaissIndex):
    name = "faiss_hnsw"
    native_filter = "faiss IDSelectorBatch in SearchParametersHNSW"
    Build = FaissHnswBuild
    Search = HnswSearch
    gate_params = ({"M": 16, "ef_construction": 100, "storage": "sq8"}, {"ef": 50})

    def check_build(self, n: int) -> None:
        check_graph_build(self.name, self.build.M, self.build.ef_construction)
        check_choice(self.name, "storage", self.build.storage, FACTORY_CODE)

    def effective_search(self, k, search):
        return {"ef": effective_ef(self.name, k, search.ef)}

    def search_at_least(self, k, search):
        return ef_at_least(k, search)

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        faiss.omp_set_num_threads(threads)
        storage = "" if self.build.storage == "flat" else f",{FACTORY_CODE[self.build.storage]}"
        self.index = faiss.index_factory(vectors.shape[1], f"HNSW{self.build.M}{storage}", faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = self.build.ef_construction
        self.index.train(vectors)
        self.index.add(vectors)

    def search_parameters(self, selector=None):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=self.search["ef"])

    def memory_bytes(self, n: int, dim: int) -> int:
        # The vector codes; per node its level (int32) and an offset (int64) into the neighbor table, which
        # holds 2M int32 slots at level 0 and M per upper level (on average 1/(M-1) upper levels per node).
        m, storage = self.build.M, self.build.storage
        links = int(n * (2 * m + m / (m - 1)) * 4)
        return n * code_bytes(storage, dim) + trained_bytes(storage, dim) + n * 4 + (n + 1) * 8 + links
