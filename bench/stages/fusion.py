"""A fusion of retrievers: BM25 and a dense retriever, each cut at `depth`, fused by a rule (bench.hybrid).

The rule is part of the identity; a convex weight chosen on dev queries is named "chosen on dev" and the value
it took is a result (`tuned`), so the same pipeline keeps its id on datasets where dev picks another weight.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from bench.stages.base import params
from bench.stages.dense import Dense

FUSION_KEYS = ("depth", "fusion", "rrf_k", "weight")  # a hybrid row's search settings that belong to the fusion


@dataclass(frozen=True)
class Fusion:
    kind: ClassVar[str] = "fusion"
    rule: str  # "rrf" or "convex"
    depth: int  # K' each side retrieves
    dense: Dense
    rrf_k: float | None = None
    weight: float | None = None  # convex: the dense side's weight (as run)
    weight_chosen_on: str = ""  # "dev": the weight is tuned on the dev queries; "": fixed by the config

    @classmethod
    def of_row(cls, row) -> "Fusion":
        search = params(row["search_params"])
        dense_search = {k: v for k, v in search.items() if k not in FUSION_KEYS}
        dense = Dense(row["model_identity"], row["backend"], row["build_params"],
                      json.dumps(dense_search, sort_keys=True), row.get("chunking", "") or "")
        return cls(search["fusion"], int(search["depth"]), dense, search.get("rrf_k"), search.get("weight"),
                   row.get("fusion_weight_chosen_on", "") or "")

    def _rule(self) -> dict:
        if self.rule == "rrf":
            return {"rule": "rrf", "rrf_k": self.rrf_k}
        return {"rule": "convex", "weight": "chosen on dev" if self.weight_chosen_on == "dev" else self.weight}

    def key(self) -> dict:
        return {"kind": self.kind, **self._rule(), "depth": self.depth,
                "members": [self.dense.key(), {"kind": "bm25", "backend": "bm25s"}]}

    def name(self) -> str:
        if self.rule == "rrf":
            rule = f"RRF k={self.rrf_k:g}"
        else:
            rule = "convex, weight chosen on dev" if self.weight_chosen_on == "dev" else f"convex w={self.weight:g}"
        return f"fuse[{rule}; depth {self.depth}]({self.dense.name()}, BM25 · bm25s)"

    def tuned(self) -> dict[str, float]:
        return {"weight": float(self.weight)} if self.rule == "convex" and self.weight_chosen_on == "dev" else {}
