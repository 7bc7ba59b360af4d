"""The reranker's speed levers (issue 30): each variant against the reference reranker of the same run (pairs per
second, rerank p50/p95 as served, dev nDCG@10 delta paired), adaptive depth against fixed R, and what the variants
change in the budget picks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.analysis import LATENCY_TIE, Budget, NothingFits, recommend, t_interval, with_derived
from bench.analysis.rerankers import REFERENCE_RERANKER, dev_best_within, fixed_r_at_equal_quality, variant_table
from bench.core.figures import ci, host_name, timing_text
from bench.render.markdown import Tables, _p, markdown_table

LEVER_BUDGETS = (Budget(100, 500), Budget(300, 500))


def _variant_name(row: pd.Series) -> str:
    return f"{row['runtime']} {row['precision']} len {row['max_length']}"


def _lever_rows(table: pd.DataFrame) -> pd.DataFrame:
    """One line per variant and thread count at alpha 1 (the cross-encoder alone), fixed depth: speed at R = 20 and 50
    and the dev delta against the reference with its paired interval."""
    fixed = table[(table["depth"] == "fixed") & (table["alpha"] == "1")]
    out = []
    for (name, threads), rows in fixed.groupby(["reranker", "threads"], sort=False):
        by_r = {int(r["R"]): r for _, r in rows.iterrows()}
        first = rows.iloc[0]
        entry = {"variant": f"{name} ({_variant_name(first)})", "threads": int(threads),
                 "pairs/s": timing_text(float(np.nanmean([r["pairs/s"] for r in by_r.values()])))}
        for r in (20, 50):
            row = by_r.get(r)
            entry[f"R={r} p50 / p95 ms"] = "" if row is None else \
                f"{timing_text(row['rerank p50 ms'])} / {timing_text(row['rerank p95 ms'])}"
        for r in (20, 50):
            row = by_r.get(r)
            entry[f"dev delta R={r} (p worse)"] = "" if row is None else \
                f"{ci(row['dev delta'], row['dev delta ci'])} ({_p(row['dev p (worse)'])})"
        out.append(entry)
    return pd.DataFrame(out).sort_values(["threads", "variant"], kind="stable") if out else pd.DataFrame()


def _adaptive_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Each adaptive-depth row beside the cheapest fixed R of the same variant, threads and alpha whose dev nDCG@10 is
    at least as high (equal dev quality), by e2e p95."""
    out = []
    for _, row in table[table["depth"] != "fixed"].iterrows():
        fixed = fixed_r_at_equal_quality(table, row)
        out.append({"variant, alpha": f"{row['reranker']}, {row['alpha']}", "threads": int(row["threads"]),
                    "rule (chosen on dev), up to R": f"{row['depth'].split(': ', 1)[-1]}, {row['R']}",
                    "pairs/query mean / p95": f"{row['pairs/query mean']:.1f} / {row['pairs/query p95']:.0f}",
                    "dev nDCG@10": f"{row['dev nDCG@10']:.3f}", "e2e p95 ms": timing_text(row["e2e p95 ms"]),
                    "top 10 differs from full depth": f"{row['top 10 changed vs full depth']:.0%}",
                    "fixed R at equal dev quality: R, e2e p95 ms": "none" if fixed is None else
                    f"{fixed['R']}, {timing_text(fixed['e2e p95 ms'])}"})
    return pd.DataFrame(out)


def _pick_text(frame: pd.DataFrame, budget: Budget) -> str:
    try:
        choice = recommend(frame, budget)
    except NothingFits:
        return "nothing fits"
    pick = choice.pick
    return (f"{pick['pipeline']}: dev {ci(*t_interval(pick['dev_q_ndcg_at_10']))}, e2e p95 "
            f"{timing_text(pick['e2e_p95_ms'])} ms")


def _best_text(rows: pd.DataFrame, budget: Budget) -> str:
    """The dev-best of `rows` (derived) within `budget` (what would have to beat the pick), or that none fits."""
    best = dev_best_within(rows, budget)
    if best is None:
        return "none fits"
    return (f"{best['reranker']} R={best['r']} alpha {best['fusion_alpha']:g}"
            + (" adaptive" if best["rerank_depth"] == "adaptive" else "")
            + f": dev {ci(*t_interval(best['dev_q_ndcg_at_10']))}, e2e p95 {timing_text(best['e2e_p95_ms'])} ms")


