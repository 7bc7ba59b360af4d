"""The report: the protocol, cost table per encoder type, seen/unseen positives, Pareto frontiers, K x R,
significance and recommendations under budgets, rendered as markdown and plots.

Everything here is a pure function of the results rows, so `make report` on committed results regenerates
`report.md` byte for byte. Every choice is made on the dev queries and reported once on the test queries
(bench.analysis holds the statistics and the selection rules; this module only renders).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.figures import ci, timing_text
from bench.fusion import fusion_label
from bench.timing import E2E_METHOD
from bench.analysis import (ABBREVIATIONS, ALPHA, CONFIGURATION, DEFAULT_BUDGETS, LATENCY_TIE, MB, Budget, NothingFits,
                            candidates, contribution_table, fastest_at_recall, mean_of_means_interval, paired_tests, pareto, per_query, recommend,
                            reranker_in_use, seen_split, select, t_interval, with_derived)
from bench.analysis import params_text as _params
from bench.indexes import BACKENDS
from bench.stages import Dense, Fusion, Lexical, kind_of

# One colour per backend (and per reranking stage) in every plot.
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
BACKEND_COLORS = {"exact": "#000000", **{name: TAB10[i % len(TAB10)]
                                         for i, name in enumerate(n for n in BACKENDS if n != "exact")}}
STAGE_COLORS = {"encode": "#9467bd", "search": "#1f77b4", "rerank": "#d62728"}
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


# ---------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _readable_log_axis(axis) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    _pyplot().close(fig)


def _facets(n: int):
    plt = _pyplot()
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(max(7.0, 4.6 * cols), 3.6 * rows + 0.4), dpi=100, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _frontier_plot(path: Path, panels: list[tuple[str, list[tuple[str, pd.DataFrame]]]], x: str, y: str,
                   xlabel: str, ylabel: str, title: str) -> None:
    """One panel per encoder, one frontier line per backend (same colour everywhere; reranking stages dashed)."""
    fig, axes = _facets(len(panels))
    stages = sorted({label.split(" + ", 1)[1] for _, series in panels for label, _ in series if " + " in label})
    styles = {stage: style for stage, style in zip(stages, ["--", ":", "-.", (0, (1, 3))] * 4)}
    for ax, (panel, series) in zip(axes, panels):
        for label, rows in series:
            rows = rows.sort_values(x)
            stage = label.split(" + ", 1)[1] if " + " in label else ""
            ax.plot(rows[x], rows[y], marker="o", markersize=3, label=label, linestyle=styles.get(stage, "-"),
                    color=BACKEND_COLORS.get(label.split(" ")[0], None))
        ax.set_xscale("log")
        _readable_log_axis(ax.xaxis)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


# ---------------------------------------------------------------- sections


def _environment(frame: pd.DataFrame, sources: list[str]) -> str:
    versions = json.loads(frame["versions"].iloc[0])
    first, last = frame["timestamp"].min(), frame["timestamp"].max()
    lines = [
        f"- results: {', '.join(sources)} ({len(frame)} rows, host {', '.join(sorted(frame['host_id'].unique()))})",
        f"- dataset: {frame['dataset'].iloc[0]}: {frame['n_docs'].iloc[0]} documents; {frame['n_queries'].iloc[0]} "
        f"{frame['split'].iloc[0]} queries, {frame['n_dev_queries'].iloc[0]} dev queries "
        f"(dataset hash {frame['dataset_hash'].iloc[0]})",
        f"- hardware: {frame['cpu_model'].iloc[0]}, {frame['n_cpus'].iloc[0]} cores, {frame['memory_gb'].iloc[0]} GB RAM; "
        f"{frame['platform'].iloc[0]}",
        f"- threads: search 1 per query; query encoding and reranking {_values(frame.loc[frame['stage'] == 'rerank', 'rerank_threads'])} "
        f"(`[measure] threads`); throughput {frame['throughput_threads'].iloc[0]}, index build {frame['build_threads'].iloc[0]}",
        f"- latency samples: search {_values(frame['latency_samples'])} per cell (one query at a time, after warmup); "
        f"query encoding {_encode_passes(frame)} per encoder and run, each query followed by the calibration kernel; "
        f"reranking {_values(frame.loc[frame['stage'] == 'rerank', 'rerank_latency_queries'])} queries per (reranker, R); end to end "
        "= the per-query sum of the stages' medians. Latencies, rates and costs carry 2 significant figures: a figure "
        f"timed minutes apart moves with a relative SD of ~5% on this kind of host (p95s within {LATENCY_TIE:.0%} tie).",
        _calibration_line(frame),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        f"- measured: {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC; git "
        + ", ".join(sorted({sha[:10] + ("+dirty" if dirty else "") for sha, dirty in
                            zip(frame["git_sha"], frame["git_dirty"])})),
    ]
    return "\n".join(lines)


def _encode_passes(frame: pd.DataFrame) -> str:
    settings = [json.loads(s) for s in frame["latency_settings"].unique() if s]
    if not settings:
        return "1 pass (rows timed before `[measure] encode_repeats`)"
    return " / ".join(sorted({f"{s['encode_repeats']} passes over {s['encode_sample']} queries" for s in settings}))


def _calibration_line(frame: pd.DataFrame) -> str:
    """How fast the host was when each latency was timed: the calibration kernel's figures (bench.calibration)."""
    figures = frame["calibration_ms"].dropna()
    missing = len(frame) - len(figures)
    if figures.empty:
        return ("- host speed: no calibration figure (rows timed before calibration existed): latencies from "
                "different runs may differ by the host's state, up to 2x here")
    low, high = figures.min(), figures.max()
    line = (f"- host speed: calibration kernel {low:.3f}-{high:.3f} ms per call over {frame['timestamp'].nunique()} "
            f"run(s) (spread {high / low - 1:.0%}); stored rows further than `[measure] calibration_tolerance` from a "
            "run's figure are re-timed, so no table mixes runs on differently fast hosts; within a run the host still "
            f"moves (a figure's relative SD ~5%, single swings up to ~20% within minutes here: `make encode-latency`), "
            f"so p95s within {LATENCY_TIE:.0%} count as equal")
    if missing:
        line += f"; {missing} rows carry no figure (timed before calibration existed)"
    return line


def _values(column: pd.Series) -> str:
    values = sorted(set(int(v) for v in column))
    return " / ".join(map(str, values)) if values else "-"


def _protocol_lines(frame: pd.DataFrame) -> list[str]:
    """The first lines of the report: which queries chose, which report, and what training saw."""
    _, protocol = seen_split(frame)
    source = frame["dev_source"].iloc[0]
    n_dev, n_test = int(frame["n_dev_queries"].iloc[0]), int(frame["n_queries"].iloc[0])
    lines = []
    if n_dev == 0:
        lines.append(f"**This dataset has no dev queries: every choice below and every reported number use the same "
                     f"{n_test} {frame['split'].iloc[0]} queries, so the chosen rows' numbers are optimistic.**")
    else:
        lines.append(f"Settings, depths and every \"best\" row are chosen on {n_dev} dev queries ({source}), never "
                     f"trained on; numbers are reported once, on the {n_test} {frame['split'].iloc[0]} queries, for what "
                     f"was chosen. A choice takes the dev-best row, then the cheapest row whose dev nDCG@10 is not "
                     f"significantly below it (one-sided paired t-test over the dev queries, p >= {ALPHA}): a tie goes to "
                     f"the cheaper option (lower end-to-end p95, where p95s within {LATENCY_TIE:.0%} tie; then less "
                     f"memory; then higher dev recall@K).")
    guard = protocol.get("guard")
    if guard:
        lines += ["", f"Leakage guard: {guard['reason']}; {guard['kept']} train queries trained on. Before it, "
                  f"{guard['test_seen_share']:.1%} of test and {guard['dev_seen_share']:.1%} of dev queries have a "
                  f"relevant document that is a train positive, and {guard['train_pairs_on_eval_docs']:.1%} of the "
                  f"train (query, positive) pairs are on a dev/test relevant document."]
        if frame["saw_eval_docs"].any():
            lines += ["", "**Models trained on this dataset saw documents that its dev/test queries judge relevant; their "
                      "rows are marked \"documents seen in training\" wherever they appear.**"]
    lines += ["", INTERVAL_NOTE]
    return lines


ENCODER_TYPE_NAMES = {"bm25": "BM25, no encoder", "bi": "bi-encoder", "twin": "twin-tower",
                      "hybrid": "hybrid, BM25 + dense"}


def _is_reference_encoding(rows: pd.DataFrame) -> pd.Series:
    """fp32 torch on both sides, or no encoding at all (BM25's empty values): the precision and runtime variants
    have their own section."""
    return (rows["query_precision"].isin(["fp32", ""]) & rows["doc_precision"].isin(["fp32", ""])
            & rows["query_runtime"].isin(["torch", ""]))


def _reference_dense(first: pd.DataFrame) -> pd.DataFrame:
    """Dense encoders' rows over whole documents at the reference encoding (fp32 torch)."""
    return first[(first["first_stage_kind"] == Dense.kind) & ~first["passages"] & _is_reference_encoding(first)]


def _baseline_encoder(first: pd.DataFrame) -> str:
    """The pretrained fp32 bi-encoder (the first one by name), else the first dense encoder by name."""
    dense = _reference_dense(first)
    pretrained = dense[(dense["encoder_type"] == "bi") & (dense["encoder_mode"] == "pretrained")]
    pool = pretrained if len(pretrained) else dense
    return sorted(pool["encoder"].unique())[0] if len(pool) else ""


