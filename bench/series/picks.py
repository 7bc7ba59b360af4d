"""The pipelines a series measures again: each budget's recommendation (bench.analysis.recommend on this host's rows,
else on all rows), then the series' own additions, a pipeline chosen twice kept once with every reason."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.analysis import Budget, NothingFits, recommend, with_derived
from bench.core.env import host_id


@dataclass(frozen=True)
class Chosen:
    row: pd.Series  # the sweep's results row
    why: str  # "budget p95 <= 50 ms, memory <= 200 MB", "minilm-bi: fastest at dev recall@100 >= 0.95"


class Picks:
    """Chosen rows by cell id in the order first chosen; `limit`: how many distinct rows at most (None: no limit)."""

    def __init__(self, limit: int | None = None):
        self.limit, self.chosen = limit, {}

    def add(self, row: pd.Series, why: str) -> None:
        previous = self.chosen.get(row["cell_id"])
        if previous is not None:
            self.chosen[row["cell_id"]] = Chosen(previous.row, f"{previous.why}; {why}")
        elif self.limit is None or len(self.chosen) < self.limit:
            self.chosen[row["cell_id"]] = Chosen(row, why)

    def add_budget_picks(self, rows: pd.DataFrame, budgets, reason) -> None:
        """Each budget's recommendation (`reason(p95, memory)` says why); a budget nothing fits adds nothing."""
        for p95, memory in budgets:
            try:
                self.add(recommend(rows, Budget(p95, memory)).pick, reason(p95, memory))
            except NothingFits:
                continue

    def list(self) -> list[Chosen]:
        return list(self.chosen.values())


def rows_here(frame: pd.DataFrame) -> pd.DataFrame:
    """This host's rows (the latencies budgets are checked against), else every row; derived for the rules."""
    here = frame[frame["host_id"] == host_id()]
    return with_derived(here if len(here) else frame)
