import math

import numpy as np
import pytest

from bench.data.datasets import Dataset
from bench.data.metrics import per_query_quality, recall_vs_exact


def tiny_dataset():
    return Dataset("hand", "test", ["d0", "d1", "d2"], ["a", "b", "c"], ["q1", "q2", "q3"], ["x", "y", "z"],
                   {"q1": {"d1": 1}, "q2": {"d0": 1, "d2": 1}, "q3": {"d2": 1}}, "h", "c")


def test_ir_measures_on_hand_built_ranking():
    ids = np.array([[0, 1, -1], [0, 2, 1], [-1, -1, -1]])  # q3 got no results
    table = per_query_quality(ids, tiny_dataset())
    assert table.index.tolist() == ["q1", "q2", "q3"]
    assert table.at["q1", "rr_at_10"] == 0.5
    assert table.at["q1", "ndcg_at_10"] == pytest.approx(1 / math.log2(3))
    assert table.at["q2", "ndcg_at_10"] == pytest.approx(1.0)
    assert table.at["q2", "recall_at_100"] == 1.0
    # a query with no results counts as 0, it is not dropped from the mean
    assert table.loc["q3"].tolist() == [0.0, 0.0, 0.0, 0.0]
    # Judged@10: the share of the returned top 10 the qrels judge (q1: d1 judged, d0 not)
    assert table.at["q1", "judged_at_10"] == 0.5 and table.at["q2", "judged_at_10"] == pytest.approx(2 / 3)
    assert table["rr_at_10"].mean() == pytest.approx((0.5 + 1 + 0) / 3)


def test_ranking_order_is_the_returned_order():
    ds = tiny_dataset()
    first = per_query_quality(np.array([[1, 0, 2]] * 3), ds)
    second = per_query_quality(np.array([[0, 1, 2]] * 3), ds)
    assert first.at["q1", "rr_at_10"] == 1.0 and second.at["q1", "rr_at_10"] == 0.5


def test_recall_vs_exact_by_id():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, 1], [5, -1, -1, -1]])
    assert recall_vs_exact(approx, exact) == pytest.approx((3 / 4 + 1 / 4) / 2)
    assert recall_vs_exact(exact, exact) == 1.0