def _reference_k(rows: pd.DataFrame) -> int:
    return 100 if (rows["k"] == 100).any() else int(rows["k"].max())


def _test_name(test: str) -> str:
    return "paired t-test" if test == "t" else "Wilcoxon signed-rank test"


def _tests_table(tests: pd.DataFrame, measure: str = "ndcg_at_10") -> pd.DataFrame:
    return pd.DataFrame({
        "system": tests["system"], "nDCG@10": [ci(m, h) for m, h in zip(tests[measure], tests["ci"])],
        "delta": [ci(m, h) for m, h in zip(tests["delta"], tests["delta_ci"])],
        "p": tests["p"].map(_p), "p Holm": tests["p_holm"].map(_p),
        "better / worse": tests["improved"].astype(str) + " / " + tests["worsened"].astype(str)})


def _encoder_types(first: pd.DataFrame, test: str) -> list[str]:
    """Dense encoders side by side at exact search, each tested against the pretrained bi-encoder; then each
    encoder's fastest cell per ANN backend reaching recall@K >= 0.95 on dev."""
    dense = _reference_dense(first)
    if dense["encoder"].nunique() < 2:
        return []
    exact = dense[dense["backend"] == "exact"]
    k = _reference_k(exact)
    exact = exact[exact["k"] == k].drop_duplicates("encoder").set_index("encoder", drop=False).rename_axis(None)
    name = _baseline_encoder(first)
    baseline, others = exact.loc[name], exact.drop(index=name).copy()
    others["label"] = others["encoder"]
    tests = paired_tests(baseline, others, test=test).set_index("system")
    rows = []
    for encoder, row in exact.sort_values(["encoder_type", "encoder_mode", "encoder"]).iterrows():
        entry = {"encoder": encoder + (" [seen]" if row["saw_eval_docs"] else ""),
                 "type": ENCODER_TYPE_NAMES.get(row["encoder_type"], row["encoder_type"]),
                 "training": row["encoder_mode"], "parameters": f"{row['encoder_params']:,}",
                 "train s": row["encoder_train_s"], "corpus encode s": row["corpus_encode_s"],
                 "query encode p50 ms": row["query_encode_p50_ms"], **quality(row, "dev", ("ndcg_at_10",)),
                 **quality(row)}
        if encoder in tests.index:
            t = tests.loc[encoder]
            entry.update({"delta nDCG@10": ci(t["delta"], t["delta_ci"]), "p Holm": _p(t["p_holm"]),
                          "better / worse": f"{int(t['improved'])} / {int(t['worsened'])}"})
        rows.append(entry)
    ann = []
    for (encoder, backend), group in dense[(dense["k"] == k) & (dense["backend"] != "exact")].groupby(["encoder", "backend"]):
        good = fastest_at_recall(group)
        entry = {"encoder": encoder, "backend": backend, "cells": len(group),
                 "best dev recall@K": f"{group['dev_recall_at_k'].max():.3f}"}
        if good is not None:
            entry.update({"fastest with dev recall@K >= 0.95": good["config"], "test recall@K": f"{good['recall_at_k']:.3f}",
                          **quality(good, measures=("ndcg_at_10",)), "search p95 ms": timing_text(good['search_p95_ms']),
                          "index MB": f"{good['index_bytes'] / MB:.1f}"})
        ann.append(entry)
    return ["## Encoder types, trained like for like", "",
            f"Exact search, K={k}. `training`: pretrained, `heads` (linear projection heads over the frozen backbone) "
            f"or `full` fine-tuning (`bench train-towers`; same backbone, data, loss, steps and seed within a mode, "
            f"only weight sharing differs), on the protocol's training queries. {_test_name(test).capitalize()} on "
            f"per-query test nDCG@10 against {name}, Holm-corrected (statsmodels) over the {len(tests)} comparisons; "
            f"`delta` with its 95% t-interval. `[seen]`: trained on documents the evaluation queries judge.", "",
            markdown_table(pd.DataFrame(rows)), "",
            f"The same encoders through the ANN grid (K={k}): per encoder and backend, the highest dev recall@K reached "
            "and the fastest cell reaching dev recall@K >= 0.95, with its test numbers.", "",
            markdown_table(pd.DataFrame(ann)), ""]


def _seen_section(frame: pd.DataFrame, test: str) -> list[str]:
    """Every trained model's quality on test queries with / without a relevant document that is a train positive."""
    seen_ids, protocol = seen_split(frame)
    first = frame[frame["stage"] == "first"]
    baseline_name = _baseline_encoder(first)
    if not protocol.get("guard") or not baseline_name:
        return []
    exact = first[(first["backend"] == "exact") & ~first["passages"]]
    k = _reference_k(exact) if len(exact) else 0
    base = exact[(exact["encoder"] == baseline_name) & (exact["k"] == k)]
    if base.empty:
        return []
    base = base.iloc[0]
    systems = [(row["encoder"], row, base) for _, row in
               exact[(exact["k"] == k) & (exact["encoder_mode"] != "pretrained")].drop_duplicates("encoder").iterrows()]
    reranked = frame[(frame["stage"] == "rerank") & (frame["encoder"] == baseline_name) & (frame["backend"] == "exact")
                     & (frame["k"] == k) & (frame["reranker_train_s"].notna())]
    for stage2, rows in reranker_in_use(reranked).groupby("stage2"):
        pick = select(rows)
        systems.append((f"{baseline_name} exact K={k} + {stage2} R={pick['r']} (R chosen on dev)", pick, base))
    if not systems:
        return []
    test_ids = list(per_query(base).index)
    groups = [("seen", [q for q in test_ids if q in seen_ids]), ("unseen", [q for q in test_ids if q not in seen_ids])]
    table = []
    for label, row, reference in systems:
        entry = {"model": label + (" [seen]" if row["saw_eval_docs"] else "")}
        for group, members in groups:
            if not members:
                continue
            mine, theirs = per_query(row)[members], per_query(reference)[members]
            entry[f"{group} ({len(members)}): nDCG@10"] = ci(*t_interval(mine))
            entry[f"{group}: delta vs {baseline_name}"] = ci(*t_interval(mine - theirs))
        table.append(entry)
    return ["## What trained models gain on seen and unseen documents", "",
            f"Test queries split by whether a relevant document is a positive of this dataset's train queries (before "
            f"the guard; {len(groups[0][1])} seen, {len(groups[1][1])} unseen; a model trained on another dataset saw "
            f"none of them). A gain that sits on the seen group is a learned "
            f"document prior, not retrieval skill. Each trained encoder at exact search (K={k}); each trained "
            f"reranker on {baseline_name}'s exact top-K at its dev-chosen R; deltas against {baseline_name} exact "
            "search on the same queries, with 95% t-intervals.", "", markdown_table(pd.DataFrame(table)), ""]


def _scale_note(scale: pd.DataFrame | None, row: pd.Series, kind: str) -> str:
    """The cost table's scale column: the measured slopes, for the encoder the scale series ran on only (as the
    row's stage kind puts it: BM25 is not in the series, a fusion quotes its dense side)."""
    return kind_of(kind).scale_note(_dense_scale_note(scale, row))


def _dense_scale_note(scale: pd.DataFrame | None, row: pd.Series) -> str:
    from bench.scale import growth

    slopes = growth(scale) if scale is not None and len(scale) else pd.DataFrame()
    if slopes.empty:
        return "extrapolation: index bytes and build grow ~linearly in N (no scale series given)"
    generator = json.loads(scale["generator"].iloc[0])
    model, dataset = generator.get("model", ""), generator.get("dataset", "").split("/")[0]
    if row["model"] != model or row["dataset"] != dataset or row["encoder_mode"] != "pretrained" or row["passages"]:
        return f"not in the scale series (it ran on pretrained {model} vectors of {dataset} documents)"
    own = slopes[slopes["variant"].str.split(" ").str[0] == row["backend"]]  # the cell's own backend's builds
    if own.empty:
        return f"{row['backend']} not in the scale series (see the Scale section for the backends it ran)"
    bytes_slopes = ", ".join(f"{_variant(r['variant'])} {r['slope index_bytes']:.2f}" for _, r in own.iterrows())
    p95_slopes = ", ".join(f"{_variant(r['variant'])} {r['slope search_p95_ms']:.2f}" for _, r in own.iterrows())
    return f"measured (N {own['sizes'].iloc[0]}): index bytes ~ N^({bytes_slopes}); p95 at fixed recall ~ N^({p95_slopes})"


