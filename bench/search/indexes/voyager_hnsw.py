"""Spotify's voyager HNSW graph (hnswlib's algorithm behind its own API): build `M`, `ef_construction` and the stored
`storage` (float32, float8, e4m3); search `ef` (query_ef, >= K; default K)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from voyager import Index, Space, StorageDataType

from bench.search.indexes.base import AnnIndex, Neighbors, Params, check_choice, pad_missing, serialized_size
from bench.search.indexes.hnsw import HnswSearch, check_graph_build, ef_at_least, effective_ef

STORAGES = {"float32": (StorageDataType.Float32, 4), "float8": (StorageDataType.Float8, 1),
            "e4m3": (StorageDataType.E4M3, 1)}


@dataclass(frozen=True)
class VoyagerBuild(Params):
    M: int = 12
    ef_construction: int = 200
    storage: str = "float32"
    seed: int = 1


class VoyagerHNSW(AnnIndex):
    name = "voyager"
    Build = VoyagerBuild
    Search = HnswSearch
    gate_params = ({"M": 16, "ef_construction": 100}, {"ef": 50})

    def check_build(self, n: int) -> None:
        check_graph_build(self.name, self.build.M, self.build.ef_construction)
        check_choice(self.name, "storage", self.build.storage, STORAGES)

    def effective_search(self, k, search):
        return {"ef": effective_ef(self.name, k, search.ef)}

    def search_at_least(self, k, search):
        return ef_at_least(k, search)

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        self.index = Index(Space.InnerProduct, num_dimensions=vectors.shape[1], M=self.build.M,
                           ef_construction=self.build.ef_construction, random_seed=self.build.seed,
                           max_elements=len(vectors), storage_data_type=STORAGES[self.build.storage][0])
        self.index.add_items(vectors, np.arange(len(vectors)), num_threads=threads)

    def _set_search(self, k, search) -> None:
        self.ef = search["ef"]

    def query(self, vector: np.ndarray) -> np.ndarray:
        return self.index.query(vector, self.k, num_threads=1, query_ef=self.ef)[0].astype(np.int64)

    def batch_query(self, vectors: np.ndarray, threads: int) -> Neighbors:
        ids, distances = self.index.query(vectors, self.k, num_threads=threads, query_ef=self.ef)
        # voyager's inner-product space returns 1 - <q, x>
        return pad_missing(ids.astype(np.int64), 1.0 - distances, np.zeros(ids.shape, dtype=bool))

    def size_bytes(self) -> int:
        return serialized_size(lambda folder: self.index.save(os.path.join(folder, "voyager.bin")))

    def memory_bytes(self, n: int, dim: int) -> int:
        # hnswlib's layout (bench.search.indexes.hnsw) with the vector in its storage type, and 4 bytes more per
        # element (measured: 4.05 at 8,000 x 64)
        m = self.build.M
        return int(n * (4 + 2 * m * 4 + dim * STORAGES[self.build.storage][1] + 8) + n * 8 + n / (m - 1) * (m * 4 + 4))
