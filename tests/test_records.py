"""The typed rows of the results table and the schema derived from them."""

import dataclasses

import pytest

from bench.store.records import NOT_RERANKED, FirstStageRow, RerankRow, results_schema
from bench.store.results import SCHEMA


def test_the_schema_is_every_column_of_the_two_stages_and_stage():
    first = {f.name for f in dataclasses.fields(FirstStageRow)}
    rerank = {f.name for f in dataclasses.fields(RerankRow)}
    assert first < rerank and rerank - first == set(NOT_RERANKED)
    assert set(SCHEMA.names) == rerank | {"stage"} and len(SCHEMA.names) == len(rerank) + 1
    assert results_schema().equals(SCHEMA)
    types = {field.name: str(field.type) for field in SCHEMA}
    assert types["r"] == "int64" and types["fusion_alpha"] == "double" and types["query_ids"] == "list<item: string>"
    assert types["measured_at"] == "timestamp[us, tz=UTC]" and types["encoder_bytes"] == "int64"


def _first_stage_columns() -> dict:
    return {f.name: None for f in dataclasses.fields(FirstStageRow)}


def test_a_row_must_have_exactly_its_stage_columns():
    columns = _first_stage_columns()
    row = FirstStageRow(**columns).as_row()
    assert row["stage"] == "first" and row["r"] == 0 and row["reranker"] == "" and set(row) == set(SCHEMA.names)
    with pytest.raises(TypeError, match="unexpected keyword argument 'recal_at_k'"):
        FirstStageRow(**columns, recal_at_k=1.0)
    del columns["ndcg_at_10"]
    with pytest.raises(TypeError, match="ndcg_at_10"):
        FirstStageRow(**columns)
    with pytest.raises(TypeError, match="'r'"):  # a first-stage row has no rerank depth
        FirstStageRow(**_first_stage_columns(), r=20)


def test_a_rerank_row_inherits_its_parent_and_needs_every_rerank_column():
    parent = FirstStageRow(**{**_first_stage_columns(), "cell_id": "parent", "k": 100, "ndcg_at_10": 0.5}).as_row()
    rerank = {name: 1 for name in NOT_RERANKED}
    child = RerankRow.of(parent, **{**rerank, "r": 20}, cell_id="child", ndcg_at_10=0.6).as_row()
    assert child["stage"] == "rerank" and child["k"] == 100 and child["r"] == 20
    assert (child["cell_id"], child["ndcg_at_10"]) == ("child", 0.6) and parent["ndcg_at_10"] == 0.5
    del rerank["fusion_alpha"]
    with pytest.raises(TypeError, match="fusion_alpha"):
        RerankRow.of(parent, **rerank)