def _chunking_section(first: pd.DataFrame, test: str) -> list[str]:
    """Whole documents vs passages of the same model: exact search at each K, paired tests at the reference K."""
    chunked = first[first["passages"]]
    if chunked.empty:
        return []
    models = set(chunked["model_identity"])
    whole = first[~first["passages"] & first["model_identity"].isin(models) & (first["encoder_mode"] == "pretrained")]
    rows = pd.concat([whole, chunked])
    exact = rows[rows["backend"] == "exact"]
    table = []
    for (encoder, k), row in exact.groupby(["encoder", "k"]):
        row = row.iloc[0]
        spec = json.loads(row["chunking"]) if row["chunking"] else {}
        ann = fastest_at_recall(rows[(rows["encoder"] == encoder) & (rows["k"] == k) & (rows["backend"] != "exact")])
        table.append({
            "encoder": encoder, "passages": f"{spec['tokens']} tokens, stride {spec['stride']}, {spec['aggregate']}"
            if spec else "whole documents", "vectors": row["n_chunks"] or row["n_docs"], "K": k,
            "corpus encode s": f"{row['corpus_encode_s']:.0f}", "index MB": f"{row['index_bytes'] / MB:.1f}",
            **quality(row), "exact p95 ms": timing_text(row['search_p95_ms']),
            "fastest ANN at dev recall >= 0.95": (f"{ann['backend']} {ann['config']}: {timing_text(ann['search_p95_ms'])} ms p95, "
                                                  f"{ann['index_bytes'] / MB:.1f} MB") if ann is not None else "-"})
    parts = ["## Long documents: passages vs whole documents", "",
             "The same model over whole documents (truncated at its max length) and over token-window passages; "
             "a search returns K passages, aggregated to at most K documents, so R@100 at K = 100 counts fewer "
             "documents. Exact search per K; the fastest ANN cell with dev recall@K >= 0.95 (against exact search "
             "over the same passages, after aggregation).", "", markdown_table(pd.DataFrame(table)), ""]
    at = exact[exact["k"] == _reference_k(exact)]
    base = at[~at["passages"]]
    if len(base):
        others = at[at["passages"]].copy()
        others["label"] = others["encoder"]
        tests = paired_tests(base.iloc[0], others, test=test)
        parts += [f"{_test_name(test).capitalize()} on per-query test nDCG@10 against {base.iloc[0]['encoder']} "
                  f"(exact, K={base.iloc[0]['k']}), Holm-corrected (statsmodels):", "",
                  markdown_table(_tests_table(tests)), ""]
    return parts


def _precision_section(first: pd.DataFrame, test: str) -> list[str]:
    """The same pretrained model at each query / document precision: query-encoding latency, corpus encoding
    time and exact-search quality, each variant tested against the fp32 model on the same queries."""
    pretrained = first[(first["first_stage_kind"] == Dense.kind) & ~first["passages"]
                       & (first["encoder_mode"] == "pretrained") & (first["backend"] == "exact")]
    variants = pretrained[~_is_reference_encoding(pretrained)]
    if variants.empty:
        return []
    k = _reference_k(pretrained)
    rows, notes = [], []
    for model, group in pretrained[pretrained["k"] == k].groupby("model"):
        group = group.drop_duplicates("encoder")
        base = group[_is_reference_encoding(group)]
        others = group.drop(base.index).copy()
        if others.empty or base.empty:
            continue
        base = base.sort_values("encoder").iloc[0]
        others["label"] = others["encoder"]
        tests = paired_tests(base, others, test=test).set_index("system")
        for _, row in pd.concat([base.to_frame().T, others.sort_values(["query_runtime", "query_precision", "doc_precision"])]).iterrows():
            entry = {"encoder": row["encoder"], "query": row["query_precision"], "documents": row["doc_precision"],
                     "query runtime": row["query_runtime"],
                     "device": row["encoder_device"], "query encode p50 ms": timing_text(row['query_encode_p50_ms']),
                     "p95 ms": timing_text(row['query_encode_p95_ms']),
                     "p50 / kernel": f"{row['query_encode_p50_ms'] / row['query_encode_calibration_ms']:.3g}",
                     "corpus encode s": f"{row['corpus_encode_s']:.0f}", **quality(row, "dev", ("ndcg_at_10",)),
                     **quality(row, "test", ("ndcg_at_10",))}
            if row["encoder"] in tests.index:
                t = tests.loc[row["encoder"]]
                entry.update({"delta vs fp32": ci(t["delta"], t["delta_ci"]), "p Holm": _p(t["p_holm"]),
                              "better / worse": f"{int(t['improved'])} / {int(t['worsened'])}"})
            rows.append(entry)
        notes.append(f"{model}: baseline {base['encoder']}")
    if not rows:
        return []
    return ["## Encoding levers: precision per side, runtime", "",
            f"The same pretrained model with its Linear layers at int8 (torch dynamic quantization) on the query side, "
            f"the document side or both, or its query side exported to ONNX (torch's dynamo exporter) and run by ONNX "
            f"Runtime at fp32 (documents by torch: the same vectors to ~1e-7, so the corpus is not re-encoded); exact search, K={k}, so quality differences come from the vectors alone. A "
            "document precision other than fp32 re-encodes the corpus (`corpus encode s`, batched, all cores); queries "
            f"are encoded one at a time on `[measure] threads` threads, {_encode_passes(first)}, and `p50 / kernel` is "
            "the p50 over the calibration kernel timed between those queries (comparable across runs). `delta vs fp32`: "
            f"{_test_name(test)} on per-query test nDCG@10, 95% interval, Holm-corrected. " + "; ".join(notes) + ".", "",
            markdown_table(pd.DataFrame(rows)), "", INTERVAL_NOTE, ""]


def _hybrid_section(first: pd.DataFrame, test: str) -> list[str]:
    """Each hybrid at exact dense search, per depth, beside its two sides alone, with paired tests against each."""
    hybrid = first[(first["first_stage_kind"] == Fusion.kind) & (first["backend"] == "exact")]
    bm25 = first[(first["first_stage_kind"] == Lexical.kind)]
    dense_name = _baseline_encoder(first)
    dense = first[(first["encoder"] == dense_name) & (first["backend"] == "exact")]
    if hybrid.empty or bm25.empty or dense.empty:
        return []
    k = _reference_k(hybrid)
    hybrid, bm25, dense = (rows[rows["k"] == k] for rows in (hybrid, bm25, dense))
    if hybrid.empty or bm25.empty or dense.empty:
        return []
    bm25_row, dense_row = bm25.iloc[0], dense.iloc[0]
    systems = hybrid.sort_values(["encoder", "search_params"]).copy()
    systems["label"] = systems["encoder"] + " " + systems["config"]
    against = {side: paired_tests(row, systems, test=test).set_index("system")
               for side, row in (("BM25", bm25_row), (dense_name, dense_row))}
    rows = []
    for _, row in pd.concat([bm25.iloc[:1], dense.iloc[:1], systems]).iterrows():
        params = json.loads(row["search_params"])
        entry = {"first stage": row["encoder"], "fusion": fusion_label(params, row.get("fusion_weight_chosen_on", "")),
                 "depth K'": params.get("depth", "-"), **quality(row, "dev", ("ndcg_at_10",)),
                 **quality(row, "test", ("ndcg_at_10", "recall_at_100")),
                 "e2e p95 ms": timing_text(row['e2e_p95_ms']), "memory MB": f"{row['memory_mb']:.1f}"}
        for side, tests in against.items():
            label = row.get("label")
            t = tests.loc[label] if isinstance(label, str) and label in tests.index else None
            entry[f"vs {side}"] = "-" if t is None else f"{ci(t['delta'], t['delta_ci'])} (p Holm {_p(t['p_holm'])})"
        rows.append(entry)
    return ["## Hybrid first stage: BM25 + dense", "",
            f"BM25 and {dense_name} each retrieve their own top-K' (exact dense search here), fused into the top-{k}: "
            "reciprocal rank fusion, or a convex combination of min-max normalized scores whose weight w (on the dense "
            "side) was chosen on the dev queries per K'. Latency is encoding + both searches on one thread + fusion; "
            f"memory is both indexes + the model. Deltas against each side alone: {_test_name(test)} over the test "
            "queries, Holm-corrected per column; the ANN variants are in the frontiers and the K x R tables.", "",
            markdown_table(pd.DataFrame(rows)), "", INTERVAL_NOTE, ""]


