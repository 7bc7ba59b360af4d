"""The encoder-size lever (issue 30): a larger pretrained bi-encoder against the smaller one per dataset: quality
against the published figure, alone and in the BM25 hybrid (paired on test), and what it costs."""

from __future__ import annotations

import json

import pandas as pd

from bench.analysis import t_interval
from bench.analysis.encoder_size import encoder_rows, paired_delta, texts_per_s
from bench.figures import ci, timing_text
from bench.render.markdown import _p, _span, markdown_table

def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def _hybrid_text(row: pd.Series | None) -> str:
    if row is None:
        return "not run"
    weight = json.loads(row["search_params"]).get("weight")
    return f"{ci(*t_interval(row['q_ndcg_at_10']))} (w {weight:.2f}, dev {row['dev_ndcg_at_10']:.3f})"


def encoder_size_section(frame: pd.DataFrame) -> str:
    """Markdown: per dataset and pretrained model, exact test nDCG@10 against the published figure, the hybrid with
    its dev-chosen weight, encode cost, bytes per vector, query time and HNSW; then the paired deltas against the
    smallest model. Empty when no dataset has two pretrained models."""
    datasets = {d: e for d, e in encoder_rows(frame).items() if len(e) >= 2}
    if not datasets:
        return ""
    table, deltas = [], []
    for dataset, encoders in datasets.items():
        smallest = encoders[0]
        for entry in encoders:
            exact, hnsw = entry.exact, entry.hnsw
            published = entry.published
            table.append({
                "dataset": dataset, "model": _short(exact["model"]),
                "dim, params": f"{int(exact['dim'])}, {exact['encoder_params'] / 1e6:.0f}M",
                "tokens": int(exact["max_seq_length"]),
                "exact test nDCG@10 (published)": f"{ci(*t_interval(exact['q_ndcg_at_10']))}"
                + (f" ({published:.4g})" if published is not None else ""),
                "BM25 hybrid test nDCG@10 (weight, dev)": _hybrid_text(entry.hybrid),
                "corpus encode s (texts/s)": f"{timing_text(exact['corpus_encode_s'])} "
                                             f"({timing_text(texts_per_s(exact))})",
                "bytes/vector": f"{exact['index_bytes'] / exact['n_docs']:,.0f}",
                "query encode p50 ms": timing_text(exact["query_encode_p50_ms"]),
                "HNSW at dev recall 0.95: ef, p95 ms": "not reached" if hnsw is None else
                f"{json.loads(hnsw['search_params'])['ef']}, {timing_text(hnsw['search_p95_ms'])}",
            })
            if entry is smallest:
                continue
            alone = paired_delta(exact, smallest.exact)
            text = (f"{dataset}: {_short(exact['model'])} minus {_short(smallest.exact['model'])}, alone "
                    f"{ci(alone[0], alone[1])} (p {_p(alone[2])})")
            if entry.hybrid is not None and smallest.hybrid is not None:
                fused = paired_delta(entry.hybrid, smallest.hybrid)
                text += f", in the hybrid {ci(fused[0], fused[1])} (p {_p(fused[2])})"
            deltas.append(text + f", {alone[3]} test queries")
    rows = pd.concat([e.exact for es in datasets.values() for e in es], axis=1).T
    lines = ["## The encoder-size lever", "",
             "Each pretrained bi-encoder alone (exact search, K = the smallest run) and fused with BM25 (convex, depth "
             "1000, the weight chosen on dev); test nDCG@10 with 95% t-intervals, beside the published exact-search "
             "figure (MTEB). Encode: the whole corpus once, on this host's threads (one run); query encode p50: one "
             "query, one thread; bytes per vector of the exact index (float32).", "",
             markdown_table(pd.DataFrame(table)), "",
             "Paired per test query, larger minus smaller: " + "; ".join(deltas) + ".", "", _span(rows), ""]
    return "\n".join(lines)


__all__ = ["encoder_size_section"]
