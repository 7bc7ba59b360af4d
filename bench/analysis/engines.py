"""What the database layer costs (issue 41): each backend's cheapest setting at recall@K >= the target, and for a
backend served over a socket (PostgreSQL + pgvector) its p95 and bytes as ratios to the same algorithm in-process
(its catalog `twin`: hnswlib for pgvector's HNSW, faiss IVF for its IVFFlat) at that same target.

Sweep rows (a dataset with dev queries): the setting is chosen on dev recall@K (`fastest_at_recall`), its test figures
reported. Scale-series rows (a vector set, bench.series.scale): each row already is its backend's first setting on the
grid reaching the target over the set's queries, timed on the first of them.
"""

from __future__ import annotations

import pandas as pd

from bench.analysis import LATENCY_TIE, fastest_at_recall, paired_p, params_text, per_query, t_interval
from bench.search.catalog import CATALOG, backends_taking


def _chosen(frame: pd.DataFrame, k: int, target: float) -> pd.DataFrame:
    """One row per backend: its cheapest setting at recall@K >= target (None-free: backends that miss it drop out)."""
    if "dev_recall_at_k" in frame:  # sweep rows: chosen on dev; a dense encoder's (not a fusion's) search
        from bench.pipeline.stages import kind_of

        dense = frame["encoder_type"].map(lambda name: kind_of(name).output == "vectors")
        first = frame[(frame["stage"] == "first") & (frame["k"] == k) & dense]
        picked = [fastest_at_recall(rows, target) for _, rows in first.groupby("backend", sort=False)]
        rows = pd.DataFrame([p for p in picked if p is not None])
        if rows.empty:
            return rows
        return rows.assign(chosen_on="dev", recall=rows["dev_recall_at_k"],
                           collection=rows["dataset"] + ", " + rows["encoder"] + f" ({int(rows['n_docs'].iloc[0]):,})")
    rows = frame[frame["reached"] & (frame["n"] == frame["n"].max())]
    return rows.assign(chosen_on="all", recall=rows["recall_at_k"],
                       collection=rows["source"] + rows["n"].map(" ({:,})".format))


def engine_table(frame: pd.DataFrame, k: int = 10, target: float = 0.95) -> pd.DataFrame:
    """Per backend: the chosen setting, its recall, p50 / p95, bytes (a served engine's also in its buffer cache after
    the timed queries) and build time; for a served backend, the ratios
    of its p95 and bytes to its in-process twin's, and whether the p95s tie (within LATENCY_TIE)."""
    rows = _chosen(frame[frame["backend"].isin(backends_taking("vectors"))], k, target)  # BM25's recall is against BM25 itself
    if len(rows) < 2:  # one backend alone (a BM25 file's dense side) compares nothing
        return pd.DataFrame()
    by_backend = rows.set_index("backend")
    out = []
    for backend, row in by_backend.iterrows():
        listing = CATALOG.get(backend)
        twin = by_backend.loc[listing.twin] if listing and listing.twin in by_backend.index else None
        entry = {"collection": row["collection"], "host": row["host_id"], "backend": backend, "served by": listing.served if listing else "", "setting": " / ".join(
            part for part in (params_text(row["build_params"]), params_text(row["search_params"])) if part != "-"),
            "chosen on": row["chosen_on"], "recall@K": float(row["recall"]), "p50 ms": float(row["search_p50_ms"]),
            "p95 ms": float(row["search_p95_ms"]), "index bytes": int(row["index_bytes"]),
            "cached bytes": row.get("index_cached_bytes"),  # a served engine's index in its buffer cache
            "build s": float(row["build_s"]), "twin": listing.twin if twin is not None else ""}
        if twin is not None:
            ratio = entry["p95 ms"] / float(twin["search_p95_ms"])
            entry.update({"p95 / twin": ratio, "bytes / twin": entry["index bytes"] / float(twin["index_bytes"]),
                          "p95 tie": abs(ratio - 1) <= LATENCY_TIE})
        out.append(entry)
    return pd.DataFrame(out).sort_values(["p95 ms", "backend"]).reset_index(drop=True)


# Pyserini's BEIR regressions, BM25 "flat" index (title and text in one field, k1 = 0.9, b = 0.4): test nDCG@10.
PUBLISHED_BM25_FLAT = {"scifact": 0.679, "nfcorpus": 0.322}


def lexical_table(*frames: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """Each BM25 backend (a text backend of the catalog) at K on each sweep of `frames` (scale-series frames are
    skipped): test and dev nDCG@10 with 95% intervals beside the published flat figure, p50 / p95, index bytes; and
    each one's paired dev delta against bm25s on the same collection (the harness's default lexical side) with its
    one-sided p-value (worse)."""
    tables = [_lexical(frame, k) for frame in frames if "q_ndcg_at_10" in frame]
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _lexical(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    rows = frame[(frame["stage"] == "first") & (frame["k"] == k) & frame["backend"].isin(backends_taking("text"))]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.sort_values("measured_at").drop_duplicates("backend", keep="last").set_index("backend")
    reference = rows.loc["bm25s"] if "bm25s" in rows.index else None
    out = []
    for backend, row in rows.iterrows():
        entry = {"collection": f"{row['dataset']} ({int(row['n_docs']):,})", "host": row["host_id"], "backend": backend,
                 "setting": params_text(row["build_params"]), "test nDCG@10": t_interval(row["q_ndcg_at_10"]),
                 "dev nDCG@10": t_interval(row["dev_q_ndcg_at_10"]) if row["n_dev_queries"] else (float("nan"),) * 2,
                 "published": PUBLISHED_BM25_FLAT.get(row["dataset"]),  # a collection with distractors has its own name
                 "p50 ms": float(row["search_p50_ms"]), "p95 ms": float(row["search_p95_ms"]),
                 "index bytes": int(row["index_bytes"]), "build s": float(row["build_s"])}
        if reference is not None and backend != "bm25s" and row["n_dev_queries"]:
            a, b = per_query(row, split="dev"), per_query(reference, split="dev")
            diff = (a - b.reindex(a.index)).dropna().to_numpy()
            entry.update({"dev delta vs bm25s": t_interval(diff), "dev p (worse)": paired_p(diff, alternative="less"),
                          "p95 / bm25s": entry["p95 ms"] / float(reference["search_p95_ms"])})
        out.append(entry)
    return pd.DataFrame(out)


def lexical_side(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """Which BM25 the hybrid's lexical side should be, by the rule: another backend replaces bm25s only if its dev
    nDCG@10 ties (not significantly worse at `alpha`) and its p95 is lower beyond the latency tie band."""
    if table.empty or "dev p (worse)" not in table:
        return "bm25s (no other BM25 measured on dev)"
    said = []
    for _, row in table.dropna(subset=["dev p (worse)"]).iterrows():
        ties = row["dev p (worse)"] >= alpha
        faster = row["p95 / bm25s"] < 1 - LATENCY_TIE
        verdict = "would replace bm25s" if ties and faster else "does not replace bm25s"
        said.append(f"{row['backend']} on {row['collection']} {verdict} (dev "
                    + ("ties" if ties else "is worse") + f", p95 {row['p95 / bm25s']:.2g}x)")
    return "; ".join(said)


__all__ = ["PUBLISHED_BM25_FLAT", "engine_table", "lexical_side", "lexical_table"]