def _cost_table(frame: pd.DataFrame, scale: pd.DataFrame | None = None) -> tuple[str, str]:
    first = frame[frame["stage"] == "first"]
    rows, notes = [], []
    for encoder, group in first.groupby("encoder"):
        exact = group[(group["backend"] == "exact")]
        ann = group[(group["backend"] != "exact")]
        k = _reference_k(group)
        at_k = group[group["k"] == k]
        ref = fastest_at_recall(at_k)
        ref = ref if ref is not None else at_k.sort_values("e2e_p95_ms").iloc[0]
        kind = group["encoder_type"].iloc[0]
        trained = "" if np.isnan(ref["encoder_train_s"]) else f" + {timing_text(ref['encoder_train_s'])} training"
        exact_row = select(exact[exact["k"] == k]) if (exact["k"] == k).any() else None  # hybrids: one per depth
        best_ann = select(ann[ann["k"] == k]) if (ann["k"] == k).any() else None
        parts = []
        if exact_row is not None:
            parts.append(f"{ci(*t_interval(exact_row['q_ndcg_at_10']))} exact")
        if best_ann is not None:
            parts.append(f"{ci(*t_interval(best_ann['q_ndcg_at_10']))} dev-chosen ANN ({best_ann['backend']} "
                         f"{best_ann['config']})")
        quality_text = "; ".join(parts) or ci(*t_interval(ref["q_ndcg_at_10"]))
        rows.append({
            "encoder type": f"{ENCODER_TYPE_NAMES.get(kind, kind)} ({encoder})" + (" [seen]" if ref["saw_eval_docs"] else ""),
            "online p50 / p95 ms": f"{timing_text(ref['e2e_p50_ms'])} / {timing_text(ref['e2e_p95_ms'])}",
            "offline cost s": f"{timing_text(ref['corpus_encode_s'])} encode + {timing_text(ref['build_s'])} build{trained}",
            "memory MB": f"{ref['index_bytes'] / MB:.1f} index (embeddings {ref['embeddings_mb']:.1f}) + "
                         f"{ref['model_mb']:.1f} model",
            f"test nDCG@10 (K={k})": quality_text,
            "scale": _scale_note(scale, ref, kind),
        })
        notes.append(f"{encoder}: online/offline/memory from the cell `{ref['backend']} {ref['config']}` at K={ref['k']} "
                     f"(fastest with dev recall@K >= 0.95; cell_id {ref['cell_id'][:12]})")
    reranked = frame[frame["stage"] == "rerank"]
    for name, group in reranked.groupby("reranker"):
        adding = candidates(reranker_in_use(group))
        if adding.empty:
            notes.append(f"{name}: not in the table: no row of it adds to its own first stage on dev (fused at alpha 0, "
                         "or no significant dev gain; see 'What each stage adds')")
            continue
        best = select(adding)  # latency, memory and quality all of this one pipeline
        rows.append({
            "encoder type": f"cross-encoder ({name}, reranks top-R)" + (" [seen]" if best["reranker_saw_eval_docs"] else ""),
            "online p50 / p95 ms": f"{timing_text(best['rerank_p50_ms'])} / {timing_text(best['rerank_p95_ms'])} for "
                                   f"R={best['r']} (+ first stage: e2e {timing_text(best['e2e_p95_ms'])} p95)",
            "offline cost s": f"{best['reranker_train_s']:.0f} training" if not np.isnan(best['reranker_train_s'])
            else "none (pretrained)",
            "memory MB": f"{4 * best['reranker_params'] / MB:.1f} model, no stored embeddings",
            f"test nDCG@10 (K={k})": f"{ci(*t_interval(best['q_ndcg_at_10']))} dev-chosen ({best['encoder']} "
                                     f"{best['backend']} K={best['k']} R={best['r']} alpha={best['fusion_alpha']:.2f}); "
                                     f"its own gain over that first stage: dev {ci(best['stage_delta_dev'], best['stage_delta_dev_ci'])}, "
                                     f"test {ci(best['stage_delta_test'], best['stage_delta_test_ci'])}",
            "scale": "cost per query grows with R, not with N",
        })
        notes.append(f"{name}: latency of scoring R={best['r']} pairs on {best['rerank_latency_queries']} queries "
                     f"({best['rerank_threads']} threads); dev-chosen among the rows whose reranking adds to their own "
                     f"first stage on dev, cell_id {best['cell_id'][:12]}")
    return markdown_table(pd.DataFrame(rows)), "\n".join(f"- {n}" for n in notes)


def _memory_section(first: pd.DataFrame, plots_dir: Path, link_prefix: str) -> list[str]:
    """Bytes per vector against dev recall@K and dev nDCG@10, per backend, for the baseline dense encoder."""
    from bench.memory import memory_frontier, smallest_at_recall, with_bytes_per_vector

    encoder = _baseline_encoder(first)
    rows = with_bytes_per_vector(first[first["encoder"] == encoder])
    if rows["backend"].nunique() < 2:
        return []
    dim = int(rows["dim"].iloc[0])
    parts = ["### Memory frontier: bytes per vector", "",
             f"{encoder} over every vector backend: serialized index bytes per document vector (fixed parts such as "
             f"centroids and codebooks included; float32 vectors alone are {4 * dim:,} bytes) against dev recall@K "
             "and dev nDCG@10, frontier per backend (the plots). The table: per backend, among the builds whose "
             "fastest cell reaches dev recall@K >= 0.95, the one with the fewest bytes per vector; its test nDCG@10 "
             "and the paired difference to exact search on the same test queries (95% t-interval).", ""]
    exact = rows[rows["backend"] == "exact"]
    for k in [k for k in (10, 100) if (rows["k"] == k).any()] or sorted(rows["k"].unique())[:2]:
        png = plots_dir / f"memory_k{k}.png"
        panels = [(name, [(b, g.assign(quality=g[column])) for b, g in memory_frontier(rows, k, column).groupby("backend")])
                  for name, column in ((f"dev recall@{k}", "dev_recall_at_k"), ("dev nDCG@10", "dev_ndcg_at_10"))]
        _frontier_plot(png, panels, "bytes_per_vector", "quality", "index bytes per vector (log)", "dev quality",
                       f"{encoder}, K = {k}: quality against bytes per vector, frontier per backend")
        table = []
        exact_row = exact[exact["k"] == k]
        for _, row in smallest_at_recall(rows, k).iterrows():
            delta = ""
            if len(exact_row):
                delta = ci(*t_interval(np.asarray(row["q_ndcg_at_10"]) - np.asarray(exact_row.iloc[0]["q_ndcg_at_10"])))
            table.append({"backend": row["backend"], "config": row["config"],
                          "bytes/vector": f"{row['bytes_per_vector']:,.0f}",
                          "x float32": f"{row['bytes_per_vector'] / (4 * dim):.2f}",
                          f"dev recall@{k}": f"{row['dev_recall_at_k']:.3f}",
                          f"test recall@{k}": f"{row['recall_at_k']:.3f}",
                          "test nDCG@10": ci(*t_interval(row["q_ndcg_at_10"])), "vs exact": delta,
                          "search p95 ms": timing_text(row['search_p95_ms'])})
        below = rows[(rows["k"] == k) & (rows["bytes_per_vector"] <= dim)]  # at most a quarter of the float32 bytes
        best_small = below.sort_values("dev_recall_at_k").iloc[-1] if len(below) else None
        parts += [f"K = {k}: ![memory frontier K={k}]({link_prefix}{png.name})", "",
                  markdown_table(pd.DataFrame(table)), ""]
        if best_small is not None:
            parts += [f"At most a quarter of the float32 bytes ({dim} bytes per vector): the highest dev recall@{k} is "
                      f"{best_small['dev_recall_at_k']:.3f} (test {best_small['recall_at_k']:.3f}), "
                      f"{best_small['backend']} {best_small['config']} at {best_small['bytes_per_vector']:,.0f} bytes "
                      "per vector.", ""]
    return parts


def _recall_frontiers(dense: pd.DataFrame, plots_dir: Path, link_prefix: str) -> list[str]:
    parts = ["### Recall@K vs p95 ANN search latency", "",
             "Per encoder, the frontier of each backend over dev recall@K (the plots; one panel per encoder, one "
             "colour per backend); the table gives the test recall@K of the same cells.", ""]
    for k in sorted(dense["k"].unique()):
        at_k = dense[dense["k"] == k]
        panels, tables = [], []
        for encoder, rows in at_k.groupby("encoder"):
            per_backend = [(b, pareto(g, "dev_recall_at_k", "search_p95_ms")) for b, g in rows.groupby("backend")]
            panels.append((encoder, per_backend))
            tables += [g for _, g in per_backend]
        png = plots_dir / f"pareto_recall_k{k}.png"
        _frontier_plot(png, panels, "search_p95_ms", "dev_recall_at_k", "p95 search ms (log)", f"dev recall@{k}",
                       f"Recall@{k} vs p95 search latency: frontier per backend, one panel per encoder")
        frontier = pd.concat(tables)
        parts += [f"K = {k}: ![recall@{k} frontier]({link_prefix}{png.name})", "",
                  markdown_table(pd.DataFrame({
                      "encoder": frontier["encoder"], "backend": frontier["backend"], "config": frontier["config"],
                      "dev recall@K": frontier["dev_recall_at_k"].map("{:.3f}".format),
                      "test recall@K": frontier["recall_at_k"].map("{:.3f}".format),
                      "search p50 ms": frontier["search_p50_ms"].map(timing_text),
                      "search p95 ms": frontier["search_p95_ms"].map(timing_text),
                      "QPS": frontier["throughput_qps"].map(timing_text),
                      "index MB": (frontier["index_bytes"] / MB).map("{:.1f}".format)})), ""]
    return parts


def _ndcg_frontier(frame: pd.DataFrame, plots_dir: Path, link_prefix: str) -> list[str]:
    panels, rows = [], []
    for encoder, group in frame.groupby("encoder"):
        series = [(label, pareto(g, "dev_ndcg_at_10", "e2e_p95_ms"))
                  for label, g in group.groupby(np.where(group["stage"] == "rerank", group["backend"] + " + " + group["stage2"],
                                                         group["backend"]))]
        panels.append((encoder, series))
        rows.append(pareto(group, "dev_ndcg_at_10", "e2e_p95_ms"))
    png = plots_dir / "pareto_ndcg.png"
    _frontier_plot(png, panels, "e2e_p95_ms", "dev_ndcg_at_10", "end-to-end p95 ms (log)", "dev nDCG@10",
                   "Dev nDCG@10 vs end-to-end p95: frontier per backend / reranker, one panel per encoder")
    frontier = pd.concat(rows)
    return ["### nDCG@10 vs end-to-end p95", "",
            "Frontiers over dev nDCG@10 per encoder; the table adds the test nDCG@10 of the same rows.", "",
            f"![nDCG@10 frontier]({link_prefix}{png.name})", "",
            markdown_table(pd.DataFrame({
                "pipeline": frontier.apply(_mark, axis=1), "dev nDCG@10": frontier["dev_ndcg_at_10"].map("{:.3f}".format),
                "test nDCG@10": [ci(*t_interval(v)) for v in frontier["q_ndcg_at_10"]],
                "e2e p95 ms": frontier["e2e_p95_ms"].map(timing_text),
                "memory MB": frontier["memory_mb"].map("{:.1f}".format)})), ""]


