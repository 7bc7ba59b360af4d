"""A pipeline as deployed: a first stage cut at K, then maybe a reranker over its top R; read from a results row.

Its `pipeline_id` and `name` are the same on every dataset: models are named by their identity, ANN and BM25
settings as run, and a tuned setting by how it is chosen ("weight chosen on dev", "alpha chosen on dev") - the
value it took is a result (`tuned`, the rows' `fusion_weight` / `fusion_alpha`). Without its reranker a pipeline
is its `first` stage cut at K: the pipeline a reranker's own gain is measured against (bench.contributions).
Stage kinds live in bench.pipeline.stages.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pandas as pd

from bench.pipeline.stages import Rerank, Retriever, retriever_of


@dataclass(frozen=True)
class Pipeline:
    first: Retriever
    k: int
    rerank: Rerank | None = None

    @classmethod
    def of_row(cls, row) -> "Pipeline":
        reranked = row["stage"] == "rerank"
        return cls(retriever_of(row), int(row["k"]), Rerank.of_row(row) if reranked else None)

    def key(self) -> dict:
        return {"first": self.first.key(), "k": self.k, **({"rerank": self.rerank.key()} if self.rerank else {})}

    @property
    def pipeline_id(self) -> str:
        return hashlib.sha256(json.dumps(self.key(), sort_keys=True).encode()).hexdigest()[:12]

    def name(self, tuned: dict[str, float] | None = None) -> str:
        """One name per pipeline, in words: `MiniLM exact + BM25, convex, weight chosen on dev, depth 1000`,
        `MiniLM HNSW M=16 efC=200 ef=100, top 10`, `BM25 b=0.4 k1=0.9, then listwise CE #9dee (192 tokens),
        alpha=0.5 on the top 20`. K is named only where it changes the top 10: a first stage that ranks every
        candidate by its exact score returns the same top 10 (and the same top R) for every K >= 10 (up to the order
        of equal scores: 2 of 323 NFCorpus test queries move for BM25 at K=1000; tests/test_pipelines.py), so its
        pipelines that differ only in K are one pipeline over a range of K and share the name (the id and the cell,
        in the block and the CSV, keep K). With `tuned` (this row's `tuned()`), the values tuned settings took."""
        tuned = tuned or {}
        first_values = {k: v for k, v in tuned.items() if k in self.first.tuned()}
        first = self.first.name(first_values) if first_values else self.first.name()
        text = first + ("" if self.k >= 10 and self.first.complete() else f", top {self.k}")
        if self.rerank:
            rerank_values = {k: v for k, v in tuned.items() if k in self.rerank.tuned()}
            text += f", then {self.rerank.name(rerank_values or None)} on the top {self.rerank.r}"
        return text

    def tuned(self) -> dict[str, float]:
        return {**self.first.tuned(), **(self.rerank.tuned() if self.rerank else {})}

    def without_rerank(self) -> "Pipeline":
        return Pipeline(self.first, self.k)


def pipeline_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """`pipeline_id`, `pipeline_name`, `pipeline` (the name with the values its tuned settings took), `first_stage_id` (the same pipeline without its reranker: itself for a
    first-stage row), `first_stage_kind` (its stage kind's `kind`: dense, bm25, fusion) and `tuned` (JSON of the
    tuned settings' values) of each row, on the frame's index."""
    rows = []
    for index, row in frame.iterrows():
        pipeline = Pipeline.of_row(row)
        tuned = pipeline.tuned()
        rows.append({"index": index, "pipeline_id": pipeline.pipeline_id, "pipeline_name": pipeline.name(),
                     "pipeline": pipeline.name(tuned), "first_stage_id": pipeline.without_rerank().pipeline_id,
                     "first_stage_kind": pipeline.first.kind, "tuned": json.dumps(tuned, sort_keys=True)})
    return pd.DataFrame(rows, columns=["index", "pipeline_id", "pipeline_name", "pipeline", "first_stage_id",
                                       "first_stage_kind", "tuned"]).set_index("index")
