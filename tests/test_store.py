import json
from datetime import datetime, timezone

import pytest

from bench.store import SCHEMA, ResultStore, SchemaError, read_results


def make_row(cell_id="c1", host_id="h1", ndcg=0.5):
    row = {}
    for field in SCHEMA:
        name, kind = field.name, str(field.type)
        if kind == "string":
            row[name] = "x"
        elif kind.startswith("list"):
            row[name] = []
        elif kind == "bool":
            row[name] = False
        elif kind.startswith("timestamp"):
            row[name] = datetime.now(timezone.utc)
        else:
            row[name] = 1
    row.update(cell_id=cell_id, host_id=host_id, ndcg_at_10=ndcg, build_params=json.dumps({"M": 8}),
               query_ids=["q1", "q2"], q_ndcg_at_10=[0.25, 0.75])
    return row


def test_add_then_resume(tmp_path):
    path = tmp_path / "r.parquet"
    store = ResultStore(path)
    store.add(make_row("c1"))
    store.add(make_row("c2"))
    fresh = ResultStore(path)
    assert fresh.done("h1") == {"c1", "c2"}
    assert fresh.done("other-host") == set()
    frame = read_results(path)
    assert frame["q_ndcg_at_10"].iloc[0].tolist() == [0.25, 0.75]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_redo_replaces_the_row(tmp_path):
    store = ResultStore(tmp_path / "r.parquet")
    store.add(make_row("c1", ndcg=0.1))
    store.add(make_row("c1", ndcg=0.9))
    frame = read_results(tmp_path / "r.parquet")
    assert len(frame) == 1 and frame["ndcg_at_10"].iloc[0] == 0.9


def test_rows_must_match_the_schema(tmp_path):
    row = make_row()
    del row["k"]
    row["surprise"] = 1
    with pytest.raises(SchemaError, match=r"missing \['k'\], unknown \['surprise'\]"):
        ResultStore(tmp_path / "r.parquet").add(row)
    assert not (tmp_path / "r.parquet").exists()


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(SchemaError, match="bad.parquet: not a readable parquet file"):
        read_results(bad)
