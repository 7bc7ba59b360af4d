"""A lexical retriever: BM25 over the documents' text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bench.stages.base import params, params_name


@dataclass(frozen=True)
class Lexical:
    kind: ClassVar[str] = "bm25"
    backend: str  # the library: bm25s
    build: str  # JSON, as run (k1, b, method)

    @classmethod
    def of_row(cls, row) -> "Lexical":
        return cls(row["backend"], row["build_params"])

    def key(self) -> dict:
        return {"kind": self.kind, "backend": self.backend, "build": params(self.build)}

    def name(self) -> str:
        settings = params_name(params(self.build))
        return f"BM25 · {self.backend}" + (f" {settings}" if settings else "")

    def tuned(self) -> dict[str, float]:
        return {}