def _k_by_r(frame: pd.DataFrame, plots_dir: Path, link_prefix: str) -> list[str]:
    reranked = frame[frame["stage"] == "rerank"]
    if reranked.empty:
        return []
    parts = ["## K x R", "",
             "For each first stage (its fastest cell reaching dev recall@K >= 0.95 at each K): test nDCG@10 with its "
             "interval / end-to-end p95 (ms) after reranking the top R; R = 0 is the first stage alone. `*` marks the "
             "dev-chosen (K, R) of each table; `a=dev` tables fuse at the alpha chosen on each cell's dev queries at "
             "its R, given in brackets.", ""]
    for (encoder, stage2), group in reranked.groupby(["encoder", "stage2"]):
        lines, curves, cells_all = [], [], []
        for backend, rows in frame[frame["encoder"] == encoder].groupby("backend"):
            for k in sorted(rows["k"].unique()):
                chosen = fastest_at_recall(rows[(rows["stage"] == "first") & (rows["k"] == k)])
                if chosen is None:
                    continue
                cells = rows[(rows["config"] == chosen["config"]) & (rows["k"] == k)
                             & ((rows["stage"] == "first") | (rows["stage2"] == stage2))].sort_values("r")
                if not (cells["stage"] == "rerank").any():
                    continue
                cells_all.append(cells)
                lines.append((backend, chosen["config"], k, cells))
                curves.append((f"{backend} K={k}", cells))
        if not lines:
            continue
        pick = select(pd.concat(cells_all))
        table = []
        for backend, config, k, cells in lines:
            entry = {"backend": backend, "config": config, "K": k}
            for _, c in cells.iterrows():
                star = "*" if c["cell_id"] == pick["cell_id"] else ""
                chosen = f" (a={c['fusion_alpha']:.2f})" if c["fusion_alpha_chosen_on"] == "dev" else ""
                entry[f"R={c['r']}"] = f"{star}{ci(*t_interval(c['q_ndcg_at_10']))} / {timing_text(c['e2e_p95_ms'])}{chosen}"
            table.append(entry)
        png = plots_dir / f"k_by_r_{encoder}_{stage2.split(' ')[0]}_{stage2.split('=')[-1]}.png"
        _r_plot(png, curves, f"{encoder} + {stage2}")
        parts += [f"### {encoder} + {stage2}", "",
                  f"Dev-chosen: {pick['backend']} K={pick['k']} R={pick['r']}, test nDCG@10 "
                  f"{ci(*t_interval(pick['q_ndcg_at_10']))}.", "",
                  markdown_table(pd.DataFrame(table)), "", f"![nDCG@10 vs R]({link_prefix}{png.name})", ""]
    return parts


def _r_plot(path: Path, curves: list[tuple[str, pd.DataFrame]], title: str) -> None:
    """Test nDCG@10 against R (0 = first stage) per first stage and K, with 95% interval bands: one colour per
    backend (as in every plot), one line style per K."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    ks = sorted({int(cells["k"].iloc[0]) for _, cells in curves})
    styles = dict(zip(ks, ["--", "-", ":", "-."]))
    for label, cells in curves:
        stats_ = [t_interval(v) for v in cells["q_ndcg_at_10"]]
        mean = np.array([m for m, _ in stats_])
        half = np.array([h for _, h in stats_])
        x = cells["r"].to_numpy()
        color = BACKEND_COLORS.get(label.split(" ")[0])
        ax.plot(x, mean, marker="o", markersize=3, label=label, color=color,
                linestyle=styles.get(int(cells["k"].iloc[0]), "-"))
        ax.fill_between(x, mean - half, mean + half, alpha=0.06, color=color)
    ax.set_xlabel("R (cross-encoder depth; 0 = first stage alone)")
    ax.set_ylabel("test nDCG@10 (95% band)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def _significance(frame: pd.DataFrame, first: pd.DataFrame, test: str) -> list[str]:
    own = first[(first["encoder"] == _baseline_encoder(first)) | (first["first_stage_kind"] == Lexical.kind)]
    baseline_rows = own[(own["backend"] == "exact")]
    if baseline_rows.empty:
        return []
    k = _reference_k(baseline_rows)
    baseline = baseline_rows[baseline_rows["k"] == k].iloc[0]
    systems = []
    for _, rows in own[(own["backend"] != "exact") & (own["k"] == k)].groupby(["encoder", "backend"]):
        good = fastest_at_recall(rows)
        if good is not None:
            systems.append(good)
    reranked = frame[frame["stage"] == "rerank"]
    for _, rows in candidates(reranker_in_use(reranked)).groupby("stage2"):
        systems.append(select(rows))
    if not systems:
        return []
    chosen = pd.DataFrame(systems)
    chosen["label"] = chosen.apply(_mark, axis=1)
    tests = paired_tests(baseline, chosen, test=test)
    table = _tests_table(tests)
    table["own stage's gain (dev / test)"] = [
        "-" if np.isnan(row["stage_delta_dev"]) else f"{row['stage_delta_dev']:+.3f} / {row['stage_delta_test']:+.3f}"
        for _, row in chosen.iterrows()]
    return ["## Significance against the baseline", "",
            f"Baseline: exact search, {baseline['encoder']}, K={baseline['k']} (test nDCG@10 "
            f"{ci(*t_interval(baseline['q_ndcg_at_10']))}). Systems, each chosen on dev: each ANN backend's fastest "
            f"cell reaching dev recall@K >= 0.95 ({baseline['encoder']}; BM25), and each reranking stage's dev-chosen "
            f"row among those that use its scores (fusion alpha > 0; at 0 a row ranks as its first stage); tested once "
            f"on the test queries: {_test_name(test)} on per-query nDCG@10, Holm-corrected "
            f"(statsmodels multipletests) over the {len(tests)} comparisons; queries improved / worsened. A reranked "
            "system's delta against the baseline includes its first stage's; its own stage's gain is its paired delta "
            "against that first stage (rerankers that add nothing on dev are left out).", "",
            markdown_table(table), "", *_contributions(frame)]


def _contributions(frame: pd.DataFrame) -> list[str]:
    table = contribution_table(frame)
    if table.empty:
        return []
    return ["## What each stage adds", "",
            "Each reranker over each first stage, and each fusion over each backend: the group's dev-chosen pipeline "
            "against the same pipeline without that stage (a fusion: against each member alone, same K), per-query "
            "nDCG@10 differences with 95% t-intervals and the one-sided paired p of a gain; dev decides, test is "
            "reported once. A stage that ties on dev, or is fused at alpha 0, adds nothing here and is not a "
            "candidate of its own (`python -m bench contributions`).", "",
            markdown_table(table.drop(columns=["dataset"])), ""]


def _stage_plot(path: Path, picks: list[tuple[str, pd.Series]]) -> None:
    """End-to-end latency of each recommended pipeline split by stage (mean ms per query)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.45 * len(picks)), dpi=100)
    labels = [label for label, _ in picks]
    left = np.zeros(len(picks))
    for stage, column in (("encode", "query_encode_mean_ms"), ("search", "search_mean_ms"),
                          ("rerank", "rerank_mean_ms")):
        values = np.array([0.0 if np.isnan(row[column]) else row[column] for _, row in picks])
        ax.barh(labels, values, left=left, color=STAGE_COLORS[stage], label=stage)
        left += values
    ax.set_xlabel("mean latency per query (ms), by stage")
    ax.tick_params(labelsize=7)
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    _save(fig, path)


def _recommendations(frame: pd.DataFrame, budgets: list[Budget], plots_dir: Path, link_prefix: str) -> list[str]:
    rows, picks = [], []
    for budget in budgets:
        head = {"p95 budget ms": f"{budget.p95_ms:g}", "memory budget MB": f"{budget.memory_mb:g}"}
        try:
            choice = recommend(frame, budget)
        except NothingFits:
            rows.append({**head, "pick": "nothing fits"})
            continue
        pick = choice.pick
        rows.append({**head, "pick": _mark(pick), "dev nDCG@10": ci(*choice.dev_interval()),
                     "test nDCG@10": ci(*choice.test_interval()),
                     "e2e p95 ms (sweep)": timing_text(pick['e2e_p95_ms']) + ("" if pick.get("e2e_method") == E2E_METHOD
                                                                               else " (sum of medians)"),
                     "e2e p50 / p95 / p99 ms as deployed": " / ".join(
                         timing_text(pick.get(f"composed_e2e_{q}_ms", np.nan)) for q in ("p50", "p95", "p99"))
                     if not np.isnan(pick.get("composed_e2e_p95_ms", np.nan)) else "not timed composed",
                     "memory MB": f"{pick['memory_mb']:.1f}",
                     "tied with dev-best": f"{len(choice.ties)} of {choice.candidates}",
                     "dev-best": f"{choice.dev_best['pipeline']} ({choice.dev_best['dev_ndcg_at_10']:.3f}; "
                                 f"pick's one-sided p {_p(choice.p_vs_best)})"})
        stage = f" + R={pick['r']}" if pick["stage"] == "rerank" else ""
        picks.append((f"{budget.p95_ms:g} ms / {budget.memory_mb:g} MB: {pick['encoder']} {pick['backend']} "
                      f"K={pick['k']}{stage}", pick))
    parts = ["## Recommendations under budgets", "",
             "Within an end-to-end p95 and a memory budget: the dev-best configuration, then the cheapest one whose "
             f"dev nDCG@10 is not significantly below it (one-sided paired t-test on the dev queries, p >= {ALPHA}); "
             "its test nDCG@10 is reported once (`python -m bench recommend --p95-ms X --memory-mb Y` for any other "
             "budget). Budgets are checked against the sweep's e2e p95 (every row has one; 'sum of medians' marks rows "
             "timed before per-sample sums); 'as deployed' is the pick's composed run (every query through every stage "
             "in one loop; section 'Pipelines timed as deployed'). " + _span(pd.DataFrame([p for _, p in picks])),
             "", markdown_table(pd.DataFrame(rows)), ""]
    if picks:
        png = plots_dir / "latency_by_stage.png"
        _stage_plot(png, picks)
        parts += ["End-to-end latency of each pick, by stage:", "", f"![latency by stage]({link_prefix}{png.name})", ""]
    return parts


