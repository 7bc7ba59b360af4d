"""BM25 (the `bm25s` package) as a first stage over raw text: build `k1`, `b`, `method`; no search parameters.

It takes texts, not vectors (its listing's `input = "text"`, bench.search.catalog), so it pairs with the `bm25` encoder type, which passes
queries and documents through untouched: query tokenization happens inside `query`, in the timed path.
English stopwords and the Snowball stemmer, as in the usual BEIR BM25 setup; `language` (an ISO 639-1 code of
LANGUAGES) takes that language's Snowball stemmer and stopwords where PyStemmer and bm25s have them, and splits
languages written without spaces (Chinese, Japanese) into overlapping character bigrams.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from bench.search.indexes.base import AnnIndex, Neighbors, Params, ParamError, pad_missing, require, serialized_size


# language code -> (PyStemmer's Snowball algorithm, bm25s's stopword list, how words are cut); None: none there
LANGUAGES = {"en": ("english", "en", "words"), "de": ("german", "de", "words"), "es": ("spanish", "es", "words"),
             "fr": ("french", "fr", "words"), "ro": ("romanian", None, "words"), "ru": ("russian", "ru", "words"),
             "tr": ("turkish", "tr", "words"), "ar": ("arabic", None, "words"), "vi": (None, None, "words"),
             "zh": (None, None, "bigrams"), "ja": (None, None, "bigrams")}
WORD = r"(?u)\b\w\w+\b"  # bm25s's default: words of two characters or more
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def character_bigrams(text: str) -> str:
    """Runs of CJK characters as their overlapping bigrams (a lone character kept), other words as they are."""
    def grams(run: re.Match) -> str:
        chars = run.group()
        return " " + (chars if len(chars) == 1 else " ".join(chars[i:i + 2] for i in range(len(chars) - 1))) + " "

    return CJK.sub(grams, text)


@dataclass(frozen=True)
class Bm25Build(Params):
    k1: float = 0.9
    b: float = 0.4
    method: str = "lucene"
    language: str | None = None  # None: English, as rows before it (which do not record it)

    def as_dict(self):
        given = super().as_dict()
        return given if self.language is not None else {k: v for k, v in given.items() if k != "language"}


class Bm25Index(AnnIndex):
    name = "bm25s"
    Build = Bm25Build

    def check_build(self, n: int) -> None:
        require(self.build.k1 > 0, "bm25s: k1 must be > 0")
        require(0 <= self.build.b <= 1, "bm25s: b must be in [0, 1]")
        method = self.build.method
        require(method in ("lucene", "robertson", "atire", "bm25l", "bm25+"), f"bm25s: unknown method '{method}'")
        require(self.build.language in (None, *LANGUAGES),
                f"bm25s: language '{self.build.language}' must be one of {sorted(LANGUAGES)}")

    def fit(self, texts, threads: int) -> None:
        import bm25s
        import Stemmer

        self.check_build(len(texts))
        self.n = len(texts)
        algorithm, self.stopwords, self.cut = LANGUAGES[self.build.language or "en"]
        self.stemmer = Stemmer.Stemmer(algorithm) if algorithm else None
        self.index = bm25s.BM25(k1=self.build.k1, b=self.build.b, method=self.build.method)
        self.index.index(self._tokenize(list(texts)), show_progress=False)

    def _fit(self, vectors, threads) -> None:  # fit is overridden: texts, not vectors
        raise ParamError("bm25s indexes texts")

    def _tokenize(self, texts: list[str]):
        import bm25s

        if self.cut == "bigrams":
            return bm25s.tokenize([character_bigrams(t) for t in texts], token_pattern=r"(?u)\w+", stopwords=None,
                                  stemmer=self.stemmer, show_progress=False)
        return bm25s.tokenize(texts, token_pattern=WORD, stopwords=self.stopwords, stemmer=self.stemmer,
                              show_progress=False)

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
