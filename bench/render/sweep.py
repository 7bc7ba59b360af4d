"""The sweep's sections per dataset: why the decision is what it is (stage contributions, frontiers with dev
quality, the design note's cost table, encoder types, levers, K x R, significance), each short, its full table a CSV."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import (ALPHA, short_names_of, CALIBRATION_TOLERANCE, contended, DENSE, E2E_METHOD, FUSION, LATENCY_TIE, LEXICAL, MB, baseline_encoder,
                            candidates, contribution_table, fastest_at_recall, is_reference_encoding, paired_tests, pareto,
                            per_query, fusion_text, reference_dense, reference_k, reranker_in_use, seen_split,
                            select, t_interval)
from bench.analysis.series import memory_frontier, scale_note, scale_slopes, smallest_at_recall, with_bytes_per_vector
from bench.core.figures import ci, host_name, timing_text
from bench.render.markdown import (Tables, _mark, _p, _test_name, _tests_table, _values, markdown_table,
                                   quality)
from bench.render.plots import _frontier_plot, _r_plot, _stage_plot


def _environment_lines(frame: pd.DataFrame, sources: list[str]) -> list[str]:
    """One dataset's environment lines, each starting "- <what>:"."""
    versions = json.loads(frame["versions"].iloc[0])
    first, last = frame["timestamp"].min(), frame["timestamp"].max()
    lines = [
        f"- results: {', '.join(sources)} ({', '.join(map(host_name, sorted(frame['host_id'].unique())))})",
        f"- dataset: {len(frame)} rows of {frame['dataset'].iloc[0]}: {frame['n_docs'].iloc[0]} documents; "
        f"{frame['n_queries'].iloc[0]} "
        f"{frame['split'].iloc[0]} queries, {frame['n_dev_queries'].iloc[0]} dev queries "
        f"(dataset hash {frame['dataset_hash'].iloc[0]})",
        f"- hardware: {frame['cpu_model'].iloc[0]}, {frame['n_cpus'].iloc[0]} cores, {frame['memory_gb'].iloc[0]} GB RAM; "
        f"{frame['platform'].iloc[0]}",
        f"- threads: search 1 per query; query encoding and reranking {_values(frame.loc[frame['stage'] == 'rerank', 'rerank_threads'])} "
        f"(`[measure] threads`); throughput {frame['throughput_threads'].iloc[0]}, index build {frame['build_threads'].iloc[0]}",
        f"- latency samples: search {_values(frame['latency_samples'])} per cell (one query at a time, after warmup); "
        f"query encoding {_encode_passes(frame)} per encoder and run, each query followed by the calibration kernel; "
        f"reranking {_values(frame.loc[frame['stage'] == 'rerank', 'rerank_latency_queries'])} queries per (reranker, R); end to end "
        f"= percentiles of per-sample sums of the stages ({(frame['e2e_method'] == E2E_METHOD).sum()} rows; the other "
        f"{(frame['e2e_method'] != E2E_METHOD).sum()}, timed before, summed per-query medians). Latencies, rates and costs carry 2 significant figures: a figure "
        f"timed minutes apart moves with a relative SD of ~5% on this kind of host (p95s within {LATENCY_TIE:.0%} tie).",
        _calibration_line(frame),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        f"- measured: {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC; git "
        + ", ".join(sorted({sha[:10] + ("+dirty" if dirty else "") for sha, dirty in
                            zip(frame["git_sha"], frame["git_dirty"])})),
    ]
    return lines


def environment_section(frames: dict[str, pd.DataFrame], sources: list[str]) -> list[str]:
    """The environment: lines every dataset shares once, then each dataset's own."""
    per = {name: _environment_lines(rows, sources) for name, rows in frames.items()}
    shared = [line for line in next(iter(per.values())) if all(line in lines for lines in per.values())] \
        if len(per) > 1 else []
    out = ["All datasets:", *shared, ""] if shared else []
    for name, lines in per.items():
        out += [f"{name}:", *[line for line in lines if line not in shared], ""]
    return out


def _encode_passes(frame: pd.DataFrame) -> str:
    settings = [json.loads(s) for s in frame["latency_settings"].unique() if s]
    if not settings:
        return "1 pass (rows timed before `[measure] encode_repeats`)"
    return " / ".join(sorted({f"{s['encode_repeats']} passes over {s['encode_sample']} queries" for s in settings}))


