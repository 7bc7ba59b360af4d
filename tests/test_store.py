import json
from datetime import datetime, timezone

import pytest

from bench.store.results import SCHEMA, ResultStore, SchemaError, read_results


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


def test_rows_are_appended_as_parts_and_compacted(tmp_path):
    path = tmp_path / "r.parquet"
    store = ResultStore(path)
    store.add(make_row("c1", ndcg=0.1))
    store.compact()
    written = path.stat().st_mtime_ns
    store.add(make_row("c2"))
    store.add(make_row("c1", ndcg=0.9))  # a re-measured cell: the later row wins
    assert path.stat().st_mtime_ns == written  # the results file is not rewritten per row
    assert len(list(store.parts.glob("*.parquet"))) == 2
    frame = read_results(path)  # what a killed run leaves: the file and its parts, read together
    assert sorted(frame["cell_id"]) == ["c1", "c2"] and frame.set_index("cell_id").loc["c1", "ndcg_at_10"] == 0.9
    assert ResultStore(path).done("h1") == {"c1", "c2"}
    store.compact()
    assert not store.parts.exists() and read_results(path).equals(frame)
    store.add(make_row("c3"))
    assert store.drop({"c3", "c2"}, "h1") == 2  # drop folds the parts in: nothing resurrects
    assert read_results(path)["cell_id"].tolist() == ["c1"] and not list(store.parts.glob("*.parquet"))


def test_a_row_read_back_can_be_written_again(tmp_path):
    """Re-timing writes a stored row back with new latencies: missing integers and times survive the round trip."""
    path = tmp_path / "r.parquet"
    row = make_row("c1")
    row.update(encode_batch_size=None, measured_at=None)
    ResultStore(path).add(row)
    stored = read_results(path).to_dict("records")[0]  # pandas: NaN for the integer, NaT for the time
    ResultStore(path).add({**stored, "ndcg_at_10": 0.7})
    again = read_results(path)
    assert len(again) == 1 and again["encode_batch_size"].isna().all() and again["ndcg_at_10"].iloc[0] == 0.7


def test_files_before_the_stage_column_get_it_from_r(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [make_row("c1"), make_row("c2")]
    rows[0]["r"], rows[1]["r"] = 0, 20
    table = pa.Table.from_pylist(rows, schema=SCHEMA).drop_columns(["stage"])
    pq.write_table(table, tmp_path / "old.parquet")
    assert read_results(tmp_path / "old.parquet")["stage"].tolist() == ["first", "rerank"]


def test_a_cell_in_two_files_is_read_once_as_its_latest_row(tmp_path):
    """configs/transfer-scifact.toml re-measures a cell of configs/scifact.toml into its own file: read together, the
    later row stands for the cell (as a later part file does within one file)."""
    import datetime

    import pandas as pd

    frame = read_results("results/nfcorpus.parquet")
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    old = frame.iloc[:3].copy()
    new = frame.iloc[:1].copy()
    new["measured_at"] = pd.Timestamp(datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc))
    new["e2e_p95_ms"] = 123.0
    ResultStore(first)._write(old)
    ResultStore(second)._write(new)
    both = read_results(second, first)
    assert len(both) == 3 and both.set_index("cell_id").loc[new["cell_id"].iloc[0], "e2e_p95_ms"] == 123.0


def test_rows_from_an_uncommitted_tree_move_to_the_history_and_the_report_counts_them(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.cli import main

    rows = read_results("results/nfcorpus.parquet").head(5).copy()
    rows["git_dirty"] = [True, False, True, False, False]
    path = tmp_path / "r.parquet"
    pq.write_table(pa.Table.from_pandas(rows, schema=SCHEMA, preserve_index=False), path)
    assert main(["drop-uncommitted", str(path)]) == 0
    assert "moved 2 of 5 rows" in capsys.readouterr().out
    left, history = read_results(path), read_results(tmp_path / "r.history.parquet")
    assert len(left) == 3 and not left["git_dirty"].any() and len(history) == 2 and history["git_dirty"].all()
