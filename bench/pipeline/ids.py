"""A pipeline as deployed: `first_stage % K [>> reranker % R]`, read from a results row.

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

    def name(self) -> str:
        first = f"{self.first.name()} % {self.k}"
        return first + (f" >> {self.rerank.name()} % {self.rerank.r}" if self.rerank else "")

    def tuned(self) -> dict[str, float]:
        return {**self.first.tuned(), **(self.rerank.tuned() if self.rerank else {})}

    def without_rerank(self) -> "Pipeline":
        return Pipeline(self.first, self.k)


def pipeline_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """`pipeline_id`, `pipeline_name`, `first_stage_id` (the same pipeline without its reranker: itself for a
    first-stage row), `first_stage_kind` (its stage kind's `kind`: dense, bm25, fusion) and `tuned` (JSON of the
    tuned settings' values) of each row, on the frame's index."""
    rows = []
    for index, row in frame.iterrows():
        pipeline = Pipeline.of_row(row)
        rows.append({"index": index, "pipeline_id": pipeline.pipeline_id, "pipeline_name": pipeline.name(),
                     "first_stage_id": pipeline.without_rerank().pipeline_id, "first_stage_kind": pipeline.first.kind,
                     "tuned": json.dumps(pipeline.tuned(), sort_keys=True)})
    return pd.DataFrame(rows, columns=["index", "pipeline_id", "pipeline_name", "first_stage_id", "first_stage_kind",
                                       "tuned"]).set_index("index")