def _span(rows: pd.DataFrame) -> str:
    """Whether a table's rows come from one run or several (runs start at their `timestamp`)."""
    if rows.empty or "timestamp" not in rows:
        return ""
    starts = pd.to_datetime(rows["timestamp"]).dropna()
    if starts.nunique() <= 1:
        return "Its rows come from one run."
    return (f"Its rows span {starts.nunique()} runs, started {starts.min():%Y-%m-%d} to {starts.max():%Y-%m-%d} "
            "(each row's latency is from its own run; see the environment's host-speed line).")


def _dataset_body(frame: pd.DataFrame, plots_dir: Path, link_prefix: str, budgets: list[Budget], test: str,
                  scale: pd.DataFrame | None) -> list[str]:
    """Every section for one dataset's rows (headings from level 2)."""
    table, notes = _cost_table(frame, scale)
    parts = ["## Cost comparison per encoder type", "",
             "The design note's table with measured numbers. Online latency is end to end per query "
             "(query encoding + ANN search, + reranking for the cross-encoder), one query at a time. "
             "Offline cost is corpus encoding + index build (+ training). Memory is the serialized index "
             "(which holds the embeddings) + float32 model weights. Quality: test nDCG@10 of the exact cell and of "
             "the dev-chosen ANN cell.", "", table, "", notes, ""]
    first = frame[frame["stage"] == "first"]
    parts += _seen_section(frame, test)
    parts += _encoder_types(first, test)
    parts += _chunking_section(first, test)
    parts += _precision_section(first, test)
    parts += _hybrid_section(first, test)
    dense = first[first["first_stage_kind"] != Lexical.kind]  # BM25's recall@K is against BM25 itself: not comparable
    parts += ["## Pareto frontiers", "",
              "Parameter short names: " + ", ".join(f"{v} = {k}" for k, v in ABBREVIATIONS.items()) + ".", ""]
    parts += _recall_frontiers(dense, plots_dir, link_prefix)
    parts += _memory_section(dense, plots_dir, link_prefix)
    parts += _ndcg_frontier(frame, plots_dir, link_prefix)
    parts += _k_by_r(frame, plots_dir, link_prefix)
    parts += _significance(frame, first, test)
    parts += _recommendations(frame, budgets, plots_dir, link_prefix)
    return parts


def _own_pick(frame: pd.DataFrame, budget: Budget) -> str:
    """A dataset's own pick under `budget`, as its test nDCG@10 with CI, or why there is none."""
    try:
        return ci(*t_interval(recommend(frame, budget).pick["q_ndcg_at_10"]))
    except NothingFits:
        return "nothing fits the budget"


def _across_datasets(frame: pd.DataFrame, budgets: list[Budget]) -> list[str]:
    """BEIR-style: one row per configuration measured on every dataset, test nDCG@10 per dataset; then whether
    a choice made on one dataset holds on another."""
    datasets = sorted(frame["dataset"].unique())
    shown = frame[(frame["backend"].isin(["exact", "bm25s"])) & ~frame["passages"]]
    common = shown.groupby(CONFIGURATION)["dataset"].nunique()
    common = common[common == len(datasets)].index
    rows = []
    for key in common:
        cells = shown.set_index(CONFIGURATION).loc[[key]]
        entry = {"configuration": cells.iloc[0]["pipeline_name"]}  # tuned values differ per dataset: not in the name
        per_query = []
        for dataset in datasets:
            row = cells[cells["dataset"] == dataset].iloc[0]
            entry[dataset] = ci(*t_interval(row["q_ndcg_at_10"])) + (" [seen]" if row["saw_eval_docs"] else "")
            per_query.append(row["q_ndcg_at_10"])
        entry["mean of datasets"] = ci(*mean_of_means_interval(per_query))
        rows.append(entry)
    transfer = []
    for budget in budgets:
        for source in datasets:
            try:
                pick = recommend(frame[frame["dataset"] == source], budget).pick
            except NothingFits:
                continue
            entry = {"budget": f"{budget.p95_ms:g} ms / {budget.memory_mb:g} MB", "chosen on": source,
                     "pick": pick["pipeline"]}
            for target in datasets:
                same = frame[(frame["dataset"] == target)].set_index(CONFIGURATION)
                key = pick[CONFIGURATION]
                if key not in same.index:
                    entry[f"test nDCG@10 on {target}"] = "not measured"
                    continue
                row = same.loc[[key]].iloc[0]
                entry[f"test nDCG@10 on {target}"] = ci(*t_interval(row["q_ndcg_at_10"])) + (
                    "" if target == source else f" (its own pick: {_own_pick(frame[frame['dataset'] == target], budget)})")
            transfer.append(entry)
    return ["## Across datasets", "",
            f"Test nDCG@10 (95% t-interval) of each exact-search and BM25 configuration measured on all of "
            f"{', '.join(datasets)}, as BEIR reports; `[seen]` marks models trained on documents that dataset's "
            "evaluation queries judge; the mean of datasets weighs each dataset the same, its interval from the "
            "per-dataset standard errors (independent query sets; the smallest dataset's degrees of freedom).", "",
            markdown_table(pd.DataFrame(rows)), "",
            "Does a choice made on one dataset hold on another? Each budget's pick on one dataset's dev queries, "
            "measured on every dataset's test queries, against that dataset's own pick (where the configuration "
            "was measured there; latencies differ between datasets, so a pick may not fit the budget elsewhere).", "",
            markdown_table(pd.DataFrame(transfer)) if transfer else "(no budget has a pick)", ""]


def build_report(frame: pd.DataFrame, sources: list[str], plots_dir: Path, link_prefix: str,
                 budgets: list[Budget] | None = None, test: str = "t", scale: pd.DataFrame | None = None,
                 filters: pd.DataFrame | None = None, load: pd.DataFrame | None = None,
                 encode_latency: pd.DataFrame | None = None, composed: pd.DataFrame | None = None) -> str:
    from bench.composed import with_composed

    budgets = budgets or DEFAULT_BUDGETS
    frame = with_composed(with_derived(frame), composed)
    datasets = sorted(frame["dataset"].unique())
    head = ["# Retrieval stack benchmark report", ""]
    generated = ["Generated by `make report` (`python -m bench report`) from the results named below; every number "
                 "is a column of those rows or computed from their per-query values (cell ids given where a single "
                 "row is meant).", ""]
    if len(datasets) == 1:
        parts = [*head, *_protocol_lines(frame), "", *generated, "## Environment", "", _environment(frame, sources), "",
                 *_dataset_body(frame, plots_dir, link_prefix, budgets, test, scale)]
    else:
        parts = [*head, f"Datasets: {', '.join(datasets)}; each has its own section below, with its protocol.", "",
                 *generated, *_across_datasets(frame, budgets)]
        for dataset in datasets:
            rows = frame[frame["dataset"] == dataset]
            body = _dataset_body(rows, plots_dir / dataset, f"{link_prefix}{dataset}/", budgets, test, scale)
            parts += [f"# Dataset: {dataset}", "", *_protocol_lines(rows), "", "## Environment", "",
                      _environment(rows, sources), "", *[line.replace("## ", "### ", 1) if line.startswith("##") else line
                                                           for line in body]]
    if scale is not None and len(scale):
        parts += [scale_section(scale, plots_dir, link_prefix)]
    if filters is not None and len(filters):
        parts += [filters_section(filters)]
    if load is not None and len(load):
        parts += [load_section(load, plots_dir, link_prefix)]
    if composed is not None and len(composed):
        parts += [composed_section(composed)]
    if encode_latency is not None and len(encode_latency):
        parts += [repeatability_section(encode_latency)]
    return "\n".join(parts)


# ---------------------------------------------------------------- query-encoding repeatability


def repeatability_lines(rows: pd.DataFrame) -> list[str]:
    """One `encode-latency` series: per encoder its p50 per round and spread (raw, over the kernel), the encoders
    sharing a query network, and how far the host itself moved (the kernel timed between each encoder's queries)."""
    from bench.encode_latency import architecture_table, spread_table

    table = spread_table(rows)
    for column in ("p50 spread", "p50/kernel spread"):
        table[column] = table[column].map("{:.1%}".format)
    first = rows.iloc[0]
    by_encoder = rows.groupby("encoder")["kernel_ms"]
    kernel = (by_encoder.max() / by_encoder.min() - 1).sort_values()
    lines = [f"{rows['round'].nunique()} consecutive rounds; per round and encoder {first['samples']} samples "
             f"({first['passes']} passes, {first['order']}), {first['threads']} thread(s); started "
             f"{rows['measured_at'].min():%Y-%m-%d %H:%M} UTC.", "", markdown_table(table, floatfmt=".3g"), ""]
    shared = architecture_table(rows)
    if len(shared):
        shared["spread"] = shared["spread"].map("{:.1%}".format)
        lines += ["Encoders with the same query network shape (median p50 over the rounds):", "",
                  markdown_table(shared), ""]
    lines += [f"The calibration kernel timed between an encoder's queries moved by {kernel.iloc[0]:.1%} "
              f"({kernel.index[0]}) to {kernel.iloc[-1]:.1%} ({kernel.index[-1]}) over the rounds: how far the host "
              "itself moved while that encoder was timed.", ""]
    return lines


