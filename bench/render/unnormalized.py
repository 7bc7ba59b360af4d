"""Inner product without normalization: each encoder against its normalized twin (quality, paired), the norms' spread
(`python -m bench norms`' table, when given), and each backend family natively and through the MIPS reduction."""

from __future__ import annotations

import pandas as pd

from bench.analysis import t_interval, with_derived
from bench.analysis.unnormalized import mips_backends, normalization_pairs
from bench.core.figures import ci, timing_text
from bench.render.markdown import Tables, _p, _span, markdown_table


def _norms_line(norms: pd.DataFrame, encoders: set[str]) -> str:
    shown = norms[norms["encoder"].isin(encoders)]
    if shown.empty:
        return ""
    parts = [f"{r['encoder']} {r['vectors']} {r['p1']:.2f} / {r['p50']:.2f} / {r['p99']:.2f}" for _, r in shown.iterrows()]
    share = shown["top-10 share of the largest 1% norms"].dropna() if "top-10 share of the largest 1% norms" in shown \
        else pd.Series(dtype=float)
    return ("Norms, 1st / 50th / 99th percentile (`python -m bench norms`): " + "; ".join(parts)
            + (f". Popularity by norm: {share.iloc[0]:.1%} of the exact inner-product top 10 comes from the 1% "
               "largest-norm documents (1% if norms did not matter)." if len(share) else "."))


def unnormalized_section(frame: pd.DataFrame, norms: pd.DataFrame | None = None, tables: Tables | None = None) -> str:
    """Markdown: normalized vs raw inner product per encoder (exact search, test and dev, paired), the norms, and each
    backend family's cheapest setting at dev recall@10 >= 0.95 on the raw vectors, natively and through the reduction."""
    frame = frame if "config" in frame else with_derived(frame)
    pairs = normalization_pairs(frame)
    if not pairs:
        return ""
    quality = []
    for pair in pairs:
        test, dev = pair.delta("test"), pair.delta("dev")
        quality.append({"encoder (raw / normalized)": f"{pair.raw['encoder']} / {pair.normalized['encoder']}",
                        "test nDCG@10 normalized": ci(*t_interval(pair.normalized["q_ndcg_at_10"])),
                        "test nDCG@10 raw inner product": ci(*t_interval(pair.raw["q_ndcg_at_10"])),
                        "paired delta test (p)": f"{ci(test[0], test[1])} ({_p(test[2])})",
                        "paired delta dev (p)": f"{ci(dev[0], dev[1])} ({_p(dev[2])})", "queries test / dev":
                        f"{test[3]} / {dev[3]}"})
    lines = ["## Inner product without normalization", "",
             "Each encoder served on its raw vectors (`normalize = false`: scored by inner product, norms kept) against "
             "the same encoder L2-normalized; exact search, nDCG@10 with 95% t-intervals, the delta paired per query "
             "(raw minus normalized).", "", markdown_table(pd.DataFrame(quality)), ""]
    if norms is not None and len(norms):
        line = _norms_line(norms, {p.raw["encoder"] for p in pairs})
        lines += [line, ""] if line else []
    backends = mips_backends(frame)
    if len(backends):
        def setting(row: pd.Series) -> str:
            knob = row["setting"].split(" / ")[-1]
            return (f"{knob} ({row['test_recall']:.3f}, {timing_text(row['search_p95_ms'])} ms)"
                    + ("" if row["reaches"] else " not reached"))

        parts = []
        for _, model_rows in backends.groupby("model", sort=False):
            native = model_rows[~model_rows["reduction"]]
            name = (native if len(native) else model_rows)["encoder"].iloc[0]
            items = []
            for backend, group in model_rows.groupby("backend", sort=True):
                sides = [group[group["reduction"] == flag] for flag in (False, True)]
                items.append(f"{backend} " + " / ".join(setting(side.iloc[0]) if len(side) else "-" for side in sides))
            parts.append(f"{name}: " + ", ".join(items))
        shown = backends.assign(search_p95_ms=backends["search_p95_ms"].map(timing_text))
        lines += ["Each backend family on the raw vectors, natively / through the reduction to nearest neighbour "
                  "(`mips_reduction = true`: documents get sqrt(M^2 - |x|^2), queries 0), at the lowest-p95 setting whose "
                  "dev recall@10 against exact inner product reaches 0.95 (test recall@10, p95 of one query on one thread; "
                  "'-': not run through the reduction): "
                  + "; ".join(parts) + ". Settings and recall: " + (tables or Tables(None)).link("unnormalized-backends", shown),
                  ""]
    lines[-2] += " " + _span(frame)  # the paragraph above says which runs its rows come from
    return "\n".join(lines)