def _calibration_line(frame: pd.DataFrame) -> str:
    """How fast the host was when each latency was timed: the calibration kernel's figures (bench.core.calibration)."""
    figures = frame["calibration_ms"].dropna()
    missing = len(frame) - len(figures)
    if figures.empty:
        return ("- host speed: no calibration figure (rows timed before calibration existed): latencies from "
                "different runs may differ by the host's state, up to 2x here")
    low, high = figures.min(), figures.max()
    runs = frame.groupby("timestamp")["calibration_ms"].median()
    busy = int(contended(frame).sum())
    line = (f"- host speed: calibration kernel {low:.3f}-{high:.3f} ms per call over {frame['timestamp'].nunique()} "
            f"run(s) (run medians {runs.min():.3f}-{runs.max():.3f}); `--retime` re-times the rows of a run whose median "
            f"is off the host's by more than `[measure] calibration_tolerance` ({CALIBRATION_TOLERANCE:.0%}), and rows "
            "timed while the host ran that much slower than the rest of their run: "
            + (f"**{busy} rows here were** (their latencies read high; `python -m bench run CONFIG --retime`)"
               if busy else "none here") + "; within a run the host still moves (a figure's relative SD ~5%: "
            f"`make encode-latency`), so p95s within {LATENCY_TIE:.0%} count as equal")
    if missing:
        line += f"; {missing} rows carry no figure (timed before calibration existed)"
    return line


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
    return lines


ENCODER_TYPE_NAMES = {"bm25": "BM25, no encoder", "bi": "bi-encoder", "twin": "twin-tower",
                      "hybrid": "hybrid, BM25 + dense"}


def _encoder_types(first: pd.DataFrame, test: str, tables: Tables) -> list[str]:
    """Dense encoders side by side at exact search, each tested against the pretrained bi-encoder; then each
    encoder's fastest cell per ANN backend reaching recall@K >= 0.95 on dev."""
    dense = reference_dense(first)
    if dense["encoder"].nunique() < 2:
        return []
    exact = dense[dense["backend"] == "exact"]
    k = reference_k(exact)
    exact = exact[exact["k"] == k].drop_duplicates("encoder").set_index("encoder", drop=False).rename_axis(None)
    name = baseline_encoder(first)
    baseline, others = exact.loc[name], exact.drop(index=name).copy()
    others["label"] = others["encoder"]
    tests = paired_tests(baseline, others, test=test, split="dev").set_index("system")
    rows = []
    for encoder, row in exact.sort_values(["encoder_type", "encoder_mode", "encoder"]).iterrows():
        entry = {"encoder": encoder + (" [seen]" if row["saw_eval_docs"] else ""),
                 "type": ENCODER_TYPE_NAMES.get(row["encoder_type"], row["encoder_type"]),
                 "training": row["encoder_mode"], "parameters": f"{row['encoder_params']:,}",
                 "train s": row["encoder_train_s"], "corpus encode s": row["corpus_encode_s"],
                 "query encode p50 ms": timing_text(row["query_encode_p50_ms"]),
                 **quality(row, "dev", ("ndcg_at_10", "recall_at_100", "rr_at_10"))}
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
            entry.update({"fastest with dev recall@K >= 0.95": good["config"],
                          **quality(good, "dev", ("ndcg_at_10",)), "search p95 ms": timing_text(good['search_p95_ms']),
                          "index MB": f"{good['index_bytes'] / MB:.1f}"})
        ann.append(entry)
    return ["## Encoder types, trained like for like", "",
            f"Exact search, K={k}. `training`: pretrained, `heads` (linear projection heads over the frozen backbone) "
            f"or `full` fine-tuning (`bench train-towers`; same backbone, data, loss, steps and seed within a mode, "
            f"only weight sharing differs), on the protocol's training queries. {_test_name(test).capitalize()} on "
            f"per-query test nDCG@10 against {name}, Holm-corrected (statsmodels) over the {len(tests)} comparisons; "
            f"`delta` with its 95% t-interval. `[seen]`: trained on documents the evaluation queries judge. " +
            tables.link("encoder-types", pd.DataFrame(rows)), "",
            f"The same encoders through the ANN grid (K={k}): per encoder and backend, the highest dev recall@K reached "
            "and the fastest cell reaching dev recall@K >= 0.95, with its test numbers. " +
            tables.link("encoder-types-ann", pd.DataFrame(ann)), ""]