def rerank_variants_section(variants: pd.DataFrame, reference: str = "", main: pd.DataFrame | None = None,
                            tables: Tables | None = None) -> str:
    """Markdown: the variant table (alpha 1, fixed R), the adaptive-depth table, and the picks at 100 and 300 ms
    before and after the variants join `main`'s rows (the same dataset's sweep)."""
    reference = reference or REFERENCE_RERANKER
    tables = tables or Tables(None)
    derived = with_derived(variants)
    table = variant_table(derived, reference)
    table["threads"] = table["timed queries x threads"].str.split(" x ").str[-1].astype(int)
    first = derived[derived["stage"] == "first"]
    stage = first.loc[first["e2e_p95_ms"].idxmax(), "pipeline"] if len(first) else "its first stage"
    lines = ["## The reranker's cost: speed levers and adaptive depth", "",
             f"Each cross-encoder variant against {reference} (torch fp32) over the same first-stage lists ({stage}), "
             "scored as served: one query's R pairs per call, on the threads given; dev nDCG@10 delta paired per dev "
             "query, with the one-sided p of 'worse than the reference' (the cross-encoder alone, alpha 1). "
             "`python -m bench reranker-variants` prints every row (alphas chosen on dev too): "
             + tables.link("rerank-variants", table), ""]
    levers = _lever_rows(table)
    if len(levers):
        lines += [markdown_table(levers), ""]
    shown_r = 20 if (table["R"] == 20).any() else int(table["R"].min())
    adaptive = _adaptive_rows(table[(table["R"] == shown_r) | (table["depth"] == "fixed")])
    if len(adaptive):
        shown = (adaptive[adaptive["variant, alpha"].str.endswith(", 1") & (adaptive["threads"] == 1)]
                 if (adaptive["threads"] == 1).any() else adaptive)
        lines += [f"Adaptive depth (bench.run.adaptive) up to R = {shown_r}: score in steps, stop when the rule chosen on "
                  "dev says the rest will not enter the top 10; beside the cheapest fixed R of the same variant with at "
                  "least its dev nDCG@10 (alpha 1, one thread; pairs per query mean, e2e p95 adaptive against fixed): "
                  + "; ".join(f"{v.removesuffix(', 1')} ({r.rsplit(', ', 1)[0]}) {p.split(' / ')[0]} pairs, {e} ms "
                              f"against R = {f}" + (" ms" if f != "none" else "")
                              for v, r, p, e, f in zip(shown["variant, alpha"], shown["rule (chosen on dev), up to R"],
                                                       shown["pairs/query mean / p95"], shown["e2e p95 ms"],
                                                       shown["fixed R at equal dev quality: R, e2e p95 ms"]))
                  + ". Every row: " + tables.link("rerank-adaptive", adaptive), ""]
    if main is not None and len(main):
        raw = main[[c for c in main.columns if c in variants.columns]]
        # the new pipelines only: the variants' rerank rows on the sweep's threads (their first stages are the sweep's
        # pipelines timed in another run: the sweep's own rows stand for them)
        served = variants[(variants["stage"] == "rerank") & variants["rerank_threads"].fillna(1).astype(int).isin(
            set(main.loc[main["stage"] == "rerank", "rerank_threads"].dropna().astype(int)) or {1})]
        after = pd.concat([raw, served], ignore_index=True).drop_duplicates(["cell_id", "host_id"], keep="first")
        # derived once: recommend and the budget filter would otherwise derive every frame again per budget
        main, after, served = with_derived(raw), with_derived(after), with_derived(served) if len(served) else served
        rows = []
        for b in LEVER_BUDGETS:
            before, after_text = _pick_text(main, b), _pick_text(after, b)
            rows.append({"budget": f"{b.p95_ms:g} ms / {b.memory_mb:g} MB", "before (the sweep)": before,
                         "after (with the variants)": "the same" if after_text == before else after_text,
                         "the variants' dev-best within it": _best_text(served, b)})
        lines += ["What the variants change in the picks (`python -m bench recommend` over the sweep, then over the "
                  "sweep and the variants' reranked pipelines on the sweep's threads):", "", markdown_table(pd.DataFrame(rows)), ""]
    return "\n".join(lines)


def _int8_verdicts(table: pd.DataFrame) -> dict[tuple, str]:
    """Per int8 variant and alpha: whether it holds against fp32 on each host's int8 kernels, with the paired delta."""
    out = {}
    for (variant, alpha), rows in table[table["precision"] == "int8"].groupby(["reranker", "alpha"], sort=False):
        kinds = [f"{k} {'holds' if v.startswith('yes') else 'worse'} ({ci(m, h)})" for k, v, m, h in
                 zip(rows["int8 kernels"], rows["int8 holds"], rows["dev delta"], rows["dev delta ci"])]
        out[(variant, alpha)] = f"{variant} at alpha {alpha}: {'; '.join(kinds)}"
    return out


