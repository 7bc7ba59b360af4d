"""A distractor collection beside its base collection: what the added paragraphs cost each followed pipeline (paired
per query), each backend family at recall@10 0.95 at that size, and the recommender's picks there."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis import t_interval
from bench.analysis.distractors import dense_encoding, judged_text, picks_at_size, recall_at_size, size_pairs
from bench.core.figures import ci, timing_text
from bench.render.markdown import Tables, _span, markdown_table


def _size(rows: pd.DataFrame) -> str:
    return f"{int(rows['n_docs'].iloc[0]):,}"


def distractors_section(large: pd.DataFrame, base: pd.DataFrame, tables: Tables | None = None) -> str:
    """Markdown: the followed pipelines at both sizes (nDCG@10 and Judged@10 on test, paired delta), the backends'
    cheapest settings at recall@10 >= 0.95, the recommender's picks at the large size, and encoding cost."""
    if large.empty:
        return ""
    name = large["dataset"].iloc[0]
    pairs = size_pairs(large, base)
    table = pd.DataFrame([{
        "pipeline (chosen on dev at the large size)": p.large["pipeline"],
        f"nDCG@10 at {_size(base) if p.base is not None else '-'}": ci(*t_interval(p.base["q_ndcg_at_10"]))
        if p.base is not None else "not measured",
        f"nDCG@10 at {_size(large)}": ci(*t_interval(p.large["q_ndcg_at_10"])),
        "paired delta (queries)": (lambda d: f"{ci(d[0], d[1])} ({d[2]})" if d[2] else "-")(p.delta()),
        "Judged@10 base / large": f"{judged_text(p.base)} / {judged_text(p.large)}",
        "search p95 ms base / large": f"{timing_text(p.base['search_p95_ms']) if p.base is not None else '-'} / "
                                      f"{timing_text(p.large['search_p95_ms'])}",
        "e2e p95 ms at the large size": timing_text(p.large["e2e_p95_ms"]),
    } for p in pairs])
    lines = [f"## Scale on real data: {name}", "",
             f"SciFact's 300 test queries over its own {_size(base)} abstracts and over the same abstracts plus "
             f"{int(large['n_docs'].iloc[0]) - int(base['n_docs'].iloc[0]):,} English Wikipedia paragraphs (whole "
             "articles, seeded; `wikipedia-2015`, CC BY-SA 3.0) that nothing judges (`configs/scifact-wiki100k.toml` "
             "and `configs/scifact-base.toml`; models trained on SciFact's own splits, the same at both sizes). Each "
             "group is chosen on dev at the large size; the same pipeline is then read at both sizes. Test nDCG@10 "
             "with 95% t-intervals; the delta is paired per query (large minus base). Judged@10 (ir_measures): the "
             "share of the top 10 that SciFact's qrels judge; they list relevant abstracts only, so it is the share "
             "judged relevant, and a distractor in the top 10 lowers it. Latency, one query on one thread: the search "
             "stage at both sizes (what the added documents change; each size from its own run, so compare within a "
             "column with the runs' host-speed lines in mind), and the whole pipeline at the large size (per-sample "
             "sums of encode, search and rerank).", "",
             markdown_table(table), ""]
    backends = recall_at_size(large)
    if len(backends):
        shown = pd.DataFrame({
            "backend": backends["backend"],
            "cheapest setting at dev recall@10 >= 0.95": backends["setting"]
            + np.where(backends["reaches"], "", " (never reached: best shown)"),
            "dev / test recall@10": [f"{d:.3f} / {t:.3f}" for d, t in zip(backends["dev recall@10"],
                                                                         backends["test recall@10"])],
            "search p95 ms": backends["search p95 ms"].map(timing_text),
            "bytes per vector": backends["bytes per vector"].map("{:,.0f}".format),
            "build s": backends["build s"].map(timing_text), "settings tried": backends["settings tried"]})
        reached = backends[backends["reaches"]].sort_values("search p95 ms")
        lines += [f"Each backend family at {_size(large)} MiniLM vectors (384-d), the lowest-p95 setting whose dev "
                  "recall@10 against exact search reaches 0.95 (K = 10, one query on one thread): "
                  + "; ".join(f"{r['backend']} {timing_text(r['search p95 ms'])} ms at {r['bytes per vector']:,.0f} B"
                              for _, r in reached.iterrows())
                  + (f"; not reached: {', '.join(backends.loc[~backends['reaches'], 'backend'])}"
                     if (~backends["reaches"]).any() else "")
                  + ". Settings, recall and build time: " + (tables or Tables(None)).link("distractors-backends", shown),
                  ""]
    picks = []
    for budget, choice in picks_at_size(large):
        head = {"budget: p95 ms / memory MB": f"{budget.p95_ms:g} / {budget.memory_mb:g}"}
        if isinstance(choice, str):
            picks.append({**head, "pick": choice})
            continue
        pick = choice.pick
        picks.append({**head, "pick": pick["pipeline"], "dev nDCG@10": ci(*choice.dev_interval()),
                      "test nDCG@10": ci(*choice.test_interval()), "Judged@10": judged_text(pick),
                      "e2e p50 / p95 ms": f"{timing_text(pick['e2e_p50_ms'])} / {timing_text(pick['e2e_p95_ms'])}",
                      "memory MB": f"{pick['memory_mb']:,.0f}", "tied with": f"{len(choice.ties) - 1}"})
    lines += [f"The recommender at {_size(large)} documents (`python -m bench recommend results/scifact-wiki100k.parquet "
              "--p95-ms P --memory-mb M`; dev-chosen, ties go to the cheaper pipeline):", "",
              markdown_table(pd.DataFrame(picks)), ""]
    row = dense_encoding(large)
    if row is not None:
        lines += [f"Encoding the {int(row['n_docs']):,} texts with {row['encoder']} took "
                  f"{timing_text(row['corpus_encode_s'] / 60)} min ({timing_text(row['n_docs'] / row['corpus_encode_s'])}"
                  " texts/s: the run's wall time on this host's 2 cores, with whatever else ran; chunks of 10,000 "
                  "cached as they finish; a stopped run resumes with "
                  "`python -m bench run configs/scifact-wiki100k.toml`).", ""]
    lines[-2] += " " + _span(large)  # the paragraph above says which runs its rows come from
    return "\n".join(lines)