def _seen_section(frame: pd.DataFrame, test: str, tables: Tables) -> list[str]:
    """Every trained model's quality on test queries with / without a relevant document that is a train positive."""
    seen_ids, protocol = seen_split(frame)
    first = frame[frame["stage"] == "first"]
    baseline_name = baseline_encoder(first)
    if not protocol.get("guard") or not baseline_name:
        return []
    exact = first[(first["backend"] == "exact") & ~first["passages"]]
    k = reference_k(exact) if len(exact) else 0
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
            "search on the same queries, with 95% t-intervals. " + tables.link("seen-unseen", pd.DataFrame(table)), ""]


def _chunking_section(first: pd.DataFrame, test: str, tables: Tables) -> list[str]:
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
            **quality(row, "dev"), "exact p95 ms": timing_text(row['search_p95_ms']),
            "fastest ANN at dev recall >= 0.95": (f"{ann['backend']} {ann['config']}: {timing_text(ann['search_p95_ms'])} ms p95, "
                                                  f"{ann['index_bytes'] / MB:.1f} MB") if ann is not None else "-"})
    parts = ["## Long documents: passages vs whole documents", "",
             "The same model over whole documents (truncated at its max length) and over token-window passages; "
             "a search returns K passages, aggregated to at most K documents, so R@100 at K = 100 counts fewer "
             "documents. Exact search per K; the fastest ANN cell with dev recall@K >= 0.95 (against exact search "
             "over the same passages, after aggregation). " + tables.link("passages", pd.DataFrame(table)), ""]
    at = exact[exact["k"] == reference_k(exact)]
    base = at[~at["passages"]]
    if len(base):
        others = at[at["passages"]].copy()
        others["label"] = others["encoder"]
        tests = paired_tests(base.iloc[0], others, test=test, split="dev")
        parts += [f"{_test_name(test).capitalize()} on per-query test nDCG@10 against {base.iloc[0]['encoder']} "
                  f"(exact, K={base.iloc[0]['k']}), Holm-corrected (statsmodels): " +
                  tables.link("passages-tests", _tests_table(tests)), ""]
    return parts


def _precision_section(first: pd.DataFrame, test: str, tables: Tables) -> list[str]:
    """The same pretrained model at each query / document precision: query-encoding latency, corpus encoding
    time and exact-search quality, each variant tested against the fp32 model on the same queries."""
    pretrained = first[(first["first_stage_kind"] == DENSE) & ~first["passages"]
                       & (first["encoder_mode"] == "pretrained") & (first["backend"] == "exact")]
    variants = pretrained[~is_reference_encoding(pretrained)]
    if variants.empty:
        return []
    k = reference_k(pretrained)
    rows, notes = [], []
    for model, group in pretrained[pretrained["k"] == k].groupby("model"):
        group = group.drop_duplicates("encoder")
        base = group[is_reference_encoding(group)]
        others = group.drop(base.index).copy()
        if others.empty or base.empty:
            continue
        base = base.sort_values("encoder").iloc[0]
        others["label"] = others["encoder"]
        tests = paired_tests(base, others, test=test, split="dev").set_index("system")
        for _, row in pd.concat([base.to_frame().T, others.sort_values(["query_runtime", "doc_runtime", "query_precision", "doc_precision"])]).iterrows():
            entry = {"encoder": row["encoder"], "query": row["query_precision"], "documents": row["doc_precision"],
                     "query runtime": row["query_runtime"], "document runtime": row["doc_runtime"],
                     "device": row["encoder_device"], "query encode p50 ms": timing_text(row['query_encode_p50_ms']),
                     "p95 ms": timing_text(row['query_encode_p95_ms']),
                     "p50 / kernel": f"{row['query_encode_p50_ms'] / row['query_encode_calibration_ms']:.3g}",
                     "corpus encode s": f"{row['corpus_encode_s']:.0f}", **quality(row, "dev", ("ndcg_at_10",))}
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
            f"{_test_name(test)} on per-query test nDCG@10, 95% interval, Holm-corrected. " + "; ".join(notes) + ". " +
            tables.link("encoding-levers", pd.DataFrame(rows)), ""]


