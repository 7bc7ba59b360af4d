"""ScaNN: a k-means tree of `num_leaves`, anisotropic-hashing scores, exact re-scoring of the top candidates.

Build: `num_leaves`, `dimensions_per_block` and `anisotropic_quantization_threshold` (AH codes),
`reorder` (the default number of candidates re-scored exactly; must be >= K unless set per search),
`random_init` (k-means seeding of the tree; off by default because ScaNN's random init is unseeded,
so builds would differ from run to run).
Search: `num_leaves_to_search`, `pre_reorder_num_neighbors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.search.indexes.base import AnnIndex, Neighbors, Params, pad_missing, quiet_fd2, require, serialized_size


@dataclass(frozen=True)
class ScannBuild(Params):
    num_leaves: int
    dimensions_per_block: int = 2
    anisotropic_quantization_threshold: float = 0.2
    reorder: int = 100
    training_sample_size: int | None = None  # None: every vector
    random_init: bool = False


@dataclass(frozen=True)
class ScannSearch(Params):
    num_leaves_to_search: int = 1
    pre_reorder_num_neighbors: int | None = None  # None: the build's reorder


class ScannIndex(AnnIndex):
    name = "scann"
    Build = ScannBuild
    Search = ScannSearch
    gate_params = ({"num_leaves": 100, "reorder": 100}, {"num_leaves_to_search": 10})

    def check_build(self, n: int) -> None:
        leaves = self.build.num_leaves
        require(1 <= leaves <= n, f"scann: num_leaves ({leaves}) must be between 1 and the number of vectors ({n})")
        require(self.build.dimensions_per_block >= 1, "scann: dimensions_per_block must be >= 1")
        require(self.build.reorder >= 1, "scann: reorder must be >= 1")

    def effective_search(self, k, search):
        leaves = search.num_leaves_to_search
        require(1 <= leaves <= self.build.num_leaves,
                f"scann: num_leaves_to_search ({leaves}) must be between 1 and num_leaves ({self.build.num_leaves})")
        pre = self.build.reorder if search.pre_reorder_num_neighbors is None else search.pre_reorder_num_neighbors
        require(pre >= k, f"scann: pre_reorder_num_neighbors / reorder ({pre}) must be >= K ({k})")
        return {"num_leaves_to_search": leaves, "pre_reorder_num_neighbors": pre}

    def search_at_least(self, k, search):
        return {**search, "pre_reorder_num_neighbors": max(search.get("pre_reorder_num_neighbors") or k, k)}

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        import scann

        build = self.build
        builder = scann.scann_ops_pybind.builder(vectors, 10, "dot_product")
        builder.set_n_training_threads(threads)
        sample = min(build.training_sample_size or len(vectors), len(vectors))
        builder = (builder.tree(num_leaves=build.num_leaves, num_leaves_to_search=1, training_sample_size=sample,
                                random_init=build.random_init)
                   .score_ah(build.dimensions_per_block,
                             anisotropic_quantization_threshold=build.anisotropic_quantization_threshold)
                   .reorder(build.reorder))
        with quiet_fd2():
            self.searcher = builder.build()

    def _set_search(self, k, search) -> None:
        self.leaves = search["num_leaves_to_search"]
        self.pre = search["pre_reorder_num_neighbors"]

    def query(self, vector: np.ndarray) -> np.ndarray:
        return self.searcher.search(vector, self.k, self.pre, self.leaves)[0]

    def batch_query(self, vectors: np.ndarray, threads: int) -> Neighbors:
        self.searcher.set_num_threads(threads)
        ids, scores = self.searcher.search_batched_parallel(
            vectors, final_num_neighbors=self.k, pre_reorder_num_neighbors=self.pre, leaves_to_search=self.leaves)
        # ScaNN pads short results with id 0 and a NaN distance.
        return pad_missing(np.asarray(ids, dtype=np.int64), np.asarray(scores), np.isnan(scores))

    def size_bytes(self) -> int:
        return serialized_size(lambda folder: self.searcher.serialize(folder))

    def memory_bytes(self, n: int, dim: int) -> int:
        # The float32 dataset kept for reordering, a leaf token per point, one byte per AH block, the tree
        # centroids, the AH codebook.
        per_block = self.build.dimensions_per_block
        blocks = math.ceil(dim / per_block)
        return n * dim * 4 + n * 4 + n * blocks + self.build.num_leaves * dim * 8 + blocks * 16 * per_block * 4
