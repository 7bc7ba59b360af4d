"""A dense retriever: a query encoder (bi-encoder or twin towers) and an ANN index with its search settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bench.pipeline.stages.base import FirstStageKind, model_label, params, params_name
from bench.search.catalog import backend_label, complete_order, short_names


@dataclass(frozen=True)
class Dense(FirstStageKind):
    kind: ClassVar[str] = "dense"
    model: str  # identity: path or hub name @ content digest, with its precision / runtime variant
    backend: str
    build: str  # JSON, as run
    search: str  # JSON, as run
    chunking: str = ""  # JSON when passages are indexed
    mips_reduction: bool = False  # searched through the reduction to nearest neighbour (bench.search.mips)

    @classmethod
    def of_row(cls, row) -> "Dense":
        return cls(row["model_identity"], row["backend"], row["build_params"], row["search_params"],
                   row.get("chunking", "") or "", bool(row.get("mips_reduction", False)))

    def key(self) -> dict:
        return {"kind": self.kind, "model": self.model, "backend": self.backend, "build": params(self.build),
                "search": params(self.search), **({"chunking": params(self.chunking)} if self.chunking else {}),
                **({"mips_reduction": True} if self.mips_reduction else {})}

    def name(self) -> str:
        short = short_names(self.backend)
        settings = " ".join(part for part in (params_name(params(self.build), short),
                                              params_name(params(self.search), short)) if part)
        passages = f" passages({params_name(params(self.chunking))})" if self.chunking else ""
        return (f"{model_label(self.model)}{passages} {backend_label(self.backend)}"
                + (" (MIPS reduction)" if self.mips_reduction else "") + (f" {settings}" if settings else ""))

    def complete(self) -> bool:
        return complete_order(self.backend) and not self.chunking  # passages: K of them are pooled into documents

    def tuned(self) -> dict[str, float]:
        return {}
