"""The decision: per dataset and budget, the pipeline to deploy and what it rests on, and its runnable block.

A pick is `recommend`'s (dev-chosen, ties to the cheaper). Its end-to-end figures are the ones the budget and the
tie-break read: a composed run's of the same cell on the same host where one exists (every query through every
stage in one loop; bench.analysis.series.with_composed), else the sweep row's. Its cost per million queries is the
load test's where the pick was served under load at its host speed, else the single-thread serving estimate: the
mean end-to-end time per query (the sum of the stages' means) on one core, at PRICE_PER_CORE_HOUR. The block names
the sweep config and the cell: `run`, `load` and `check-pipeline` each take the same file (bench.blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import (CALIBRATION_TOLERANCE, Budget, Choice, DEFAULT_BUDGETS, NothingFits, fastest_at_recall,
                            recommend)
from bench.core.cache import write_text_if_changed
from bench.core.figures import ci, timing_text

PRICE_PER_CORE_HOUR = 0.05  # USD; a cloud vCPU-hour is ~0.02-0.05 (the load config's default)


@dataclass(frozen=True)
class Decision:
    dataset: str
    budget: Budget
    choice: Choice | None  # None: nothing fits
    why_none: str = ""
    e2e_ms: tuple[float, float, float] = (np.nan, np.nan, np.nan)  # p50, p95, p99
    e2e_source: str = ""  # "composed run" or the sweep row's e2e method
    cost_per_million_usd: float = np.nan
    cost_source: str = ""

    @property
    def name(self) -> str:
        return block_name(self.dataset, self.budget)


def block_name(dataset: str, budget: Budget) -> str:
    return f"{dataset}-{budget.p95_ms:g}ms-{budget.memory_mb:g}mb"


def serving_cost(pick: pd.Series, load: pd.DataFrame | None) -> tuple[float, str]:
    """USD per million queries: measured under load where this cell was served on the same host at the same speed
    (calibration kernels within CALIBRATION_TOLERANCE), else one core per query."""
    if load is not None and len(load):
        speed = (load["calibration_ms"] / pick["calibration_ms"] - 1).abs() <= CALIBRATION_TOLERANCE
        served = load[(load["sweep_cell_id"] == pick["cell_id"]) & (load["host_id"] == pick["host_id"]) & speed]
        if len(served):
            best = served.loc[served["achieved_qps"].idxmax()]
            return float(best["cost_per_million_usd"]), f"load test, {int(best['cores'])} cores"
    mean_ms = sum(0.0 if pd.isna(pick.get(c)) else float(pick[c])
                  for c in ("query_encode_mean_ms", "search_mean_ms", "rerank_mean_ms"))
    return 1e6 * mean_ms / 1000 / 3600 * PRICE_PER_CORE_HOUR, "1 core, serial"


def decide(frame: pd.DataFrame, budget: Budget, load: pd.DataFrame | None = None,
           exclude_seen: bool = False) -> Decision:
    """One dataset's decision under `budget` (`frame`: its rows, with_derived and with_composed; `exclude_seen`
    leaves out models trained on documents its evaluation queries judge)."""
    dataset = str(frame["dataset"].iloc[0])
    try:
        choice = recommend(frame, budget, exclude_seen=exclude_seen)
    except NothingFits as err:
        return Decision(dataset, budget, None, str(err))
    pick = choice.pick
    e2e = tuple(float(pick.get(f"e2e_{q}_ms", np.nan)) for q in ("p50", "p95", "p99"))  # what the budget read
    source = "composed run" if pick.get("e2e_figure") == "composed run" else \
        f"sweep row, {pick.get('e2e_method') or 'sum of per-query medians'}"
    cost, cost_source = serving_cost(pick, load)
    return Decision(dataset, budget, choice, "", e2e, source, cost, cost_source)


def decisions(frame: pd.DataFrame, budgets: list[Budget] | None = None,
              load: pd.DataFrame | None = None) -> list[Decision]:
    """Every dataset's decision under every budget, datasets in name order."""
    return [decide(rows, budget, load) for _, rows in sorted(frame.groupby("dataset"), key=lambda g: g[0])
            for budget in budgets or DEFAULT_BUDGETS]


def sweep_config_path(pick: pd.Series) -> str:
    """The sweep config that measured the row: configs/<config_name>.toml."""
    return f"configs/{pick['config_name']}.toml"


def pipeline_block(decision: Decision) -> str:
    """The pick as a runnable block: `python -m bench run|load|check-pipeline FILE` each take it verbatim."""
    choice = decision.choice
    pick = choice.pick
    budget = decision.budget
    n_dev = int(pick["n_dev_queries"])
    chosen_on = f"{n_dev} dev queries" if n_dev else "the test queries (this dataset has no dev queries)"
    tuned = f"; tuned: {pick['tuned']}" if pick.get("tuned", "{}") not in ("{}", "") else ""
    lines = [
        f"# {decision.dataset}, end-to-end p95 <= {budget.p95_ms:g} ms and memory <= {budget.memory_mb:g} MB:",
        f"# {pick['pipeline']} (timed at K={pick['k']})",
        f"# pipeline_id {pick['pipeline_id']} (the same pipeline on every dataset){tuned}",
        f"# chosen on {chosen_on}: dev nDCG@10 {ci(*choice.dev_interval())}; test nDCG@10 {ci(*choice.test_interval())} "
        "(reported once)",
        f"# e2e p50 / p95 / p99 {' / '.join(timing_text(v) for v in decision.e2e_ms)} ms ({decision.e2e_source}); "
        f"memory {pick['memory_mb']:.1f} MB",
        "# Run it: python -m bench run FILE (measures this cell only), python -m bench load FILE (serves it under",
        "# load), python -m bench check-pipeline FILE --update-baseline, then without the flag (its latency gate).",
        f'name = "{decision.name}"',
        f'sweep = "{sweep_config_path(pick)}"',
        f'cells = ["{pick["cell_id"]}"]',
        "budgets = []",
    ]
    return "\n".join(lines) + "\n"


def write_blocks(found: list[Decision], folder: Path) -> dict[str, Path]:
    """Each pick's block as `folder/<dataset>-<budget>.toml` (atomically; unchanged files are not rewritten)."""
    written = {}
    for decision in found:
        if decision.choice is None:
            continue
        path = folder / f"{decision.name}.toml"
        write_text_if_changed(path, pipeline_block(decision))
        written[decision.name] = path
    return written


def summary_rows(frame: pd.DataFrame, k: int | None = None, every_row: bool = False) -> pd.DataFrame:
    """What `summary` shows: every row, or per (dataset, encoder, backend, K, reranker, R, alpha) the fastest cell
    reaching dev recall@K >= 0.95, else the one with the highest dev recall."""
    if k:
        frame = frame[frame["k"] == k]
    if every_row or frame.empty:
        return frame
    picks = []
    for _, group in frame.groupby(["dataset", "encoder", "backend", "k", "reranker", "r", "fusion_alpha"], dropna=False):
        pick = fastest_at_recall(group)
        picks.append(pick if pick is not None else group.sort_values("dev_recall_at_k").iloc[-1])
    return pd.DataFrame(picks)
