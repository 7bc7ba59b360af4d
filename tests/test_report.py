import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.report import Budget, NothingFits, holm, pareto, recommend


def table():
    """Four configurations with known numbers: memory_mb = (index_bytes + 4 * params) / 2**20."""
    rows = [
        # name,      p95 ms, index MB, nDCG, recall
        ("fast-low", 0.5, 10, 0.50, 0.80),
        ("mid", 2.0, 20, 0.62, 0.97),
        ("rerank", 40.0, 20, 0.68, 1.00),
        ("big-slow", 3.0, 400, 0.65, 1.00),
    ]
    return pd.DataFrame([{
        "encoder": "bi", "backend": name, "build_params": json.dumps({}), "search_params": json.dumps({"x": i}),
        "k": 100, "r": 20 if name == "rerank" else 0, "reranker": "ce" if name == "rerank" else "",
        "fusion_alpha": 0.5 if name == "rerank" else np.nan, "ndcg_at_10": ndcg, "recall_at_k": recall,
        "e2e_p50_ms": p95 / 2, "e2e_p95_ms": p95, "index_bytes": int(mb * 2**20), "encoder_params": 0,
        "reranker_params": 0, "n_docs": 1000, "n_chunks": 0, "dim": 8,
    } for i, (name, p95, mb, ndcg, recall) in enumerate(rows)])


@pytest.mark.parametrize("budget, expected", [
    (Budget(1000, 1000), "rerank"),
    (Budget(10, 1000), "big-slow"),
    (Budget(10, 100), "mid"),
    (Budget(1, 100), "fast-low"),
    (Budget(10, 100, min_recall=0.99), None),
])
def test_recommender_known_answers(budget, expected):
    if expected is None:
        with pytest.raises(NothingFits, match="no configuration has end-to-end p95 <= 10"):
            recommend(table(), budget)
    else:
        assert recommend(table(), budget).iloc[0]["backend"] == expected


def test_recommend_cli_nothing_fits_exits_nonzero(tmp_path, capsys, monkeypatch):
    import bench.cli as cli

    monkeypatch.setattr(cli, "read_results", lambda *paths: table())
    assert main(["recommend", "x.parquet", "--p95-ms", "0.1", "--memory-mb", "1000"]) == 1
    assert "nothing fits" in capsys.readouterr().err
    assert main(["recommend", "x.parquet", "--p95-ms", "5", "--memory-mb", "1000"]) == 0
    out = capsys.readouterr().out
    assert "recommended: bi + big-slow" in out and "runners-up" in out and "mid" in out


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_pareto_keeps_undominated_rows():
    frame = table()
    front = pareto(frame, "ndcg_at_10", "e2e_p95_ms")
    assert front["backend"].tolist() == ["fast-low", "mid", "big-slow", "rerank"]
    frame.loc[3, "ndcg_at_10"] = 0.60  # big-slow now dominated by mid
    assert "big-slow" not in pareto(frame, "ndcg_at_10", "e2e_p95_ms")["backend"].tolist()
