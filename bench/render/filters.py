"""Filtered search: recall@K, short queries and latency per backend, selectivity and strategy."""

from __future__ import annotations


import numpy as np
import pandas as pd

from bench.analysis import params_text as _params
from bench.core.figures import timing_text
from bench.render.markdown import Tables, markdown_table


def filters_section(frame: pd.DataFrame, tables: Tables | None = None) -> str:
    """Markdown for filtered search: recall@K, short queries and latency per backend, selectivity and strategy."""
    if frame.empty:
        return ""
    order = {"prefilter": 0, "native": 1, "postfilter": 2, "postfilter-inflated": 3}
    rows = frame.assign(o=frame["strategy"].map(order)).sort_values(["selectivity", "backend", "o"])
    k = int(rows["k"].iloc[0])
    table = pd.DataFrame({
        "selectivity": rows["selectivity"].map("{:g}".format) + " (" + rows["selectivity_realized"].map("{:.3f}".format) + ")",
        "backend": rows["backend"], "strategy": rows["strategy"] + np.where(rows["native_filter"] != "",
                                                                           " (" + rows["native_filter"] + ")", ""),
        "index params": rows["build_params"].map(_params) + " / " + rows["search_params"].map(_params),
        "K asked": rows["k_requested"], f"recall@{k}": rows["recall_at_k"],
        "queries short": rows["queries_short"].astype(str) + " / " + rows["n_queries"].astype(str),
        "violations": rows["violations"], "p50 ms": rows["search_p50_ms"], "p95 ms": rows["search_p95_ms"],
    })
    worst = rows.groupby(["strategy", "selectivity"], sort=False).agg(
        recall=("recall_at_k", "min"), p95=("search_p95_ms", "max"), violations=("violations", "sum")).reset_index()
    summary = pd.DataFrame({"strategy": list(dict.fromkeys(worst["strategy"]))})
    for selectivity, group in worst.groupby("selectivity"):
        cells = {r["strategy"]: f"{r['recall']:.3f} / {timing_text(r['p95'])}" for _, r in group.iterrows()}
        summary[f"selectivity {selectivity:g}: lowest recall@{k} / largest p95 ms"] = summary["strategy"].map(cells)
    summary["violations"] = summary["strategy"].map(worst.groupby("strategy")["violations"].sum())
    first = frame.iloc[0]
    return "\n".join([
        "## Metadata filters", "",
        f"{first['dataset']} ({first['n_docs']:,} documents, {first['n_queries']} queries): every document has a "
        "seeded synthetic tenant; a query keeps one tenant's documents (selectivity: target, and realized mean). "
        f"Recall@{k} against exact search over the passing documents; `queries short`: queries that got fewer "
        f"than min({k}, passing) results; latency of one query on one thread. `prefilter` scans the passing "
        "documents exactly; `native` filters inside the library's search; `postfilter` asks for K and drops "
        "failing ids; `postfilter-inflated` asks for K / selectivity (capped). Every row: "
        + (tables or Tables(None)).link("filters", table), "",
        markdown_table(summary), "",
    ])
