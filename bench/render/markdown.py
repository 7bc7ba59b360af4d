"""Markdown tables, figures with their intervals, and full tables written as CSV beside the report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import ABBREVIATIONS, per_query, t_interval
from bench.core.figures import ci
from bench.core.cache import write_text_if_changed


INTERVAL_NOTE = ("Intervals: 95% t-interval of the mean over queries (scipy.stats.t); `±` gives its half-width. "
                 "Quality figures carry 3 decimals: their intervals are a few hundredths wide.")


def quality(row: pd.Series, split: str = "test", measures=("ndcg_at_10", "recall_at_100", "rr_at_10")) -> dict:
    """Formatted quality columns of one row, each with its interval."""
    names = {"ndcg_at_10": "nDCG@10", "recall_at_100": "R@100", "rr_at_10": "MRR@10"}
    prefix = "" if split == "test" else "dev "
    return {f"{prefix}{names[m]}": ci(*t_interval(per_query(row, m, split))) for m in measures}


def _mark(row: pd.Series) -> str:
    """A pipeline's label, marked when a model in it saw the evaluation queries' documents in training."""
    return row["pipeline"] + (" [documents seen in training]" if row["saw_eval_docs"] else "")


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return "" if np.isnan(value) else format(value, floatfmt)
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _p(value: float) -> str:
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def _values(column: pd.Series) -> str:
    values = sorted(set(int(v) for v in column))
    return " / ".join(map(str, values)) if values else "-"


def _span(rows: pd.DataFrame) -> str:
    """Whether a table's rows come from one run or several (runs start at their `timestamp`)."""
    if rows.empty or "timestamp" not in rows:
        return ""
    starts = pd.to_datetime(rows["timestamp"]).dropna()
    if starts.nunique() <= 1:
        return "Its rows come from one run."
    return (f"Its rows span {starts.nunique()} runs, started {starts.min():%Y-%m-%d} to {starts.max():%Y-%m-%d} "
            "(each row's latency is from its own run; see the environment's host-speed line).")


def _test_name(test: str) -> str:
    return "paired t-test" if test == "t" else "Wilcoxon signed-rank test"


def _tests_table(tests: pd.DataFrame, measure: str = "ndcg_at_10") -> pd.DataFrame:
    return pd.DataFrame({
        "system": tests["system"], "nDCG@10": [ci(m, h) for m, h in zip(tests[measure], tests["ci"])],
        "delta": [ci(m, h) for m, h in zip(tests["delta"], tests["delta_ci"])],
        "p": tests["p"].map(_p), "p Holm": tests["p_holm"].map(_p),
        "better / worse": tests["improved"].astype(str) + " / " + tests["worsened"].astype(str)})


class Tables:
    """Full tables, written as CSV files under `folder` and linked from the report as `prefix` + file name. The
    report shows the answer and a short table; the whole grid is one click away."""

    def __init__(self, folder: Path | None, prefix: str = ""):
        self.folder, self.prefix = folder, prefix

    def link(self, name: str, frame: pd.DataFrame) -> str:
        if self.folder is None:
            return f"(full table {name}.csv: not written)"
        path = Path(self.folder) / f"{name}.csv"
        write_text_if_changed(path, frame.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
        return f"[{name}.csv]({self.prefix}{name}.csv) ({len(frame)} rows)"


def _variant(text: str) -> str:
    """A scale variant with the parameter short names of the tables."""
    backend, *params = text.split(" ")
    pairs = [param.partition("=") for param in params]
    return " ".join([backend, *(f"{ABBREVIATIONS.get(name, name)}={value}" for name, _, value in pairs)])