def _hybrid_section(first: pd.DataFrame, test: str, tables: Tables) -> list[str]:
    """Each hybrid at exact dense search, per depth, beside its two sides alone, with paired tests against each."""
    hybrid = first[(first["first_stage_kind"] == FUSION) & (first["backend"] == "exact")]
    bm25 = first[(first["first_stage_kind"] == LEXICAL)]
    dense_name = baseline_encoder(first)
    dense = first[(first["encoder"] == dense_name) & (first["backend"] == "exact")]
    if hybrid.empty or bm25.empty or dense.empty:
        return []
    k = reference_k(hybrid)
    hybrid, bm25, dense = (rows[rows["k"] == k] for rows in (hybrid, bm25, dense))
    if hybrid.empty or bm25.empty or dense.empty:
        return []
    bm25_row, dense_row = bm25.iloc[0], dense.iloc[0]
    systems = hybrid.sort_values(["encoder", "search_params"]).copy()
    systems["label"] = systems["encoder"] + " " + systems["config"]
    against = {side: paired_tests(row, systems, test=test, split="dev").set_index("system")
               for side, row in (("BM25", bm25_row), (dense_name, dense_row))}
    rows = []
    for _, row in pd.concat([bm25.iloc[:1], dense.iloc[:1], systems]).iterrows():
        params = json.loads(row["search_params"])
        entry = {"first stage": row["encoder"], "fusion": fusion_text(row),
                 "depth K'": params.get("depth", "-"), **quality(row, "dev", ("ndcg_at_10", "recall_at_100")),
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
            "queries, Holm-corrected per column; the ANN variants are in the frontiers and the K x R tables. " +
            tables.link("hybrids", pd.DataFrame(rows)), ""]


def _cost_table(frame: pd.DataFrame, scale: pd.DataFrame | None = None) -> tuple[pd.DataFrame, list[str]]:
    first = frame[frame["stage"] == "first"]
    rows, notes = [], []
    slopes = scale_slopes(scale)
    for encoder, group in first.groupby("encoder"):
        exact = group[(group["backend"] == "exact")]
        ann = group[(group["backend"] != "exact")]
        k = reference_k(group)
        at_k = group[group["k"] == k]
        ref = fastest_at_recall(at_k)
        ref = ref if ref is not None else at_k.sort_values("e2e_p95_ms").iloc[0]
        kind = group["encoder_type"].iloc[0]
        trained = "" if np.isnan(ref["encoder_train_s"]) else f" + {timing_text(ref['encoder_train_s'])} training"
        exact_row = select(exact[exact["k"] == k]) if (exact["k"] == k).any() else None  # hybrids: one per depth
        best_ann = select(ann[ann["k"] == k]) if (ann["k"] == k).any() else None
        parts = []
        if exact_row is not None:
            parts.append(f"{ci(*t_interval(exact_row['dev_q_ndcg_at_10']))} exact")
        if best_ann is not None:
            parts.append(f"{ci(*t_interval(best_ann['dev_q_ndcg_at_10']))} {best_ann['backend']}")
        quality_text = "; ".join(parts) or ci(*t_interval(ref["dev_q_ndcg_at_10"]))
        rows.append({
            "encoder type": f"{ENCODER_TYPE_NAMES.get(kind, kind)} ({encoder})" + (" [seen]" if ref["saw_eval_docs"] else ""),
            "online p50 / p95 ms": f"{timing_text(ref['e2e_p50_ms'])} / {timing_text(ref['e2e_p95_ms'])}",
            "offline cost s": f"{timing_text(ref['corpus_encode_s'])} encode + {timing_text(ref['build_s'])} build{trained}",
            "memory MB": f"{ref['index_bytes'] / MB:.1f} index (embeddings {ref['embeddings_mb']:.1f}) + "
                         f"{ref['model_mb']:.1f} model",
            f"dev nDCG@10 (K={k})": quality_text,
            "_dev": float(np.mean((exact_row if exact_row is not None else ref)["dev_q_ndcg_at_10"])),
            "scale": scale_note(scale, ref, slopes),
            "measured on": f"cell {ref['cell_id'][:12]}: {ref['backend']} {ref['config']} K={ref['k']} (fastest with "
                           "dev recall@K >= 0.95)",
        })
    reranked = frame[frame["stage"] == "rerank"]
    for name, group in reranked.groupby("reranker"):
        adding = candidates(reranker_in_use(group))
        if adding.empty:
            notes.append(f"{name} is not in the table: no row of it adds to its own first stage on dev")
            continue
        best = select(adding)  # latency, memory and quality all of this one pipeline
        rows.append({
            "encoder type": f"cross-encoder ({name}, reranks top-R)" + (" [seen]" if best["reranker_saw_eval_docs"] else ""),
            "online p50 / p95 ms": f"{timing_text(best['rerank_p50_ms'])} / {timing_text(best['rerank_p95_ms'])} for "
                                   f"R={best['r']} (+ first stage: e2e {timing_text(best['e2e_p95_ms'])} p95)",
            "offline cost s": f"{best['reranker_train_s']:.0f} training" if not np.isnan(best['reranker_train_s'])
            else "none (pretrained)",
            "memory MB": f"{4 * best['reranker_params'] / MB:.1f} model, no stored embeddings",
            f"dev nDCG@10 (K={k})": f"{ci(*t_interval(best['dev_q_ndcg_at_10']))}, own gain "
                                    f"{ci(best['stage_delta_dev'], best['stage_delta_dev_ci'])}",
            "_dev": float(np.mean(best["dev_q_ndcg_at_10"])),
            "scale": "cost per query grows with R, not with N",
            "measured on": f"cell {best['cell_id'][:12]}: over {best['encoder']} {best['backend']} K={best['k']}, "
                           f"R={best['r']}, alpha={best['fusion_alpha']:.2f}; rerank timed on "
                           f"{best['rerank_latency_queries']} queries, {best['rerank_threads']} threads",
        })
    return pd.DataFrame(rows), notes