def _largest_shared_spread(rows: pd.DataFrame) -> str:
    from bench.encode_latency import architecture_table

    shared = architecture_table(rows)
    return f"{shared['spread'].max():.1%}" if len(shared) else "-"


def repeatability_section(rows: pd.DataFrame) -> str:
    """Every `encode-latency` series: a summary line each, then the latest one in full."""
    from bench.encode_latency import relative_sd, spread_table

    summary = []
    for series, group in rows.groupby("series"):
        spreads = spread_table(group)
        summary.append({"series": series, "started UTC": f"{group['measured_at'].min():%Y-%m-%d %H:%M}",
                        "passes": group["passes"].iloc[0], "order": group["order"].iloc[0],
                        "encoders": group["encoder"].nunique(),
                        "within 10% raw": f"{(spreads['p50 spread'] <= 0.10).sum()} of {len(spreads)}",
                        "largest raw spread": f"{spreads['p50 spread'].max():.1%}",
                        "within 10% over the kernel": f"{(spreads['p50/kernel spread'] <= 0.10).sum()} of {len(spreads)}",
                        "largest over the kernel": f"{spreads['p50/kernel spread'].max():.1%}",
                        "same network shape: largest spread": _largest_shared_spread(group),
                        "relative SD raw / over the kernel": f"{relative_sd(group):.1%} / "
                                                             f"{relative_sd(group, normalized=True):.1%}"})
    latest = rows[rows["series"] == rows["series"].max()]
    pooled = relative_sd(rows)
    return "\n".join([
        "## Repeatability of query encoding", "",
        "`python -m bench encode-latency CONFIG` (`make encode-latency`) times every network encoder's query "
        "encoding as the sweep does, in consecutive rounds in one process; each invocation is a series of "
        "results/encode_latency.parquet. Order: `back to back` is the sweep's (an encoder's passes one after another, "
        "a few seconds), `interleaved` takes every encoder's passes in turn so that each figure samples the whole "
        "round. Spread = max / min - 1 of an encoder's p50 over the rounds; over the "
        "kernel = the same for p50 / the calibration kernel timed between its queries.", "",
        markdown_table(pd.DataFrame(summary)), "",
        f"Relative SD of one timed p50 (SD of log p50 between rounds, pooled over encoders and series): "
        f"{pooled:.1%} raw, {relative_sd(rows, normalized=True):.1%} over the kernel; two independently timed p50s "
        f"then differ by up to {1.96 * np.sqrt(2) * pooled:.0%} on noise alone (95%), against the recommender's "
        f"latency tie band of {LATENCY_TIE:.0%}.", "",
        f"Latest series ({int(latest['series'].iloc[0])}):", "",
        *repeatability_lines(latest)])


# ---------------------------------------------------------------- scale series


def scale_section(frame: pd.DataFrame, plots_dir: Path | None = None, link_prefix: str = "") -> str:
    """Markdown for the scale series: one row per variant, vector source and N; the log-log slopes; the
    generator against real vectors; the HNSW build grid; bytes per vector and the 100M / 1B projection."""
    from bench.memory import build_grid, capacity, generator_bias
    from bench.scale import growth, latest

    if frame.empty:
        return ""
    frame = latest(frame)
    order = {"real": 0, "gmm": 1, "pooled": 2, "gmm-pooled": 3}
    rows = frame.assign(order=frame["source"].map(order)).sort_values(["variant", "n", "order"])
    table = pd.DataFrame({
        "variant": rows["variant"].map(_variant), "vectors": rows["source"], "N": rows["n"].map("{:,}".format),
        "build": rows["build_params"].map(_params),
        "search (cheapest at target)": rows["search_params"].map(_params)
        + np.where(rows["reached"], "", " (target NOT reached)"),
        f"recall@{int(rows['k'].iloc[0])}": rows["recall_at_k"].map("{:.3f}".format),
        "build s": rows["build_s"].map(timing_text),
        "bytes/vector": (rows["index_bytes"] / rows["n"]).map("{:,.0f}".format),
        "index MB": (rows["index_bytes"] / MB).map("{:,.1f}".format),
        "predicted MB": (rows["predicted_index_bytes"] / MB).map("{:,.1f}".format),
        "RSS growth MB": (rows["rss_build_delta_bytes"] / MB).map("{:,.0f}".format),
        "p50 ms": rows["search_p50_ms"].map(timing_text), "p95 ms": rows["search_p95_ms"].map(timing_text),
        "measured": rows["measured_at"].fillna(rows["timestamp"]).dt.strftime("%m-%d %H:%M"),
    })
    ratio = rows["index_bytes"] / rows["predicted_index_bytes"]
    slopes = growth(frame)
    if len(slopes):
        slopes = slopes.assign(variant=slopes["variant"].map(_variant))
    first = frame.iloc[0]
    k = int(first["k"])
    generator = json.loads(frame.loc[frame["source"] == "gmm", "generator"].iloc[0]) if (frame["source"] == "gmm").any() else {}
    pooled = frame[frame["source"] == "pooled"]
    parts = [
        "## Scale: growth with N", "",
        f"Each backend variant (backend and build as configured) at the cheapest search point of its grid reaching "
        f"recall@{k} >= {first['target_recall']} against exact search ({first['n_queries']} real queries, "
        f"{first['dim']} dims), latency of one query on one thread. `vectors`: `real` = the encoder's embeddings of "
        f"the corpus; `gmm` = sampled from {generator.get('mixture', 'the generator')} fitted to the "
        f"{generator.get('fitted_on', '?')} real ones ({generator.get('model', '')}, {generator.get('dataset', '')}, "
        f"seed {generator.get('seed', '')}); `pooled` = every real vector the shared data gives (documents, passages "
        "and train/dev queries of both datasets, exact duplicates dropped), `gmm-pooled` = the same mixture fitted to "
        "the pool. Predicted bytes come from each backend's memory model (`memory_bytes` in its module under "
        "`bench/indexes/`); RSS growth is the process RSS after the build minus before it (the vectors were "
        "already loaded; allocator and build-time buffers included). Builds on "
        f"{int(first['build_threads'])} threads.", "",
        markdown_table(table), "",
        f"Serialized index / predicted: {ratio.min():.4f} to {ratio.max():.4f} over {len(ratio)} rows "
        f"(largest deviation {100 * (ratio - 1).abs().max():.2f}%).", "",
        "Log-log slopes against N over the generator's configured sizes (1 = linear growth). RSS growth is only "
        "meaningful at large N: at small N the allocator reuses freed memory and the growth reads near 0.", "",
        markdown_table(slopes, ".3f") if len(slopes) else "(fewer than two sizes measured)", "",
    ]
    bias = generator_bias(frame)
    pooled_n = f" (N = {int(pooled['n'].iloc[0]):,})" if len(pooled) else ""
    if len(bias):
        bias = bias.assign(variant=bias["variant"].map(_variant))
        parts += ["### The generator against real vectors", "",
                  "Per variant, the search effort (the grid's knob at the cheapest point reaching the target) on real "
                  "vectors and on vectors sampled from a mixture fitted to them, at the same N: the real corpus, and "
                  f"the pooled real vectors{pooled_n}. "
                  "A ratio above 1: the generator makes that index work harder than real data does; below 1: easier. "
                  "Every generated-vector figure in this section (10k to 1M) carries this bias.", "",
                  markdown_table(bias, ".3g"), ""]
    grid = build_grid(frame)
    if len(grid) and grid["variant"].nunique() > 1:
        grid = grid.assign(variant=grid["variant"].map(_variant))
        parts += ["### HNSW build grid", "",
                  "hnswlib at each build (M, ef_construction) on generated vectors: the ef each needed for the target, "
                  "its p95, build time and size (`measured`: when, or its run's start for older rows; p95 compares "
                  "within a run, not across runs). Builds above 100k were limited by build time on this machine "
                  "(see configs/scale.toml).", "", markdown_table(grid, ".3g"), ""]
    table = capacity(frame)
    if len(table):
        n_top = int(frame.loc[frame["source"] == "gmm", "n"].max())
        plot = ""
        if plots_dir is not None:
            png = plots_dir / "memory_at_scale.png"
            _capacity_plot(png, table, k, n_top)
            plot = f"![bytes per vector vs p95 at N={n_top:,}]({link_prefix}{png.name})"
        shown = table.assign(variant=table["variant"].map(_variant),
                             **{"bytes/vector": table["bytes/vector"].map("{:,.0f}".format),
                                "vs float32": table["vs float32"].map("{:.3f}".format),
                                "recall": table["recall"].map("{:.3f}".format),
                                "p95 ms": table["p95 ms"].map(timing_text),
                                "build s": table["build s"].map("{:,.0f}".format)}).drop(columns="reached")
        shown["recall"] = np.where(table["reached"], shown["recall"], shown["recall"] + " (not reached)")
        for column in [c for c in shown.columns if c.endswith(" GB")]:
            shown[column] = table[column].map("{:,.1f}".format)
        for column in [c for c in shown.columns if " in " in c]:
            shown[column] = np.where(table[column], "yes", "no")
        parts += ["### Memory at 100M and 1B vectors", "",
                  f"At N = {n_top:,} generated vectors (`measured`: when the row was measured, or its run's start for older rows; "
                  f"latencies compare within a run, #13): bytes per vector as serialized, recall@{k} and p95 at the "
                  f"cheapest search point reaching the target (recall below {first['target_recall']} where the grid "
                  "never reached it), build time; then the index bytes at 100M and 1B vectors from each backend's memory "
                  "model with the build as run (IVF centroids kept at this N's nlist: with nlist ~ sqrt(N) they add "
                  f"nlist x {int(first['dim'])} x 4 bytes, 49 MB at 1B), and whether that index alone fits in 64 / "
                  "256 GB of RAM (the process, the OS and query buffers need more). Recall and latency at 100M and 1B "
                  "are not measured: they are not implied by these rows.", "", plot, "",
                  markdown_table(shown, ".3g"), ""]
    return "\n".join(parts)


