"""BM25 (the `bm25s` package) as a first stage over raw text: build `k1`, `b`, `method`; no search parameters.

It takes texts, not vectors (its listing's `input = "text"`, bench.search.catalog), so it pairs with the `bm25` encoder type, which passes
queries and documents through untouched: query tokenization happens inside `query`, in the timed path.
English stopwords and the Snowball stemmer, as in the usual BEIR BM25 setup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from bench.search.indexes.base import AnnIndex, Neighbors, Params, ParamError, pad_missing, require, serialized_size


@dataclass(frozen=True)
class Bm25Build(Params):
    k1: float = 0.9
    b: float = 0.4
    method: str = "lucene"


class Bm25Index(AnnIndex):
    name = "bm25s"
    Build = Bm25Build

    def check_build(self, n: int) -> None:
        require(self.build.k1 > 0, "bm25s: k1 must be > 0")
        require(0 <= self.build.b <= 1, "bm25s: b must be in [0, 1]")
        method = self.build.method
        require(method in ("lucene", "robertson", "atire", "bm25l", "bm25+"), f"bm25s: unknown method '{method}'")

    def fit(self, texts, threads: int) -> None:
        import bm25s
        import Stemmer

        self.check_build(len(texts))
        self.n = len(texts)
        self.stemmer = Stemmer.Stemmer("english")
        self.index = bm25s.BM25(k1=self.build.k1, b=self.build.b, method=self.build.method)
        self.index.index(self._tokenize(list(texts)), show_progress=False)

    def _fit(self, vectors, threads) -> None:  # fit is overridden: texts, not vectors
        raise ParamError("bm25s indexes texts")

    def _tokenize(self, texts: list[str]):
        import bm25s

        return bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False)

    def _set_search(self, k, search) -> None:
        pass

    def query(self, text) -> np.ndarray:
        ids, _ = self.index.retrieve(self._tokenize([str(text)]), k=self.k, show_progress=False, n_threads=1)
        return ids[0]

    def batch_query(self, texts, threads: int) -> Neighbors:
        ids, scores = self.index.retrieve(self._tokenize([str(t) for t in texts]), k=self.k, show_progress=False,
                                          n_threads=threads)
        # bm25s fills the tail with zero-score documents when fewer than K match: keep them, they are ranked.
        return pad_missing(np.asarray(ids, dtype=np.int64), np.asarray(scores), np.zeros(ids.shape, dtype=bool))

    def size_bytes(self) -> int:
        return serialized_size(lambda folder: self.index.save(os.path.join(folder, "bm25")))
