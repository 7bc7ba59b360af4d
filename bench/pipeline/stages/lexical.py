"""A lexical retriever: BM25 over the documents' text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bench.pipeline.stages.base import FirstStageKind, params, params_name
from bench.search.catalog import backend_label, complete_order


BM25_SCALE = "inverted index grows with the corpus tokens (not in the scale series)"


@dataclass(frozen=True)
class Lexical(FirstStageKind):
    kind: ClassVar[str] = "bm25"
    output: ClassVar[str] = "text"
    searched: ClassVar[str] = "text"
    backend: str  # the library: bm25s
    build: str  # JSON, as run (k1, b, method)

    @classmethod
    def of_row(cls, row) -> "Lexical":
        return cls(row["backend"], row["build_params"])

    def key(self) -> dict:
        return {"kind": self.kind, "backend": self.backend, "build": params(self.build)}

    def name(self) -> str:
        build = {k: v for k, v in params(self.build).items() if (k, v) != ("method", "lucene")}  # bm25s's default
        library = f" ({backend_label(self.backend)})" if self.backend != "bm25s" else ""
        settings = params_name(build)
        return f"BM25{library}" + (f" {settings}" if settings else "")

    def complete(self) -> bool:
        return complete_order(self.backend)

    def tuned(self) -> dict[str, float]:
        return {}

    @classmethod
    def scale_note(cls, dense_note: str) -> str:
        return BM25_SCALE
