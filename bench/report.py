"""The report: cost table per encoder type, Pareto frontiers, K x R, significance, and a K/R recommender.

Everything here is a pure function of the results rows, so `make report` on committed results
regenerates `report.md` byte for byte. Memory footprint of a configuration = index bytes (which hold
the vectors for every backend here) + float32 model weights of the query encoder and the reranker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

MB = 2**20


# Short names for long parameters in tables (the parquet keeps the library's names).
ABBREVIATIONS = {"anisotropic_quantization_threshold": "aqt", "dimensions_per_block": "dpb",
                 "num_leaves_to_search": "leaves_searched", "pre_reorder_num_neighbors": "pre_reorder",
                 "ef_construction": "efC"}


def _params(text: str) -> str:
    return " ".join(f"{ABBREVIATIONS.get(k, k)}={v}" for k, v in json.loads(text).items()) or "-"


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows plus the columns the report reasons with."""
    out = frame.copy()
    out["config"] = out["build_params"].map(_params) + " / " + out["search_params"].map(_params)
    out["stage2"] = np.where(out["r"] > 0, out["reranker"] + " a=" + out["fusion_alpha"].map("{:.2f}".format), "-")
    out["memory_mb"] = (out["index_bytes"] + 4 * (out["encoder_params"] + out["reranker_params"])) / MB
    vectors = out["n_chunks"].where(out["n_chunks"] > 0, out["n_docs"])  # passages when chunked
    out["embeddings_mb"] = vectors * out["dim"] * 4 / MB
    return out


# ---------------------------------------------------------------- significance


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in input order."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted, running = np.empty(m), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()


def paired_tests(baseline: pd.Series, systems: pd.DataFrame, measure: str = "ndcg_at_10",
                 test: str = "t") -> pd.DataFrame:
    """Per-query paired test of each system row against the baseline row (t-test or Wilcoxon), Holm-corrected."""
    base = pd.Series(baseline[f"q_{measure}"], index=baseline["query_ids"])
    rows = []
    for _, row in systems.iterrows():
        other = pd.Series(row[f"q_{measure}"], index=row["query_ids"]).reindex(base.index)
        if other.isna().any():
            raise ValueError("paired test needs the same queries in both rows")
        diff = other.to_numpy() - base.to_numpy()
        if not diff.any():
            p = 1.0
        elif test == "wilcoxon":
            p = float(stats.wilcoxon(other, base).pvalue)
        else:
            p = float(stats.ttest_rel(other, base).pvalue)
        rows.append({"system": row["label"], measure: float(other.mean()), "delta": float(diff.mean()), "p": p,
                     "improved": int((diff > 0).sum()), "worsened": int((diff < 0).sum())})
    table = pd.DataFrame(rows)
    if len(table):
        table["p_holm"] = holm(table["p"].tolist())
    return table


# ---------------------------------------------------------------- Pareto


def pareto(frame: pd.DataFrame, quality: str, cost: str) -> pd.DataFrame:
    """Rows not dominated (higher quality at no higher cost), sorted by cost."""
    ordered = frame.sort_values([cost, quality], ascending=[True, False])
    best, keep = -np.inf, []
    for index, value in ordered[quality].items():
        if value > best:
            keep.append(index)
            best = value
    return ordered.loc[keep]


# ---------------------------------------------------------------- recommender


class NothingFits(ValueError):
    """No configuration meets the budgets."""


@dataclass(frozen=True)
class Budget:
    p95_ms: float
    memory_mb: float
    min_recall: float = 0.0


def recommend(frame: pd.DataFrame, budget: Budget, top: int = 5) -> pd.DataFrame:
    """Rows within the budget, best nDCG@10 first (ties: lower p95). Raises NothingFits."""
    rows = frame if "memory_mb" in frame else with_derived(frame)
    fits = rows[(rows["e2e_p95_ms"] <= budget.p95_ms) & (rows["memory_mb"] <= budget.memory_mb)
                & (rows["recall_at_k"] >= budget.min_recall)]
    if fits.empty:
        fastest = rows.loc[rows["e2e_p95_ms"].idxmin()] if len(rows) else None
        hint = (f"; the fastest configuration needs p95 {fastest['e2e_p95_ms']:.3f} ms and "
                f"{fastest['memory_mb']:.1f} MB") if fastest is not None else ""
        raise NothingFits(f"no configuration has end-to-end p95 <= {budget.p95_ms} ms, memory <= "
                          f"{budget.memory_mb} MB and recall@K >= {budget.min_recall}{hint}")
    return fits.sort_values(["ndcg_at_10", "e2e_p95_ms"], ascending=[False, True]).head(top)


