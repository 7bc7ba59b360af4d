"""ScaNN: a k-means tree of `num_leaves`, anisotropic-hashing scores, exact re-scoring of the top candidates.

Build: `num_leaves`, `dimensions_per_block` and `anisotropic_quantization_threshold` (AH codes),
`reorder` (the default number of candidates re-scored exactly; must be >= K unless set per search),
`random_init` (k-means seeding of the tree; off by default because ScaNN's random init is unseeded,
so builds would differ from run to run).
Search: `num_leaves_to_search`, `pre_reorder_num_neighbors`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

import numpy as np

from bench.indexes.base import AnnIndex, Neighbors, pad_missing, require, serialized_size


@contextlib.contextmanager
def _quiet_fd2():
    """ScaNN's C++ logs straight to file descriptor 2; keep it, and show it only if the build fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class ScannIndex(AnnIndex):
    name = "scann"
    build_params = {"num_leaves": int, "dimensions_per_block": int,
                    "anisotropic_quantization_threshold": float, "reorder": int, "training_sample_size": int, "random_init": bool}
    search_params = {"num_leaves_to_search": int, "pre_reorder_num_neighbors": int}

    def check_build(self, n: int) -> None:
        leaves = self.build.get("num_leaves")
        require(leaves is not None, "scann: build parameter 'num_leaves' is required")
        require(1 <= leaves <= n, f"scann: num_leaves ({leaves}) must be between 1 and the number of vectors ({n})")
        require(self.build.get("dimensions_per_block", 2) >= 1, "scann: dimensions_per_block must be >= 1")
        require(self.build.get("reorder", 100) >= 1, "scann: reorder must be >= 1")

    def check_search(self, k, search):
        checked = super().check_search(k, search)
        leaves = checked.get("num_leaves_to_search", 1)
        require(1 <= leaves <= self.build["num_leaves"],
                f"scann: num_leaves_to_search ({leaves}) must be between 1 and num_leaves ({self.build['num_leaves']})")
        pre = checked.get("pre_reorder_num_neighbors", self.build.get("reorder", 100))
        require(pre >= k, f"scann: pre_reorder_num_neighbors / reorder ({pre}) must be >= K ({k})")
        return {"num_leaves_to_search": leaves, "pre_reorder_num_neighbors": pre}

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        import scann

        leaves = self.build["num_leaves"]
        builder = scann.scann_ops_pybind.builder(vectors, 10, "dot_product")
        builder.set_n_training_threads(threads)
        builder = (builder.tree(num_leaves=leaves, num_leaves_to_search=1,
                                training_sample_size=min(self.build.get("training_sample_size", len(vectors)), len(vectors)),
                                random_init=self.build.get("random_init", False))
                   .score_ah(self.build.get("dimensions_per_block", 2),
                             anisotropic_quantization_threshold=self.build.get("anisotropic_quantization_threshold", 0.2))
                   .reorder(self.build.get("reorder", 100)))
        with _quiet_fd2():
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
