"""Stage kinds of a pipeline, one file each, registered here by the `encoder_type` of the rows they describe.

A pipeline (bench.pipeline.ids) is `first_stage % K [>> reranker % R]`. A first stage is a retriever of one of the
kinds below; each kind reads its description from a results row (`of_row`), says what makes two runs the same
stage on any dataset (`key`: models by identity, settings as run, tuned settings by how they are chosen), its
readable `name`, and the values its tuned settings took (`tuned`). Nothing here measures: how a kind is measured
(its encoder, index wrapper, ground truth) is bench.run.hooks'. Adding a kind: a file here, a line in RETRIEVERS,
and its hooks where it measures otherwise than a dense retriever.
"""

from __future__ import annotations

from bench.pipeline.stages.base import FirstStageKind, Retriever, model_name as model_name_of
from bench.pipeline.stages.dense import Dense
from bench.pipeline.stages.fusion import Fusion
from bench.pipeline.stages.lexical import Lexical
from bench.pipeline.stages.rerank import Rerank

RETRIEVERS: dict[str, type[FirstStageKind]] = {
    "bi": Dense,  # one encoder for queries and documents
    "twin": Dense,  # separate query and document towers: the same stage shape
    "bm25": Lexical,
    "hybrid": Fusion,
}


KINDS = RETRIEVERS  # a config's encoder `type` -> its stage kind


def kind_of(type_name: str) -> type[FirstStageKind]:
    """The stage kind of a config's encoder `type`."""
    return KINDS[type_name]


def retriever_of(row) -> Retriever:
    """The first stage a results row ran."""
    kind = RETRIEVERS.get(row["encoder_type"])
    if kind is None:
        raise ValueError(f"encoder_type '{row['encoder_type']}' is not a registered stage kind ({sorted(RETRIEVERS)})")
    return kind.of_row(row)


__all__ = ["KINDS", "FirstStageKind", "kind_of", "RETRIEVERS", "model_name_of", "Dense", "Fusion", "Lexical", "Rerank", "Retriever", "retriever_of"]