DEFAULT_BUDGETS = [Budget(2, 100), Budget(10, 100), Budget(50, 200), Budget(300, 200), Budget(1000, 200),
                   Budget(5000, 200)]

RECOMMEND_COLUMNS = ["encoder", "backend", "config", "k", "stage2", "r", "ndcg_at_10", "recall_at_k",
                     "e2e_p50_ms", "e2e_p95_ms", "memory_mb"]


# ---------------------------------------------------------------- rendering


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    def cell(value) -> str:
        if isinstance(value, (float, np.floating)):
            return "" if np.isnan(value) else format(value, floatfmt)
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _plot(path: Path, series: list[tuple[str, pd.DataFrame]], x: str, y: str, xlabel: str, ylabel: str,
          title: str, logx: bool = True) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label, rows in series:
        rows = rows.sort_values(x)
        ax.plot(rows[x], rows[y], marker="o", markersize=3, label=label)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _environment(frame: pd.DataFrame, sources: list[str]) -> str:
    versions = json.loads(frame["versions"].iloc[0])
    first, last = frame["timestamp"].min(), frame["timestamp"].max()
    lines = [
        f"- results: {', '.join(sources)} ({len(frame)} rows, host {', '.join(sorted(frame['host_id'].unique()))})",
        f"- dataset: {frame['dataset'].iloc[0]} / {frame['split'].iloc[0]}: {frame['n_docs'].iloc[0]} documents, "
        f"{frame['n_queries'].iloc[0]} queries (dataset hash {frame['dataset_hash'].iloc[0]})",
        f"- hardware: {frame['cpu_model'].iloc[0]}, {frame['n_cpus'].iloc[0]} cores, {frame['memory_gb'].iloc[0]} GB RAM; "
        f"{frame['platform'].iloc[0]}",
        f"- threads: latency 1 per query (search), throughput {frame['throughput_threads'].iloc[0]}, "
        f"index build {frame['build_threads'].iloc[0]}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        f"- measured: {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC; git "
        + ", ".join(sorted({sha[:10] + ("+dirty" if dirty else "") for sha, dirty in
                            zip(frame["git_sha"], frame["git_dirty"])})),
    ]
    return "\n".join(lines)


ENCODER_TYPE_NAMES = {"bm25": "BM25, no encoder", "bi": "bi-encoder", "twin": "twin-tower"}


def _baseline_encoder(first: pd.DataFrame) -> str:
    """The pretrained bi-encoder (the first one by name), else the first dense encoder by name."""
    dense = first[(first["encoder_type"] != "bm25") & (first["chunking"] == "")]
    pretrained = dense[(dense["encoder_type"] == "bi") & (dense["encoder_mode"] == "pretrained")]
    pool = pretrained if len(pretrained) else dense
    return sorted(pool["encoder"].unique())[0] if len(pool) else ""


def _encoder_types(first: pd.DataFrame, test: str) -> list[str]:
    """Dense encoders side by side at exact search (K = 100 where measured), each tested against the
    pretrained bi-encoder; then each encoder through each ANN backend."""
    dense = first[(first["encoder_type"] != "bm25") & (first["chunking"] == "")]
    if dense["encoder"].nunique() < 2:
        return []
    exact = dense[dense["backend"] == "exact"]
    k = 100 if (exact["k"] == 100).any() else int(exact["k"].max())
    exact = exact[exact["k"] == k].drop_duplicates("encoder").set_index("encoder", drop=False).rename_axis(None)
    name = _baseline_encoder(first)
    baseline, others = exact.loc[name], exact.drop(index=name).copy()
    others["label"] = others["encoder"]
    tests = paired_tests(baseline, others, test=test).set_index("system")
    rows = []
    for encoder, row in exact.sort_values(["encoder_type", "encoder_mode", "encoder"]).iterrows():
        entry = {"encoder": encoder, "type": ENCODER_TYPE_NAMES.get(row["encoder_type"], row["encoder_type"]),
                 "training": row["encoder_mode"], "parameters": f"{row['encoder_params']:,}",
                 "model MB": 4 * row["encoder_params"] / MB, "train s": row["encoder_train_s"],
                 "corpus encode s": row["corpus_encode_s"], "query encode p50 ms": row["query_encode_p50_ms"],
                 "nDCG@10": row["ndcg_at_10"], "R@100": row["recall_at_100"], "MRR@10": row["rr_at_10"]}
        if encoder in tests.index:
            t = tests.loc[encoder]
            entry.update({"delta": t["delta"], "p": t["p"], "p Holm": t["p_holm"],
                          "better / worse": f"{int(t['improved'])} / {int(t['worsened'])}"})
        rows.append(entry)
    ann = []
    for (encoder, backend), group in dense[(dense["k"] == k) & (dense["backend"] != "exact")].groupby(["encoder", "backend"]):
        good = group[group["recall_at_k"] >= 0.95].sort_values("search_p95_ms")
        top = group.sort_values(["recall_at_k", "search_p95_ms"], ascending=[False, True]).iloc[0]
        entry = {"encoder": encoder, "backend": backend, "cells": len(group), "best recall@K": top["recall_at_k"],
                 "its p95 ms": top["search_p95_ms"]}
        if len(good):
            g = good.iloc[0]
            entry.update({"fastest with recall@K >= 0.95": g["config"], "recall@K": g["recall_at_k"],
                          "nDCG@10": g["ndcg_at_10"], "search p50 ms": g["search_p50_ms"], "search p95 ms": g["search_p95_ms"],
                          "index MB": g["index_bytes"] / MB})
        ann.append(entry)
    return ["## Encoder types, trained like for like", "",
            f"Exact search, K={k}. `training`: pretrained, `heads` (linear projection heads over the frozen backbone) "
            f"or `full` fine-tuning (`bench train-towers`; same backbone, data, loss, steps and seed within a mode, "
            f"only weight sharing differs). Parameters count distinct weights: a twin tower counts both towers, a "
            f"frozen backbone shared by two heads once. Paired {'t-test' if test == 't' else 'Wilcoxon test'} on "
            f"per-query nDCG@10 against {name}, Holm-corrected over the {len(tests)} comparisons. Where train and "
            f"test share relevant documents (SciFact does), part of a trained encoder's gain can be a learned "
            f"document prior: `make seen-positives` splits the test queries by that (results/seen_positives.md).",
            "",
            markdown_table(pd.DataFrame(rows)), "",
            f"The same encoders through the ANN grid (K={k}): per encoder and backend, the highest recall@K reached "
            "and the fastest cell with recall@K >= 0.95.", "", markdown_table(pd.DataFrame(ann)), ""]


def _scale_note(scale: pd.DataFrame | None) -> str:
    """The cost table's scale column for dense encoders: measured slopes when a scale series is given."""
    from bench.scale import growth

    slopes = growth(scale) if scale is not None and len(scale) else pd.DataFrame()
    if slopes.empty:
        return "extrapolation: index bytes and build grow ~linearly in N (no scale series given)"
    bytes_slopes = ", ".join(f"{r['backend']} {r['slope index_bytes']:.2f}" for _, r in slopes.iterrows())
    p95_slopes = ", ".join(f"{r['backend']} {r['slope search_p95_ms']:.2f}" for _, r in slopes.iterrows())
    return f"measured (N {slopes['sizes'].iloc[0]}): index bytes ~ N^({bytes_slopes}); p95 at fixed recall ~ N^({p95_slopes})"


def _chunking_section(first: pd.DataFrame, test: str) -> list[str]:
    """Whole documents vs passages of the same model: exact search at each K, paired tests at K = 100."""
    chunked = first[first["chunking"] != ""]
    if chunked.empty:
        return []
    models = set(chunked["model_identity"])
    whole = first[(first["chunking"] == "") & first["model_identity"].isin(models) & (first["encoder_mode"] == "pretrained")]
    rows = pd.concat([whole, chunked])
    exact = rows[rows["backend"] == "exact"]
    table = []
    for (encoder, k), row in exact.groupby(["encoder", "k"]):
        row = row.iloc[0]
        spec = json.loads(row["chunking"]) if row["chunking"] else {}
        ann = rows[(rows["encoder"] == encoder) & (rows["k"] == k) & (rows["backend"] != "exact")
                   & (rows["recall_at_k"] >= 0.95)].sort_values("search_p95_ms").head(1)
        table.append({
            "encoder": encoder, "passages": f"{spec['tokens']} tokens, stride {spec['stride']}, {spec['aggregate']}"
            if spec else "whole documents", "vectors": row["n_chunks"] or row["n_docs"], "K": k,
            "corpus encode s": row["corpus_encode_s"], "index MB": row["index_bytes"] / MB,
            "nDCG@10": row["ndcg_at_10"], "R@100": row["recall_at_100"], "MRR@10": row["rr_at_10"],
            "exact p95 ms": row["search_p95_ms"],
            "fastest ANN at recall >= 0.95": (f"{ann.iloc[0]['backend']} {ann.iloc[0]['config']}: "
                                              f"{ann.iloc[0]['search_p95_ms']:.3f} ms p95, {ann.iloc[0]['index_bytes'] / MB:.1f} MB")
            if len(ann) else "-"})
    parts = ["## Long documents: passages vs whole documents", "",
             "The same model over whole documents (truncated at its max length) and over token-window passages; "
             "a search returns K passages, aggregated to at most K documents, so R@100 at K = 100 counts fewer "
             "documents. Exact search per K; the fastest ANN cell with recall@K >= 0.95 (against exact search over "
             "the same passages, after aggregation).", "", markdown_table(pd.DataFrame(table)), ""]
    at = exact[exact["k"] == (100 if (exact["k"] == 100).any() else exact["k"].max())]
    base = at[at["chunking"] == ""]
    if len(base):
        others = at[at["chunking"] != ""].copy()
        others["label"] = others["encoder"]
        tests = paired_tests(base.iloc[0], others, test=test)
        parts += [f"Paired {'t-test' if test == 't' else 'Wilcoxon test'} on per-query nDCG@10 against "
                  f"{base.iloc[0]['encoder']} (exact, K={base.iloc[0]['k']}), Holm-corrected:", "",
                  markdown_table(tests), ""]
    return parts


def _cost_table(frame: pd.DataFrame, scale: pd.DataFrame | None = None) -> tuple[str, str]:
    first = frame[frame["r"] == 0]
    rows, notes = [], []
    for encoder, group in first.groupby("encoder"):
        exact = group[(group["backend"] == "exact")]
        ann = group[(group["backend"] != "exact")]
        at100 = group[group["k"] == 100] if (group["k"] == 100).any() else group
        best_ann = ann.sort_values(["ndcg_at_10", "e2e_p95_ms"], ascending=[False, True]).head(1)
        fast = at100[at100["recall_at_k"] >= 0.95].sort_values("e2e_p95_ms").head(1)
        ref = fast.iloc[0] if len(fast) else at100.iloc[0]
        kind = group["encoder_type"].iloc[0]
        trained = "" if np.isnan(ref["encoder_train_s"]) else f" + {ref['encoder_train_s']:.0f} training"
        rows.append({
            "encoder type": f"{ENCODER_TYPE_NAMES.get(kind, kind)} ({encoder})",
            "online p50 / p95 ms": f"{ref['e2e_p50_ms']:.2f} / {ref['e2e_p95_ms']:.2f}",
            "offline cost s": f"{ref['corpus_encode_s']:.0f} encode + {ref['build_s']:.2f} build{trained}",
            "memory MB": f"{ref['index_bytes'] / MB:.1f} index (embeddings {ref['embeddings_mb']:.1f}) + "
                         f"{4 * ref['encoder_params'] / MB:.1f} model",
            "quality nDCG@10": f"{exact['ndcg_at_10'].max():.4f} exact, {best_ann['ndcg_at_10'].iloc[0]:.4f} best ANN"
            if len(exact) and len(best_ann) else f"{group['ndcg_at_10'].max():.4f}",
            "scale": "inverted index grows with the corpus tokens (not in the scale series)" if kind == "bm25"
            else _scale_note(scale),
        })
        notes.append(f"{encoder}: online/offline/memory from the cell `{ref['backend']} {ref['config']}` at K={ref['k']} "
                     f"(fastest with recall@K >= 0.95; cell_id {ref['cell_id'][:12]}); quality from the exact "
                     f"cell and the best ANN cell of this encoder")
    reranked = frame[frame["r"] > 0]
    for name, group in reranked.groupby("reranker"):
        at = group[group["r"] == group["r"].max()]
        best = group.sort_values("ndcg_at_10", ascending=False).iloc[0]
        ref = at.iloc[0]
        rows.append({
            "encoder type": f"cross-encoder ({name}, reranks top-R)",
            "online p50 / p95 ms": f"{ref['rerank_p50_ms']:.1f} / {ref['rerank_p95_ms']:.1f} for R={ref['r']} "
                                   f"(+ first stage: e2e {ref['e2e_p95_ms']:.1f} p95)",
            "offline cost s": f"{ref['reranker_train_s']:.0f} training" if not np.isnan(ref['reranker_train_s'])
            else "none (pretrained)",
            "memory MB": f"{4 * ref['reranker_params'] / MB:.1f} model, no stored embeddings",
            "quality nDCG@10": f"{best['ndcg_at_10']:.4f} best ({best['backend']} K={best['k']} R={best['r']} "
                               f"alpha={best['fusion_alpha']:.2f})",
            "scale": "cost per query grows with R, not with N",
        })
        notes.append(f"{name}: latency of scoring R={ref['r']} pairs on {ref['rerank_latency_queries']} queries "
                     f"({ref['rerank_threads']} threads); best row cell_id {best['cell_id'][:12]}")
    return markdown_table(pd.DataFrame(rows)), "\n".join(f"- {n}" for n in notes)


def build_report(frame: pd.DataFrame, sources: list[str], plots_dir: Path, link_prefix: str,
                 budgets: list[Budget] | None = None, test: str = "t", scale: pd.DataFrame | None = None,
                 filters: pd.DataFrame | None = None) -> str:
    frame = with_derived(frame)
    parts = ["# Retrieval stack benchmark report", "",
             "Generated by `make report` (`python -m bench report`) from the results named below; every number "
             "is a column of those rows (cell ids given where a single row is meant).", "",
             "## Environment", "", _environment(frame, sources), ""]

    table, notes = _cost_table(frame, scale)
    parts += ["## Cost comparison per encoder type", "",
              "The design note's table with measured numbers. Online latency is end to end per query "
              "(query encoding + ANN search, + reranking for the cross-encoder), one query at a time. "
              "Offline cost is corpus encoding + index build (+ training). Memory is the serialized index "
              "(which holds the embeddings) + float32 model weights.", "", table, "", notes, ""]

    first = frame[frame["r"] == 0]
    parts += _encoder_types(first, test)
    parts += _chunking_section(first, test)
    dense = first[first["encoder_type"] != "bm25"]  # BM25's recall@K is against BM25 itself: not comparable
    parts += ["## Pareto frontiers", "",
              "Parameter short names: " + ", ".join(f"{v} = {k}" for k, v in ABBREVIATIONS.items()) + ".", "",
              "### Recall@K vs p95 ANN search latency", ""]
    for k in sorted(dense["k"].unique()):
        at_k = dense[dense["k"] == k]
        per_backend = [(b, pareto(g, "recall_at_k", "search_p95_ms")) for b, g in at_k.groupby("backend")]
        png = plots_dir / f"pareto_recall_k{k}.png"
        _plot(png, per_backend, "search_p95_ms", "recall_at_k", "p95 search latency per query (ms, log scale)",
              f"recall@{k} vs exact search", f"Recall@{k} vs p95 latency, frontier per backend")
        overall = set(pareto(at_k, "recall_at_k", "search_p95_ms")["cell_id"])
        frontier = pd.concat([rows for _, rows in per_backend])
        frontier["overall"] = np.where(frontier["cell_id"].isin(overall), "yes", "")
        parts += [f"K = {k}: ![recall@{k} frontier]({link_prefix}{png.name})", "",
                  "Frontier rows per backend (`overall`: also on the frontier across backends):", "",
                  markdown_table(frontier[["encoder", "backend", "config", "recall_at_k", "ndcg_at_10", "search_p50_ms",
                                "search_p95_ms", "throughput_qps", "index_bytes", "overall"]]), ""]

    parts += ["### nDCG@10 vs end-to-end p95", ""]
    series = [(label, pareto(g, "ndcg_at_10", "e2e_p95_ms"))
              for label, g in frame.groupby(np.where(frame["r"] > 0, frame["stage2"], frame["backend"]))]
    png = plots_dir / "pareto_ndcg.png"
    _plot(png, series, "e2e_p95_ms", "ndcg_at_10", "end-to-end p95 latency per query (ms, log scale)", "nDCG@10",
          "nDCG@10 vs end-to-end p95 (frontier per first stage / reranker)")
    overall = pareto(frame, "ndcg_at_10", "e2e_p95_ms")
    parts += [f"![nDCG@10 frontier]({link_prefix}{png.name})", "",
              markdown_table(overall[["encoder", "backend", "config", "k", "stage2", "r", "ndcg_at_10", "e2e_p50_ms",
                           "e2e_p95_ms", "memory_mb"]]), ""]

    reranked = frame[frame["r"] > 0]
    if len(reranked):
        parts += ["## K x R", "", "For each first stage (its fastest cell with recall@K >= 0.95 at each K), "
                  "nDCG@10 and end-to-end p95 (ms) after reranking the top R; R = 0 is the first stage alone.", ""]
        for (encoder, stage2), group in reranked.groupby(["encoder", "stage2"]):
            lines = []
            for backend, rows in frame[frame["encoder"] == encoder].groupby("backend"):
                for k in sorted(rows["k"].unique()):
                    plain = rows[(rows["r"] == 0) & (rows["k"] == k) & (rows["recall_at_k"] >= 0.95)]
                    if plain.empty:
                        continue
                    chosen = plain.sort_values("search_p95_ms").iloc[0]
                    cells = rows[(rows["config"] == chosen["config"]) & (rows["k"] == k)
                                 & ((rows["r"] == 0) | (rows["stage2"] == stage2))].sort_values("r")
                    entry = {"backend": backend, "config": chosen["config"], "K": k}
                    for _, c in cells.iterrows():
                        entry[f"R={c['r']}"] = f"{c['ndcg_at_10']:.4f} / {c['e2e_p95_ms']:.1f}"
                    lines.append(entry)
            parts += [f"### {encoder} + {stage2}", "", markdown_table(pd.DataFrame(lines)), ""]

    own = first[(first["encoder"] == _baseline_encoder(first)) | (first["encoder_type"] == "bm25")]
    baseline_rows = own[(own["backend"] == "exact")].sort_values("k")
    if len(baseline_rows):
        baseline = baseline_rows[baseline_rows["k"] == 100].iloc[0] if (baseline_rows["k"] == 100).any() \
            else baseline_rows.iloc[-1]
        systems = []
        for backend, rows in own[own["backend"] != "exact"].groupby("backend"):
            good = rows[(rows["k"] == baseline["k"]) & (rows["recall_at_k"] >= 0.95)].sort_values("search_p95_ms")
            if len(good):
                systems.append(good.iloc[0])
        for stage2, rows in reranked.groupby("stage2"):
            systems.append(rows.sort_values(["ndcg_at_10", "e2e_p95_ms"], ascending=[False, True]).iloc[0])
        if systems:
            chosen = pd.DataFrame(systems)
            chosen["label"] = (chosen["backend"] + " " + chosen["config"] + " K=" + chosen["k"].astype(str)
                               + np.where(chosen["r"] > 0, " + " + chosen["stage2"] + " R=" + chosen["r"].astype(str), ""))
            tests = paired_tests(baseline, chosen, test=test)
            parts += ["## Significance against the baseline", "",
                      f"Baseline: exact search, {baseline['encoder']}, K={baseline['k']} (nDCG@10 "
                      f"{baseline['ndcg_at_10']:.4f}). Per-query paired {'t-test' if test == 't' else 'Wilcoxon test'} "
                      f"on nDCG@10, Holm-corrected over the {len(tests)} comparisons; counts of queries improved "
                      f"and worsened. Systems: each ANN backend's fastest cell with recall@K >= 0.95 ({baseline['encoder']}; BM25), "
                      "and each reranker's best row.", "", markdown_table(tests), ""]

    if scale is not None and len(scale):
        parts += [scale_section(scale)]
    if filters is not None and len(filters):
        parts += [filters_section(filters)]

    budgets = budgets or DEFAULT_BUDGETS
    rec_rows = []
    for budget in budgets:
        try:
            best = recommend(frame, budget, top=1).iloc[0]
            rec_rows.append({"p95 budget ms": budget.p95_ms, "memory budget MB": budget.memory_mb,
                             **{c: best[c] for c in RECOMMEND_COLUMNS}})
        except NothingFits:
            rec_rows.append({"p95 budget ms": budget.p95_ms, "memory budget MB": budget.memory_mb,
                             "encoder": "nothing fits"})
    parts += ["## Recommendations under budgets", "",
              "Best nDCG@10 within an end-to-end p95 latency and a memory budget "
              "(`python -m bench recommend --p95-ms X --memory-mb Y [--min-recall Z]` for any other).", "",
              markdown_table(pd.DataFrame(rec_rows)), ""]
    return "\n".join(parts)


# ---------------------------------------------------------------- scale series


def scale_section(frame: pd.DataFrame) -> str:
    """Markdown for the scale series: one row per backend, vector source and N, then the log-log slopes."""
    from bench.scale import growth, latest

    if frame.empty:
        return ""
    frame = latest(frame)
    rows = frame.assign(order=frame["source"].map({"real": 0, "gmm": 1})).sort_values(["backend", "n", "order"])
    table = pd.DataFrame({
        "backend": rows["backend"], "vectors": rows["source"], "N": rows["n"].map("{:,}".format),
        "build": rows["build_params"].map(_params),
        "search (cheapest at target)": rows["search_params"].map(_params)
        + np.where(rows["reached"], "", " (target NOT reached)"),
        f"recall@{int(rows['k'].iloc[0])}": rows["recall_at_k"], "build s": rows["build_s"],
        "index MB": rows["index_bytes"] / MB, "predicted MB": rows["predicted_index_bytes"] / MB,
        "index / predicted": rows["index_bytes"] / rows["predicted_index_bytes"],
        "RSS growth MB": rows["rss_build_delta_bytes"] / MB,
        "RSS / predicted": rows["rss_build_delta_bytes"] / rows["predicted_index_bytes"],
        "p50 ms": rows["search_p50_ms"], "p95 ms": rows["search_p95_ms"],
    })
    ratio = rows["index_bytes"] / rows["predicted_index_bytes"]
    slopes = growth(frame)
    first = frame.iloc[0]
    generator = json.loads(frame.loc[frame["source"] == "gmm", "generator"].iloc[0]) if (frame["source"] == "gmm").any() else {}
    return "\n".join([
        "## Scale: growth with N", "",
        f"Each backend at the cheapest search point of its grid reaching recall@{int(first['k'])} >= "
        f"{first['target_recall']} against exact search ({first['n_queries']} real queries, {first['dim']} dims), "
        "latency of one query on one thread. `vectors`: `real` = the encoder's embeddings of the corpus; `gmm` = "
        f"sampled from {generator.get('mixture', 'the generator')} fitted to the {generator.get('fitted_on', '?')} "
        f"real ones ({generator.get('model', '')}, {generator.get('dataset', '')}, seed {generator.get('seed', '')}). "
        "Predicted bytes come from each library's layout (`bench/scale.py: predicted_bytes`); RSS growth is the "
        "process RSS after the build minus before it (the vectors were already loaded; allocator and build-time "
        "buffers included).", "",
        markdown_table(table), "",
        f"Serialized index / predicted: {ratio.min():.4f} to {ratio.max():.4f} over {len(ratio)} rows "
        f"(largest deviation {100 * (ratio - 1).abs().max():.2f}%).", "",
        "Log-log slopes against N over the generator's configured sizes (1 = linear growth). RSS growth is only "
        "meaningful at large N: at small N the allocator reuses freed memory and the growth reads near 0.", "",
        markdown_table(slopes, ".3f") if len(slopes) else "(fewer than two sizes measured)", "",
    ])


# ---------------------------------------------------------------- filtered search


def filters_section(frame: pd.DataFrame) -> str:
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
    first = frame.iloc[0]
    return "\n".join([
        "## Metadata filters", "",
        f"{first['dataset']} ({first['n_docs']:,} documents, {first['n_queries']} queries): every document has a "
        "seeded synthetic tenant; a query keeps one tenant's documents (selectivity: target, and realized mean). "
        f"Recall@{k} against exact search over the passing documents; `queries short`: queries that got fewer "
        f"than min({k}, passing) results; latency of one query on one thread. `prefilter` scans the passing "
        "documents exactly; `native` filters inside the library's search; `postfilter` asks for K and drops "
        "failing ids; `postfilter-inflated` asks for K / selectivity (capped).", "",
        markdown_table(table), "",
    ])
