"""The encoder-size lever (issue 30): a larger pretrained bi-encoder against the smaller one per dataset: quality
against the published figure, alone and in the BM25 hybrid (paired on test), and what it costs."""

from __future__ import annotations

import json

import pandas as pd

from bench.analysis import Budget, NothingFits, recommend, t_interval, with_derived
from bench.analysis.encoder_size import encoder_rows, paired_delta, texts_per_s
from bench.core.figures import ci, timing_text
from bench.render.markdown import _p, _span, markdown_table

def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def _hybrid_text(row: pd.Series | None) -> str:
    if row is None:
        return "not run"
    weight = json.loads(row["search_params"]).get("weight")
    return f"{ci(*t_interval(row['q_ndcg_at_10']))} (w {weight:.2f}, dev {row['dev_ndcg_at_10']:.3f})"


SIZE_BUDGETS = (Budget(100, 1000), Budget(300, 1000))


def _picks_text(rows: pd.DataFrame) -> str:
    """What `bench recommend` picks from these rows (both models' pipelines) at each budget, and the dev-best it
    tied with when that is another pipeline."""
    parts = []
    for budget in SIZE_BUDGETS:
        try:
            choice = recommend(rows, budget)
        except NothingFits:
            parts.append(f"{budget.p95_ms:g} ms: nothing fits")
            continue
        pick, best = choice.pick, choice.dev_best

        def name(row: pd.Series) -> str:
            return f"{row['encoder']} ({row['backend']}, K={row['k']}; dev {row['dev_ndcg_at_10']:.3f}, e2e p95 " \
                   f"{timing_text(row['e2e_p95_ms'])} ms)"

        parts.append(f"{budget.p95_ms:g} ms: {name(pick)}" + ("" if best["cell_id"] == pick["cell_id"] else
                                                              f", tied on dev with the dev-best {name(best)}"))
    return "; ".join(parts)


def encoder_size_section(frame: pd.DataFrame) -> str:
    """Markdown: per dataset and pretrained model, exact test nDCG@10 against the published figure, the hybrid with
    its dev-chosen weight, encode cost, bytes per vector, query time and HNSW; then the paired deltas against the
    smallest model. Empty when no dataset has two pretrained models."""
    datasets = {d: e for d, e in encoder_rows(frame).items() if len(e) >= 2}
    if not datasets:
        return ""
    table, deltas, picks = [], [], []
    for dataset, encoders in datasets.items():
        smallest = encoders[0]
        for entry in encoders:
            exact, hnsw = entry.exact, entry.hnsw
            published = entry.published
            table.append({
                "dataset": dataset, "model": _short(exact["model"]),
                "dim, params": f"{int(exact['dim'])}, {exact['encoder_params'] / 1e6:.0f}M",
                "tokens": int(exact["max_seq_length"]),
                "exact test nDCG@10 (mean / published)": f"{ci(*t_interval(exact['q_ndcg_at_10']))}"
                + (f" ({exact['ndcg_at_10']:.4f} / {published:.4g})" if published is not None else ""),
                "BM25 hybrid test nDCG@10 (weight, dev)": _hybrid_text(entry.hybrid),
                "hybrid e2e p95 ms": "-" if entry.hybrid is None else timing_text(entry.hybrid["e2e_p95_ms"]),
                "corpus encode s (texts/s)": f"{timing_text(exact['corpus_encode_s'])} "
                                             f"({timing_text(texts_per_s(exact))})",
                "bytes/vector": f"{exact['index_bytes'] / exact['n_docs']:,.0f}",
                "query encode p50 ms": timing_text(exact["query_encode_p50_ms"]),
                "HNSW at dev recall 0.95: ef, p95 ms": "not reached" if hnsw is None else
                f"{json.loads(hnsw['search_params'])['ef']}, {timing_text(hnsw['search_p95_ms'])}",
            })
            if entry is smallest:
                continue
            def both(larger: pd.Series, smaller: pd.Series) -> str:
                test = paired_delta(larger, smaller)
                text = f"test {ci(test[0], test[1])} (p {_p(test[2])})"
                if larger["n_dev_queries"] > 0:
                    dev = paired_delta(larger, smaller, "dev")
                    text += f", dev {ci(dev[0], dev[1])} (p {_p(dev[2])})"
                return text

            text = (f"{dataset} ({int(exact['n_queries'])} test, {int(exact['n_dev_queries'])} dev queries): "
                    f"{_short(exact['model'])} minus {_short(smallest.exact['model'])}, alone {both(exact, smallest.exact)}")
            if entry.hybrid is not None and smallest.hybrid is not None:
                text += f"; in the hybrid {both(entry.hybrid, smallest.hybrid)}"
            deltas.append(text)
        derived = with_derived(frame[frame["dataset"] == dataset])
        picks.append(f"{dataset}: {_picks_text(derived)}")
    rows = pd.concat([e.exact for es in datasets.values() for e in es], axis=1).T
    lines = ["## The encoder-size lever", "",
             "Each pretrained bi-encoder alone (exact search, K = the smallest run) and fused with BM25 (convex, depth "
             "1000, the weight chosen on dev); test nDCG@10 with 95% t-intervals, beside the published exact-search "
             "figure (MTEB). Encode: the whole corpus once, on this host's threads (a corpus found in the cache keeps the "
             "seconds of the run that encoded it); query encode p50: one query, one thread; bytes per vector of the "
             "exact index (float32).", "",
             markdown_table(pd.DataFrame(table)), "",
             "nDCG@10 paired per query, larger minus smaller (two-sided paired t-test): " + ". ".join(deltas) + ". "
             f"Picked on dev from these rows (`python -m bench recommend FILE --p95-ms P --memory-mb "
             f"{SIZE_BUDGETS[0].memory_mb:g}`; ties go to the cheaper): " + ". ".join(picks) + ". " + _span(rows), ""]
    return "\n".join(lines)


__all__ = ["encoder_size_section"]
