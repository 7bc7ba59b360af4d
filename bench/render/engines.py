"""The stacks users deploy: each backend at the recall target, served engines against their in-process twin."""

from __future__ import annotations

import re

import pandas as pd

from bench.core.figures import ci, host_name, timing_text
from bench.render.markdown import markdown_table
from bench.analysis.engines import lexical_side

MB = 1e6


def engines_text(table: pd.DataFrame, where: str, k: int = 10, target: float = 0.95) -> str:
    """The answer first (what serving from the database costs against the library inside it), then the table."""
    if table.empty:
        return f"{where}: no backend reached recall@{k} >= {target}."
    served = table[table["twin"] != ""]
    lines = [f"{where}: each backend's cheapest setting at recall@{k} >= {target} (chosen on {table['chosen on'].iloc[0]} "
             "queries; single-query latency, one thread)."]
    for _, row in served.iterrows():
        lines.append(f"- {row['backend']} ({row['served by']}, over a unix socket) against {row['twin']} in-process: p95 "
                     f"{row['p95 / twin']:.2g}x ({timing_text(row['p95 ms'])} ms"
                     + (", a tie" if row["p95 tie"] else "") + f"), index {row['bytes / twin']:.2g}x the bytes.")
    shown = table.assign(**{
        "recall@K": table["recall@K"].map("{:.3f}".format),
        "p50 / p95 ms": [f"{timing_text(a)} / {timing_text(b)}" for a, b in zip(table["p50 ms"], table["p95 ms"])],
        "index MB": (table["index bytes"] / MB).map("{:.1f}".format), "build s": table["build s"].map("{:.1f}".format)})
    columns = ["backend", "served by", "setting", "recall@K", "p50 / p95 ms", "index MB", "build s"]
    if table["cached bytes"].notna().any():  # rows measured before the column have none
        shown["cached MB"] = [f"{b / MB:.1f}" if pd.notna(b) else "" for b in table["cached bytes"]]
        columns.insert(6, "cached MB")
        lines.append("cached MB: the served index's pages in the server's buffer cache after the cell's queries.")
    return "\n".join(lines + ["", markdown_table(shown[columns])])


def lexical_text(table: pd.DataFrame, side: str) -> str:
    """BM25 through each library: test nDCG@10 beside the published flat figure, p95; the lexical-side rule."""
    parts = []
    for collection, rows in table.groupby("collection", sort=False):
        said = [f"{r['backend']} {ci(*r['test nDCG@10'])}" + (f" (published {r['published']:.3f})"
                                                               if pd.notna(r["published"]) else "")
                + f", p95 {timing_text(r['p95 ms'])} ms" for _, r in rows.iterrows()]
        parts.append(f"{collection}: " + "; ".join(said))
    return "BM25 through Lucene (Anserini 1.7.1 via Pyserini's jar) beside bm25s, test nDCG@10 and single-query p95 on " + \
        "; ".join(parts) + f". The hybrid's lexical side: {side}"


def engines_section(tables: list[pd.DataFrame], series, k: int = 10, target: float = 0.95,
                    lexical: pd.DataFrame | None = None) -> str:
    """The report's lines: per collection, each served engine against its twin, then the in-process libraries'
    p95; BM25 through Lucene beside bm25s; the full tables linked."""
    said = []
    for table in tables:
        if table.empty:
            continue
        collection = table["collection"].iloc[0]
        served = [f"{r['backend']} {timing_text(r['p95 ms'])} ms, {r['p95 / twin']:.2g}x {r['twin']}'s"
                  + (" (a tie)" if r["p95 tie"] else "") + f", index {r['bytes / twin']:.2g}x its bytes"
                  for _, r in table[table["twin"] != ""].iterrows()]
        others = ", ".join(f"{r['backend']} {timing_text(r['p95 ms'])}" for _, r in table[table["twin"] == ""].iterrows())
        name = "engines-" + re.sub(r"[^a-z0-9]+", "-", collection.lower()).strip("-")
        said.append(f"on {collection} ({series.link(name, table)}): " + "; ".join(served)
                    + (f"; in-process, p95 ms: {others}" if others else ""))
    text = ("PostgreSQL + pgvector served over a unix socket (psycopg, one prepared query at a time) against the same "
            f"algorithm in-process, at each backend's cheapest setting reaching recall@{k} >= {target} (single-query "
            "p95, one thread; `make engines`, `python -m bench engines FILE`): " + "; ".join(said) + ".") if said else ""
    if lexical is not None and len(lexical):
        text += (" " if text else "") + lexical_text(lexical, lexical_side(lexical)) + "."
    hosts = sorted({h for table in [*tables, lexical] if table is not None and len(table) for h in table["host"]})
    text += f" Measured on {', '.join(map(host_name, hosts))}; latencies compare within one host only." if text else ""
    return "\n".join(["## The stacks users deploy", "", text, ""]) if text else ""