def _memory_section(first: pd.DataFrame, plots_dir: Path, link_prefix: str, tables: Tables) -> list[str]:
    """Bytes per vector against dev recall@K and dev nDCG@10, per backend, for the baseline dense encoder."""
    encoder = baseline_encoder(first)
    rows = with_bytes_per_vector(first[first["encoder"] == encoder])
    if rows["backend"].nunique() < 2:
        return []
    dim = int(rows["dim"].iloc[0])
    parts = ["### Memory frontier: bytes per vector", "",
             f"{encoder} over every vector backend: serialized index bytes per document vector (fixed parts such as "
             f"centroids and codebooks included; float32 vectors alone are {4 * dim:,} bytes) against dev recall@K "
             "and dev nDCG@10, frontier per backend (the plots). The table: per backend, among the builds whose "
             "fastest cell reaches dev recall@K >= 0.95, the one with the fewest bytes per vector; its dev nDCG@10 "
             "and the paired difference to exact search on the same dev queries (95% t-interval).", ""]
    exact = rows[rows["backend"] == "exact"]
    links, smallest = [], []
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
                delta = ci(*t_interval(np.asarray(row["dev_q_ndcg_at_10"]) - np.asarray(exact_row.iloc[0]["dev_q_ndcg_at_10"])))
            table.append({"backend": row["backend"], "config": row["config"],
                          "bytes/vector": f"{row['bytes_per_vector']:,.0f}",
                          "x float32": f"{row['bytes_per_vector'] / (4 * dim):.2f}",
                          f"dev recall@{k}": f"{row['dev_recall_at_k']:.3f}",
                          "dev nDCG@10": ci(*t_interval(row["dev_q_ndcg_at_10"])), "vs exact": delta,
                          "search p95 ms": timing_text(row['search_p95_ms'])})
        below = rows[(rows["k"] == k) & (rows["bytes_per_vector"] <= dim)]  # at most a quarter of the float32 bytes
        best_small = below.sort_values("dev_recall_at_k").iloc[-1] if len(below) else None
        links.append(f"K = {k}: ![memory frontier K={k}]({link_prefix}{png.name}), smallest per backend at dev recall >= "
                     "0.95: " + tables.link(f"memory-k{k}", pd.DataFrame(table)))
        if best_small is not None:
            smallest.append(f"At most a quarter of the float32 bytes ({dim} bytes per vector): the highest dev recall@{k} is "
                      f"{best_small['dev_recall_at_k']:.3f}, "
                      f"{best_small['backend']} {best_small['config']} at {best_small['bytes_per_vector']:,.0f} bytes "
                      "per vector.")
    return parts + ["; ".join(links), "", *([" ".join(smallest), ""] if smallest else [])]


