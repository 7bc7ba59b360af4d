"""What the database layer costs (issue 41): each backend's cheapest setting at recall@K >= the target, and for a
backend served over a socket (PostgreSQL + pgvector) its p95 and bytes as ratios to the same algorithm in-process
(its catalog `twin`: hnswlib for pgvector's HNSW, faiss IVF for its IVFFlat) at that same target.

Sweep rows (a dataset with dev queries): the setting is chosen on dev recall@K (`fastest_at_recall`), its test figures
reported. Scale-series rows (a vector set, bench.series.scale): each row already is its backend's first setting on the
grid reaching the target over the set's queries, timed on the first of them.
"""

from __future__ import annotations

import pandas as pd

from bench.analysis import LATENCY_TIE, fastest_at_recall, params_text
from bench.search.catalog import CATALOG


def _chosen(frame: pd.DataFrame, k: int, target: float) -> pd.DataFrame:
    """One row per backend: its cheapest setting at recall@K >= target (None-free: backends that miss it drop out)."""
    if "dev_recall_at_k" in frame:  # sweep rows: chosen on dev
        first = frame[(frame["stage"] == "first") & (frame["k"] == k)]
        picked = [fastest_at_recall(rows, target) for _, rows in first.groupby("backend", sort=False)]
        rows = pd.DataFrame([p for p in picked if p is not None])
        if rows.empty:
            return rows
        return rows.assign(chosen_on="dev", recall=rows["dev_recall_at_k"],
                           collection=rows["dataset"] + ", " + rows["encoder"] + f" ({int(rows['n_docs'].iloc[0]):,})")
    rows = frame[frame["reached"] & (frame["n"] == frame["n"].max())]
    return rows.assign(chosen_on="all queries", recall=rows["recall_at_k"],
                       collection=rows["source"] + rows["n"].map(" ({:,})".format))


def engine_table(frame: pd.DataFrame, k: int = 10, target: float = 0.95) -> pd.DataFrame:
    """Per backend: the chosen setting, its recall, p50 / p95, bytes and build time; for a served backend, the ratios
    of its p95 and bytes to its in-process twin's, and whether the p95s tie (within LATENCY_TIE)."""
    rows = _chosen(frame, k, target)
    if rows.empty:
        return pd.DataFrame()
    by_backend = rows.set_index("backend")
    out = []
    for backend, row in by_backend.iterrows():
        listing = CATALOG.get(backend)
        twin = by_backend.loc[listing.twin] if listing and listing.twin in by_backend.index else None
        entry = {"collection": row["collection"], "backend": backend, "served by": listing.served if listing else "", "setting": " / ".join(
            part for part in (params_text(row["build_params"]), params_text(row["search_params"])) if part != "-"),
            "chosen on": row["chosen_on"], "recall@K": float(row["recall"]), "p50 ms": float(row["search_p50_ms"]),
            "p95 ms": float(row["search_p95_ms"]), "index bytes": int(row["index_bytes"]),
            "build s": float(row["build_s"]), "twin": listing.twin if twin is not None else ""}
        if twin is not None:
            ratio = entry["p95 ms"] / float(twin["search_p95_ms"])
            entry.update({"p95 / twin": ratio, "bytes / twin": entry["index bytes"] / float(twin["index_bytes"]),
                          "p95 tie": abs(ratio - 1) <= LATENCY_TIE})
        out.append(entry)
    return pd.DataFrame(out).sort_values(["p95 ms", "backend"]).reset_index(drop=True)


__all__ = ["engine_table"]
