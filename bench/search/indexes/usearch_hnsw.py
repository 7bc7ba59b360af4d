"""usearch HNSW graph (Unum): build `connectivity` (its M), `expansion_add` (ef_construction) and the stored
`dtype` (f32, f16, i8: usearch quantizes inside the index); search `expansion_search` (its ef, >= K; default K)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from usearch.index import Index

from bench.search.indexes.base import AnnIndex, Neighbors, Params, check_choice, pad_missing, pad_to_k, serialized_size
from bench.search.indexes.hnsw import check_graph_build, ef_at_least, effective_ef

DTYPES = ("f32", "f16", "i8")
BYTES = {"f32": 4, "f16": 2, "i8": 1}


@dataclass(frozen=True)
class UsearchBuild(Params):
    connectivity: int = 16
    expansion_add: int = 128
    dtype: str = "f32"


@dataclass(frozen=True)
class UsearchSearch(Params):
    expansion_search: int | None = None  # None: K


class UsearchHNSW(AnnIndex):
    name = "usearch"
    Build = UsearchBuild
    Search = UsearchSearch
    gate_params = ({"connectivity": 16, "expansion_add": 100}, {"expansion_search": 50})

    def check_build(self, n: int) -> None:
        check_graph_build(self.name, self.build.connectivity, self.build.expansion_add)
        check_choice(self.name, "dtype", self.build.dtype, DTYPES)

    def effective_search(self, k, search):
        return {"expansion_search": effective_ef(self.name, k, search.expansion_search)}

    def search_at_least(self, k, search):
        return ef_at_least(k, search, "expansion_search")

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        self.index = Index(ndim=vectors.shape[1], metric="ip", dtype=self.build.dtype,
                           connectivity=self.build.connectivity, expansion_add=self.build.expansion_add)
        self.index.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=threads)

    def _set_search(self, k, search) -> None:
        self.index.expansion_search = search["expansion_search"]

    def query(self, vector: np.ndarray) -> np.ndarray:
        return pad_to_k(self.index.search(vector, self.k, threads=1).keys, self.k)

    def batch_query(self, vectors: np.ndarray, threads: int) -> Neighbors:
        found = self.index.search(vectors, self.k, threads=threads)
        keys, distances = found.keys.reshape(len(vectors), -1), found.distances.reshape(len(vectors), -1)
        missing = np.arange(keys.shape[1])[None, :] >= np.asarray(found.counts).reshape(-1, 1)
        return pad_missing(keys.astype(np.int64), 1.0 - distances, missing)  # "ip" distance is 1 - <q, x>

    def size_bytes(self) -> int:
        return serialized_size(lambda folder: self.index.save(os.path.join(folder, "usearch.bin")))

    def memory_bytes(self, n: int, dim: int) -> int:
        # each node: the vector in its dtype, a key (8), 4 bytes more (measured: 4.06 at 8,000 x 64) and level-0 links (2 * connectivity
        # neighbours of 4 bytes, plus a count); upper levels on about 1/(M-1) of the nodes with M links each
        m = self.build.connectivity
        return int(n * (dim * BYTES[self.build.dtype] + 8 + 4 + 2 * m * 4 + 4) + n / (m - 1) * (m * 4 + 4))