def _recall_frontiers(dense: pd.DataFrame, plots_dir: Path, link_prefix: str, tables: Tables) -> list[str]:
    parts = ["### Recall@K vs p95 ANN search latency", "",
             "Per encoder, the frontier of each backend over dev recall@K (the plots; one panel per encoder, one "
             "colour per backend); the frontier cells in the linked tables.", ""]
    links = []
    for k in sorted(dense["k"].unique()):
        at_k = dense[dense["k"] == k]
        panels, fronts = [], []
        for encoder, rows in at_k.groupby("encoder"):
            per_backend = [(b, pareto(g, "dev_recall_at_k", "search_p95_ms")) for b, g in rows.groupby("backend")]
            panels.append((encoder, per_backend))
            fronts += [g for _, g in per_backend]
        png = plots_dir / f"pareto_recall_k{k}.png"
        _frontier_plot(png, panels, "search_p95_ms", "dev_recall_at_k", "p95 search ms (log)", f"dev recall@{k}",
                       f"Recall@{k} vs p95 search latency: frontier per backend, one panel per encoder")
        frontier = pd.concat(fronts)
        links.append(f"K = {k}: ![recall@{k} frontier]({link_prefix}{png.name}), " + tables.link(f"recall-frontier-k{k}", pd.DataFrame({
                      "encoder": frontier["encoder"], "backend": frontier["backend"], "config": frontier["config"],
                      "dev recall@K": frontier["dev_recall_at_k"].map("{:.3f}".format),
                      "search p50 ms": frontier["search_p50_ms"].map(timing_text),
                      "search p95 ms": frontier["search_p95_ms"].map(timing_text),
                      "QPS": frontier["throughput_qps"].map(timing_text),
                      "index MB": (frontier["index_bytes"] / MB).map("{:.1f}".format)})))
    return parts + ["; ".join(links), ""]


def _ndcg_frontier(frame: pd.DataFrame, plots_dir: Path, link_prefix: str, tables: Tables) -> list[str]:
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
            f"Frontiers over dev nDCG@10 per encoder: ![nDCG@10 frontier]({link_prefix}{png.name}); " + tables.link("ndcg-frontier", pd.DataFrame({
                "pipeline": frontier.apply(_mark, axis=1),
                "dev nDCG@10": [ci(*t_interval(v)) for v in frontier["dev_q_ndcg_at_10"]],
                "e2e p95 ms": frontier["e2e_p95_ms"].map(timing_text),
                "memory MB": frontier["memory_mb"].map("{:.1f}".format)})), ""]


