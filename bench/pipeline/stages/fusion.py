"""A fusion of retrievers: BM25 and a dense retriever, each cut at `depth`, fused by a rule (bench.search.hybrid).

The rule (bench.search.fusion.RULES) and its settings are part of the identity; a weight chosen on dev queries is named "chosen on dev" and the value
it took is a result (`tuned`), so the same pipeline keeps its id on datasets where dev picks another weight.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from bench.search.catalog import backend_label
from bench.search.fusion import rule_of
from bench.pipeline.stages.base import FirstStageKind, params
from bench.pipeline.stages.dense import Dense
from bench.pipeline.stages.lexical import BM25_SCALE

FUSION_KEYS = ("depth", "fusion", "rrf_k", "weight", "lexical", "language")  # a hybrid row's search settings that belong to the fusion


@dataclass(frozen=True)
class Fusion(FirstStageKind):
    kind: ClassVar[str] = "fusion"
    output: ClassVar[str] = "hybrid"  # texts and the dense side's vectors (bench.search.hybrid.HybridItems)
    searched: ClassVar[str] = "vectors"  # its dense side runs on the vector backends
    rule: str  # a rule of bench.search.fusion.RULES
    depth: int  # K' each side retrieves
    dense: Dense
    rrf_k: float | None = None
    weight: float | None = None  # weighted rules: the dense side's weight (as run)
    weight_chosen_on: str = ""  # "dev": tuned on the dev queries ("test": on the test queries, none); "": as configured
    lexical: str = "bm25s"  # the BM25 library of the lexical side
    language: str | None = None  # its language (None: English)

    @classmethod
    def of_row(cls, row) -> "Fusion":
        search = params(row["search_params"])
        dense_search = {k: v for k, v in search.items() if k not in FUSION_KEYS}
        dense = Dense(row["model_identity"], row["backend"], row["build_params"],
                      json.dumps(dense_search, sort_keys=True), row.get("chunking", "") or "")
        return cls(search["fusion"], int(search["depth"]), dense, search.get("rrf_k"), search.get("weight"),
                   row.get("fusion_weight_chosen_on", "") or "", search.get("lexical", "bm25s"),
                   search.get("language"))

    def _settings(self, tuned: dict[str, float] | None = None) -> dict:
        chosen = (f"{tuned['weight']:.2f} ({self.weight_chosen_on})" if tuned and "weight" in tuned else
                  f"chosen on {self.weight_chosen_on}")
        values = {"rrf_k": self.rrf_k, "weight": chosen if self.weight_chosen_on else self.weight}
        return {s: values[s] for s in rule_of(self.rule).settings}

    def _rule(self) -> dict:
        return {"rule": self.rule, **self._settings()}

    def key(self) -> dict:
        return {"kind": self.kind, **self._rule(), "depth": self.depth,
                "members": [self.dense.key(), {"kind": "bm25", "backend": self.lexical,
                                             **({"language": self.language} if self.language else {})}]}

    def rule_name(self, tuned: dict[str, float] | None = None) -> str:
        """The rule and its depth: `convex, weight chosen on dev, depth 1000`."""
        return f"{rule_of(self.rule).label(self._settings(tuned))}, depth {self.depth}"

    def name(self, tuned: dict[str, float] | None = None) -> str:
        """`MiniLM exact + BM25, convex, weight chosen on dev, depth 1000`; with `tuned`, the weight it took."""
        language = f" {self.language}" if self.language else ""
        library = f" ({backend_label(self.lexical)})" if self.lexical != "bm25s" else ""
        return f"{self.dense.name()} + BM25{language}{library}, {self.rule_name(tuned)}"

    def complete(self) -> bool:
        return True  # each side retrieves `depth` whatever K is; the fused list is cut at K

    def tuned(self) -> dict[str, float]:
        return {"weight": float(self.weight)} if rule_of(self.rule).weighted() and self.weight_chosen_on else {}

    @classmethod
    def made_of(cls, spec) -> str | None:
        """Identified by its dense side (the cell key holds the fusion settings)."""
        return spec.hybrid_spec.dense

    @classmethod
    def depths(cls, spec) -> list:
        return list(spec.hybrid_spec.depth)

    @classmethod
    def scale_note(cls, dense_note: str) -> str:
        return f"dense side: {dense_note}; BM25 side: {BM25_SCALE}"