def int8_isa_summary(table: pd.DataFrame) -> str:
    """The report's paragraph on int8 per instruction set, answer first: which int8 variants hold their dev quality
    against fp32 on every host's kernels, which do not (with the paired deltas), and what int8 buys on each (the p50
    speed-up over fp32 torch at the same length, one thread); `python -m bench int8-isa` prints every row."""
    table = table[table["timed queries x threads"].str.endswith(" x 1")] if len(table) else table
    if table.empty:
        return ""
    int8 = table[table["precision"] == "int8"]
    verdicts = int8.groupby(["reranker", "alpha"], sort=False)["int8 holds"].agg(
        lambda v: "holds" if all(x.startswith("yes") for x in v) else "worse" if not any(x.startswith("yes") for x in v)
        else "differs")
    kept = [f"{variant} at alpha {alpha}" for (variant, alpha), v in verdicts.items() if v == "holds"]
    said = _int8_verdicts(table)
    others = [said[key] for key, v in verdicts.items() if v != "holds"]
    speed = []
    for (runtime, length), rows in int8[int8["alpha"] == "1"].groupby(["runtime", "max_length"], sort=False):
        speed.append(f"{runtime} {length} tokens " + " against ".join(
            f"{x:.2f}x ({host_name(h)})" for x, h in zip(rows["speed-up p50"], rows["host"])))
    ratios = [r["speed-up p50"].max() / r["speed-up p50"].min()
              for _, r in int8[int8["alpha"] == "1"].groupby(["runtime", "max_length"]) if r["host"].nunique() > 1]
    lead = ("quality travels" if "differs" not in set(verdicts) else "quality does not travel everywhere") + (
        ", speed does not" if any(x > 1 + LATENCY_TIE for x in ratios) else "")
    sets = " and ".join(f"{host_name(h)}: int8 kernels {k}" for k, h in table[["int8 kernels", "host"]].drop_duplicates().itertuples(
        index=False))
    return (f"**int8 on each instruction set** ({sets}; R = 20, dev delta against fp32 torch at the same length, paired "
            f"over the dev queries; `python -m bench int8-isa` prints every row): {lead}. "
            f"{len(kept)} of {len(verdicts)} int8 variants (at an alpha) hold on every set measured"
            + (f"; not: {'; '.join(others)}" if others else "") + ". The p50 speed-up over fp32 on one thread: "
            + "; ".join(speed) + ". A pick that takes int8 for its speed holds its quality on either set; its latency "
            "has to be re-checked on the serving host's.\n")


def int8_isa_section(table: pd.DataFrame) -> str:
    """What int8 costs on each instruction set: per host, each int8 variant's dev delta against fp32 torch at the same
    max_length (paired, 95% interval) and its rerank latency beside fp32's; the answer first."""
    if table.empty:
        return "No int8 rerank rows at R = 20 with an fp32 torch row of the same max_length."
    verdicts = list(_int8_verdicts(table).values())
    shown = table.assign(**{
        "variant": table["reranker"], "dev delta vs fp32": [ci(m, h) for m, h in zip(table["dev delta"],
                                                                                     table["dev delta ci"])],
        "dev p (worse)": table["dev p (worse)"].map(_p), "rerank p50 / p95 ms": [
            f"{timing_text(a)} / {timing_text(b)}" for a, b in zip(table["rerank p50 ms"], table["rerank p95 ms"])],
        "speed-up p50": table["speed-up p50"].map("{:.2f}x".format), "kernel ms": table["calibration ms"].map(
            "{:.3f}".format)})
    columns = ["int8 kernels", "host", "variant", "runtime", "max_length", "alpha", "dev nDCG@10", "dev delta vs fp32",
               "dev p (worse)", "int8 holds", "rerank p50 / p95 ms", "speed-up p50", "timed queries x threads",
               "kernel ms"]
    lines = ["Does the int8 reranker hold on each instruction set (dev delta against fp32 torch at the same length, "
             "R = 20, paired over the dev queries; holds = not significantly worse at 0.05, so the cheaper int8 is "
             "taken)?", *(f"- {v}" for v in verdicts), "",
             markdown_table(shown[columns], floatfmt=".4f"),
             "", "Latencies compare only within one host (the kernel column is each host's calibration kernel)."]
    return "\n".join(lines)