def _k_by_r(frame: pd.DataFrame, plots_dir: Path, link_prefix: str, tables: Tables) -> list[str]:
    reranked = frame[frame["stage"] == "rerank"]
    if reranked.empty:
        return []
    parts = ["## K x R", "",
             "For each first stage (its fastest cell reaching dev recall@K >= 0.95 at each K) and reranker: the "
             "dev-chosen (K, R) with its dev nDCG@10 and end-to-end p95, and the plot of dev nDCG@10 against R "
             "(R = 0: the first stage alone); one line per first stage and reranker, at the fusion alpha the same rule "
             "picks (dev-best, then the cheapest tie). The full grids, every alpha (dev nDCG@10 / e2e p95 per K and R; "
             "`*` the dev-chosen cell; `a=dev` fuses at the alpha chosen on each cell's dev queries, in brackets): ", ""]
    grid, chosen_rows = [], []
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
        for backend, config, k, cells in lines:
            entry = {"first stage": encoder, "reranker": stage2, "backend": backend, "config": config, "K": k}
            for _, c in cells.iterrows():
                star = "*" if c["cell_id"] == pick["cell_id"] else ""
                chosen = f" (a={c['fusion_alpha']:.2f})" if c["fusion_alpha_chosen_on"] == "dev" else ""
                entry[f"R={c['r']}"] = f"{star}{ci(*t_interval(c['dev_q_ndcg_at_10']))} / {timing_text(c['e2e_p95_ms'])}{chosen}"
            grid.append(entry)
        png = plots_dir / ("k_by_r_" + re.sub(r"[^\w.-]+", "_", f"{encoder}_{stage2}").strip("_") + ".png")
        reranker = stage2.rsplit(" a=", 1)[0] + (" adaptive" if stage2.endswith(" adaptive") else "")
        chosen_rows.append((encoder, reranker, pick, (png, curves, f"{encoder} + {stage2}"), {
            "first stage + reranker": f"{encoder} + {stage2}", "dev-chosen": f"{pick['backend']} K={pick['k']} R={pick['r']}",
            "dev nDCG@10": ci(*t_interval(pick["dev_q_ndcg_at_10"])), "e2e p95 ms": timing_text(pick["e2e_p95_ms"]),
            "plot": f"[dev nDCG@10 vs R]({link_prefix}{png.name})"}))
    if not grid:
        return []
    parts[-2] += tables.link("k-by-r", pd.DataFrame(grid))
    # one line per first stage and reranker: the alpha whose dev-chosen (K, R) the same rule picks (dev-best, then the
    # cheapest tie); every alpha's line is in the CSV
    groups: dict[tuple[str, str], list] = {}
    for item in chosen_rows:
        groups.setdefault(item[:2], []).append(item)
    shown = []
    for group in groups.values():
        best = select(pd.DataFrame([item[2] for item in group]))
        item = next(item for item in group if item[2]["cell_id"] == best["cell_id"]
                    and (item[2]["stage2"] == best["stage2"] or pd.isna(item[2]["stage2"]) and pd.isna(best["stage2"])))
        _r_plot(*item[3])  # the shown line's plot (the other alphas' grids are in the CSV)
        shown.append(item[4])
    return parts + [markdown_table(pd.DataFrame(shown)), ""]


def _significance(frame: pd.DataFrame, first: pd.DataFrame, test: str, tables: Tables) -> list[str]:
    own = first[(first["encoder"] == baseline_encoder(first)) | (first["first_stage_kind"] == LEXICAL)]
    baseline_rows = own[(own["backend"] == "exact")]
    if baseline_rows.empty:
        return []
    k = reference_k(baseline_rows)
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
    significant = tests["p_holm"].to_numpy() < ALPHA
    return ["## Significance against the baseline", "",
            f"Baseline: exact search, {baseline['encoder']}, K={baseline['k']} (test nDCG@10 "
            f"{ci(*t_interval(baseline['q_ndcg_at_10']))}). Systems, each chosen on dev: each ANN backend's fastest "
            f"cell reaching dev recall@K >= 0.95 ({baseline['encoder']}; BM25), and each reranking stage's dev-chosen "
            f"row among those that use its scores (fusion alpha > 0; at 0 a row ranks as its first stage); tested once "
            f"on the test queries: {_test_name(test)} on per-query nDCG@10, Holm-corrected "
            f"(statsmodels multipletests) over the {len(tests)} comparisons; queries improved / worsened. A reranked "
            "system's delta against the baseline includes its first stage's; its own stage's gain is its paired delta "
            "against that first stage (rerankers that add nothing on dev are left out). Shown: the "
            f"{int(significant.sum())} of {len(tests)} that differ after Holm (p < {ALPHA:g}); the others tie with the "
            "baseline; all in " + tables.link("significance", table) + ".", "",
            *([markdown_table(table[significant]), ""] if significant.any() else [])]


