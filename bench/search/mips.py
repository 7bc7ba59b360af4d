"""Maximum inner product search through a reduction to nearest neighbour (issue 31): documents get one more
coordinate, sqrt(M^2 - |x|^2) with M the largest document norm, and queries a 0, so that every document has norm M
and a query's inner product with it is unchanged: the backend then searches vectors of equal norm, where inner
product, cosine and L2 rank alike and graph and partition indexes work as they were built to. Without it, an
index searches raw inner products over vectors of unequal norms (not a metric)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.search.indexes.base import AnnIndex, Neighbors, ParamError


def augment_docs(vectors: np.ndarray) -> tuple[np.ndarray, float]:
    """Documents with the extra coordinate, and M."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    top = float(norms.max()) if len(norms) else 1.0
    extra = np.sqrt(np.maximum(top ** 2 - norms ** 2, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([vectors, extra[:, None]])), top


def augment_queries(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return np.ascontiguousarray(np.hstack([vectors, np.zeros((len(vectors), 1), dtype=np.float32)]))


class ReducedIndex(AnnIndex):
    """Any vector backend over the augmented documents; queries augmented on the way in. Its scores are the
    original inner products (the added coordinate meets a 0)."""

    name = "mips-reduction"
    mips_reduction = True

    def __init__(self, inner: AnnIndex):
        self.inner, self.build = inner, inner.build
        self.n = self.k = 0
        self.max_norm = float("nan")

    def check_build(self, n: int) -> None:
        self.inner.check_build(n)

    def check_search(self, k: int, search: dict[str, Any]) -> dict[str, Any]:
        return self.inner.check_search(k, search)

    def search_description(self, search: dict[str, Any]) -> dict[str, Any]:
        return self.inner.search_description(search)

    def search_at_least(self, k: int, search: dict[str, Any]) -> dict[str, Any]:
        return self.inner.search_at_least(k, search)

    def memory_bytes(self, n: int, dim: int) -> int:
        return self.inner.memory_bytes(n, dim + 1)

    def fit(self, vectors: np.ndarray, threads: int) -> None:
        augmented, self.max_norm = augment_docs(vectors)
        self.n = len(vectors)
        self.inner.fit(augmented, threads)

    def _fit(self, vectors, threads) -> None:  # fit is overridden
        raise ParamError("the reduction fits through fit()")

    def set_search(self, k: int, **search: Any) -> None:
        self.k = k
        self.inner.set_search(k, **search)

    def _set_search(self, k, search) -> None:  # set_search is overridden
        pass

    def query(self, vector: np.ndarray) -> np.ndarray:
        return self.inner.query(np.append(np.asarray(vector, dtype=np.float32), np.float32(0.0)))

    def batch_query(self, vectors: np.ndarray, threads: int) -> Neighbors:
        return self.inner.batch_query(augment_queries(vectors), threads)

    def size_bytes(self) -> int:
        return self.inner.size_bytes()

    def close(self) -> None:
        self.inner.close()