def _variant(text: str) -> str:
    """A scale variant with the parameter short names of the tables."""
    backend, *params = text.split(" ")
    pairs = [param.partition("=") for param in params]
    return " ".join([backend, *(f"{ABBREVIATIONS.get(name, name)}={value}" for name, _, value in pairs)])


def _capacity_plot(path: Path, table: pd.DataFrame, k: int, n: int) -> None:
    """Bytes per vector against p95 at the recall target, one point per variant (hollow: target not reached)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for _, row in table.iterrows():
        backend = row["variant"].split(" ")[0]
        color = BACKEND_COLORS.get(backend)
        ax.scatter(row["bytes/vector"], row["p95 ms"], color=color if row["reached"] else "none", edgecolors=color, s=40)
        ax.annotate(_variant(row["variant"]), (row["bytes/vector"], row["p95 ms"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("index bytes per vector (log)", fontsize=8)
    ax.set_ylabel(f"p95 ms at recall@{k} target (log)", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"N = {n:,} generated vectors: memory against latency at the recall target (hollow: not reached)",
                 fontsize=9)
    _save(fig, path)


# ---------------------------------------------------------------- filtered search


def load_section(frame: pd.DataFrame, plots_dir: Path | None = None, link_prefix: str = "") -> str:
    """Markdown for throughput under load: per served pipeline, QPS and tail latency per concurrency (closed
    loop), p99 and the share over the deadline at target rates (open loop), cost per million queries."""
    if frame.empty:
        return ""
    first = frame.iloc[0]
    closed = frame[frame["mode"] == "closed"].sort_values(["pipeline", "concurrency"])
    opened = frame[frame["mode"] == "open"].sort_values(["pipeline", "target_qps"])
    best = closed.loc[closed.groupby("sweep_cell_id")["achieved_qps"].idxmax()].set_index("sweep_cell_id")
    summary = []
    for cell, row in best.iterrows():
        levels = closed[closed["sweep_cell_id"] == cell]
        summary.append({
            "pipeline": row["pipeline"], "chosen as": row["chosen_as"],
            "serial e2e p95 ms": timing_text(row['serial_e2e_p95_ms']),
            **{f"C={c} QPS / p99 ms": f"{timing_text(q)} / {timing_text(p)}"
               for c, q, p in zip(levels["concurrency"], levels["achieved_qps"], levels["latency_p99_ms"])},
            "best QPS": f"{timing_text(row['achieved_qps'])} (C={row['concurrency']})",
            "USD per 1M queries": timing_text(row['cost_per_million_usd'])})
    open_rows = [{"pipeline": r["pipeline"], "target QPS": timing_text(r['target_qps']), "achieved QPS": timing_text(r['achieved_qps']),
                  "requests": f"{r['requests']} (+{r['dropped']} dropped)" if r["dropped"] else str(r["requests"]),
                  "p50 ms": timing_text(r["latency_p50_ms"]), "p99 ms": timing_text(r["latency_p99_ms"]),
                  f"over {r['deadline_ms']:g} ms": f"{r['over_deadline_share']:.1%}"} for _, r in opened.iterrows()]
    when = frame["measured_at"]
    parts = [
        "## Throughput under load", "",
        f"{first['dataset']}: each recommended pipeline and each listed encoder's fastest cell (`chosen as`), served "
        f"end to end (encode, search, rerank) by one process on {first['cores']} cores, {first['threads_per_request']} "
        "torch thread per request (`python -m bench load`, bench/load.py). Closed loop: C client threads back to back "
        f"for {frame['duration_s'].min():.0f}+ s each; open loop: Poisson arrivals at a target rate, "
        f"{opened['concurrency'].max() if len(opened) else '-'} serving threads, latency from the scheduled arrival "
        "(queueing included); a p99 the samples cannot support (fewer than 100 requests, or requests dropped) is "
        f"`-`. Cost: cores x {first['price_per_core_hour']:g} USD per core-hour / best QPS. Measured "
        f"{when.min():%Y-%m-%d %H:%M}-{when.max():%H:%M} UTC at calibration {frame['calibration_ms'].min():.3f}-"
        f"{frame['calibration_ms'].max():.3f} ms; {len(frame)} rows.", "",
        markdown_table(pd.DataFrame(summary)), ""]
    if open_rows:
        parts += ["Open loop:", "", markdown_table(pd.DataFrame(open_rows)), ""]
    if plots_dir is not None:
        png = Path(plots_dir) / "load_qps_p99.png"
        _load_plot(png, closed, opened)
        parts += [f"![QPS vs p99]({link_prefix}{png.name})", ""]
    return "\n".join(parts)


def _load_plot(path: Path, closed: pd.DataFrame, opened: pd.DataFrame) -> None:
    """Achieved QPS against p99 per pipeline: closed-loop concurrency levels joined, open-loop targets as crosses."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for i, (name, rows) in enumerate(closed.groupby("pipeline")):
        color = TAB10[i % len(TAB10)]
        ax.plot(rows["achieved_qps"], rows["latency_p99_ms"], "o-", color=color, label=name[:70], markersize=4)
        for _, r in rows.iterrows():
            ax.annotate(f"C={r['concurrency']}", (r["achieved_qps"], r["latency_p99_ms"]), fontsize=6)
        own = opened[opened["pipeline"] == name]
        ax.plot(own["achieved_qps"], own["latency_p99_ms"], "x", color=color, markersize=6)
    ax.set_xlabel("achieved QPS", fontsize=8)
    ax.set_ylabel("p99 ms (open loop: x, from scheduled arrival)", fontsize=8)
    ax.set_yscale("log")
    ax.set_xscale("log")
    _readable_log_axis(ax.xaxis)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=7)
    _save(fig, path)


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


def composed_section(frame: pd.DataFrame) -> str:
    """Markdown for composed runs: each chosen pipeline's end-to-end percentiles over per-query totals (every query
    through every stage in one loop), beside the sweep's per-query sums of per-stage medians."""
    if frame.empty:
        return ""
    lines = ["## Pipelines timed as deployed", "",
             "Each pipeline a budget or the dev frontier could pick, rebuilt from its sweep cell; every test query sent "
             "through encode, search and rerank in one loop, one query at a time, each stage and the whole timed per "
             "sample (`python -m bench composed`). 'composed' percentiles are over the measured per-query totals; "
             "'from medians' summarizes the same samples as the sweep's e2e was before per-sample sums (each stage's "
             "per-query median over the passes, summed); 'sweep' is the sweep row's figure, from another run: its "
             "host speed differs by the kernel ratio shown (composed kernel / sweep kernel). Samples = queries x "
             "passes, on the threads given.", ""]
    for dataset, rows in frame.sort_values(["dataset", "e2e_p95_ms"]).groupby("dataset"):
        table = pd.DataFrame({
            "pipeline": rows["pipeline"], "chosen as": rows["chosen_as"],
            "samples (threads)": [f"{q} x {r} ({t})" for q, r, t in zip(rows["queries"], rows["repetitions"], rows["threads"])],
            "composed e2e p50 / p95 / p99 ms": [" / ".join(timing_text(v) for v in vals) for vals in
                                                zip(rows["e2e_p50_ms"], rows["e2e_p95_ms"], rows["e2e_p99_ms"])],
            "from medians p50 / p95 / p99 ms": [" / ".join(timing_text(v) for v in vals) for vals in
                                                zip(rows["medians_e2e_p50_ms"], rows["medians_e2e_p95_ms"],
                                                    rows["medians_e2e_p99_ms"])],
            "sweep e2e p50 / p95 / p99 ms (kernel ratio)": [
                " / ".join(timing_text(v) for v in vals[:3]) + f" ({vals[3] / vals[4]:.2f}x)" for vals in
                zip(rows["sweep_e2e_p50_ms"], rows["sweep_e2e_p95_ms"], rows["sweep_e2e_p99_ms"], rows["calibration_ms"],
                    rows["sweep_calibration_ms"])],
            "encode / search / rerank p95 ms": [" / ".join(timing_text(v) for v in vals) for vals in
                                                zip(rows["encode_p95_ms"], rows["search_p95_ms"], rows["rerank_p95_ms"])],
            "measured": rows["measured_at"].map(lambda t: f"{t:%Y-%m-%d}" if pd.notna(t) else "")})
        lines += [f"### {dataset}", "", markdown_table(table), ""]
    return "\n".join(lines)