def _contributions(frame: pd.DataFrame, tables: Tables) -> list[str]:
    table = contribution_table(frame)
    if table.empty:
        return []
    shown = _one_backend_each(table)
    nothing = shown[shown["adds"] != "adds"]
    return ["## What each stage adds", "",
            "Each reranker over each first stage, and each fusion: the group's dev-chosen pipeline against the same "
            "pipeline without that stage (a fusion: against each member alone, same K), per-query nDCG@10 differences "
            "with 95% t-intervals and the one-sided paired p of a gain; dev decides, test is reported once. A stage "
            "that ties on dev, or is fused at alpha 0, adds nothing here and is not a candidate of its own. Shown over "
            "exact search where it was measured (the dense side's search is a lever of its own); every backend in "
            "`python -m bench contributions` and " + tables.link("contributions", table) + ".", "",
            markdown_table(shown[shown["adds"] == "adds"].drop(columns=["dataset", "pipeline", "adds"])), "",
            *(["Adds nothing here: " + "; ".join(f"{r['stage']} over {r['over']}" for _, r in nothing.iterrows()) + ".", ""]
              if len(nothing) else [])]


def _one_backend_each(table: pd.DataFrame) -> pd.DataFrame:
    """One row per stage, first stage and comparison: over exact search where measured, else the first backend."""
    encoder = table["over"].str.split(" · ").str[0]
    exact_first = table.assign(_encoder=encoder, _exact=~table["over"].str.endswith(" · exact")).sort_values(
        "_exact", kind="stable")
    kept = exact_first.drop_duplicates(["dataset", "stage", "_encoder", "against"]).index
    return table.loc[sorted(kept)]


def stage_plot_lines(picks: list[tuple[str, pd.Series]], plots_dir: Path, link_prefix: str) -> list[str]:
    """The picks' end-to-end latency split by stage (mean ms per query)."""
    if not picks:
        return []
    png = plots_dir / "latency_by_stage.png"
    _stage_plot(png, picks)
    return [f"Each pick's latency by stage: ![latency by stage]({link_prefix}{png.name})", ""]


def _best_of_each_type(cost: pd.DataFrame) -> pd.DataFrame:
    """The cost table's row with the highest dev nDCG@10 per encoder type, in the table's order."""
    kind = cost["encoder type"].str.split(" (", regex=False).str[0]
    return cost.loc[sorted(cost.assign(kind=kind).sort_values("_dev", ascending=False).drop_duplicates("kind").index)]


def dataset_why(frame: pd.DataFrame, plots_dir: Path, link_prefix: str, tables: Tables, test: str,
                scale: pd.DataFrame | None) -> list[str]:
    """Why one dataset's decisions are what they are (headings from level 3): what each stage adds, the cost table,
    the frontiers, then the levers; each short, with its full table linked."""
    first = frame[frame["stage"] == "first"]
    cost, notes = _cost_table(frame, scale)
    parts = [*_contributions(frame, tables),
             "### Cost per encoder type (the design note's table)", "",
             "Online: end to end per query, one query at a time, at the encoder's fastest cell with dev recall@K >= "
             "0.95 (the cross-encoder: its dev-chosen pipeline, rerank alone, then e2e). Offline: corpus encoding + "
             "index build (+ training). Memory: serialized index + float32 weights. Dev nDCG@10 of the exact cell and "
             "of the dev-chosen ANN cell. Shown: each encoder type's encoder with the highest dev nDCG@10; every "
             "encoder, its cell and the measured scale slopes: " + tables.link("cost", cost.drop(columns=["_dev"])), "",
             markdown_table(_best_of_each_type(cost).drop(columns=["scale", "measured on", "_dev"])), "",
             *([f"({'; '.join(notes)})", ""] if notes else [])]
    dense = first[first["first_stage_kind"] != LEXICAL]  # BM25's recall@K is against BM25 itself: not comparable
    parts += ["### Frontiers (dev quality)", "",
              "Parameter short names: " + ", ".join(f"{v} = {k}" for k, v in short_names_of(frame["backend"]).items())
              + ".", ""]
    parts += _ndcg_frontier(frame, plots_dir, link_prefix, tables)[2:]
    parts += _recall_frontiers(dense, plots_dir, link_prefix, tables)[2:]
    parts += _memory_section(dense, plots_dir, link_prefix, tables)[2:]
    parts += _k_by_r(frame, plots_dir, link_prefix, tables)
    parts += _significance(frame, first, test, tables)
    levers = [*_encoder_types(first, test, tables), *_hybrid_section(first, test, tables),
              *_precision_section(first, test, tables), *_chunking_section(first, test, tables),
              *_seen_section(frame, test, tables)]
    return [line.replace("## ", "### ", 1) if line.startswith("## ") else line for line in parts + levers]
