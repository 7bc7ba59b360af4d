"""faiss brute-force search over compressed vectors (IndexScalarQuantizer): every vector stored as `storage`
codes ("fp16" half floats, or "sq8" / "sq6" / "sq4" bits per dimension with trained ranges), all scanned."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from bench.search.indexes.base import Params, check_choice
from bench.search.indexes.faiss_base import FACTORY_CODE, STORAGES, FaissIndex, code_bytes, trained_bytes


@dataclass(frozen=True)
class SqBuild(Params):
    storage: str = "fp16"


class FaissSQ(FaissIndex):
    name = "faiss_sq"
    native_filter = "faiss IDSelectorBatch"
    Build = SqBuild
    gate_params = ({"storage": "fp16"}, {})

    def check_build(self, n: int) -> None:
        check_choice(self.name, "storage", self.build.storage, STORAGES)

    def _fit(self, vectors: np.ndarray, threads: int) -> None:
        faiss.omp_set_num_threads(threads)
        self.index = faiss.index_factory(vectors.shape[1], FACTORY_CODE[self.build.storage], faiss.METRIC_INNER_PRODUCT)
        self.index.train(vectors)
        self.index.add(vectors)

    def memory_bytes(self, n: int, dim: int) -> int:
        return n * code_bytes(self.build.storage, dim) + trained_bytes(self.build.storage, dim)
