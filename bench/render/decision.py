"""The first screen: per dataset and budget, the pipeline to deploy, what it rests on, and its runnable block;
then the same question across datasets."""

from __future__ import annotations

import pandas as pd

from bench.analysis import (ALPHA, CONFIGURATION, LATENCY_TIE, NothingFits, Budget, recommend, recommend_over_mean,
                            t_interval)
from bench.analysis.decisions import PRICE_PER_CORE_HOUR, Decision
from bench.core.figures import ci, timing_text
from bench.render.markdown import markdown_table


def decision_lines(found: list[Decision], blocks: dict[str, str]) -> list[str]:
    """`blocks`: each pick's block file as a link target, by decision name."""
    rows = []
    for d in found:
        head = {"dataset": d.dataset, "p95 / memory budget": _budget_text(d.budget)}
        if d.choice is None:
            rows.append({**head, "deploy": "nothing fits"})
            continue
        pick, choice = d.choice.pick, d.choice
        marks = (" [documents seen in training]" if pick["saw_eval_docs"] else "") + (
            " [chosen on test]" if not pick["has_dev_queries"] else "")
        rows.append({**head, "deploy": pick["pipeline"] + marks,
                     "dev nDCG@10": ci(*choice.dev_interval()), "test nDCG@10": ci(*choice.test_interval()),
                     "e2e p95 ms": timing_text(d.e2e_ms[1]) + ("" if d.e2e_source == "composed run" else " (sweep)"),
                     "memory MB": f"{pick['memory_mb']:.0f}", "USD / 1M queries": timing_text(d.cost_per_million_usd),
                     "tied with": _tied_text(choice),
                     "block": f"[toml]({blocks[d.name]})" if d.name in blocks else "-"})
    dev_best = _dev_best_lines(found)
    return [markdown_table(pd.DataFrame(rows)), "", *([" ".join(dev_best), ""] if dev_best else []),
            f"Each pick: the dev-best pipeline within the budget, then the cheapest one whose dev nDCG@10 is not "
            f"significantly below it (one-sided paired t-test, p >= {ALPHA}; p95s within {LATENCY_TIE:.0%} tie, then "
            "less memory, then higher dev recall@K, then higher dev nDCG@10); test nDCG@10 is reported once, for the "
            "pick (95% t-intervals). Names: the model, the index and its settings (`MiniLM HNSW M=16 efC=200 ef=100`); "
            "`A + BM25, convex ...` a fusion of A with BM25; `, top K` only where K changes the top 10 (exact search, "
            "BM25 and fusions return the same top 10 for every K >= 10: one name for all K, the block names the K "
            "timed); `then <reranker> on the top R`; `#9dee` the first hex digits of trained weights' digest. "
            "e2e p95: the one figure the budget, the tie-break and this column read (p50 and p99 in the block): the "
            "composed run's where that cell has one (every query through every stage in one loop; 'Pipelines timed as deployed'), else the sweep "
            "row's (marked: a composed run measures more, so a cell without one competes at its sweep figure). "
            "Cost: the load test's where the pick was served under load at its host speed, else one core per query at "
            f"{PRICE_PER_CORE_HOUR} USD per core-hour. `block`: the pick as a file that `python -m bench run`, `load` "
            "and `check-pipeline` take verbatim; `python -m bench recommend` prints it for any budget.", ""]


def _tied_text(choice) -> str:
    """Who the pick ties with: the dev-best (itself, the same pipeline at another K, or another pipeline, named under
    the table)."""
    pick, best = choice.pick, choice.dev_best
    tied = f"{len(choice.ties) - 1} of {choice.candidates} tie"
    if best.name == pick.name:
        return f"the dev-best; {tied}"
    who = f"its K={best['k']}" if best["pipeline_name"] == pick["pipeline_name"] else "below"
    return f"ties the dev-best ({who}); {tied}"


def _budget_text(budget: Budget) -> str:
    """`50 ms / 200 MB`, `10 s / 1 GB`."""
    p95 = f"{budget.p95_ms / 1000:g} s" if budget.p95_ms >= 1000 else f"{budget.p95_ms:g} ms"
    memory = f"{budget.memory_mb / 1000:g} GB" if budget.memory_mb >= 1000 else f"{budget.memory_mb:g} MB"
    return f"{p95} / {memory}"


def _dev_best_lines(found: list[Decision]) -> list[str]:
    """The dev-best pipelines the table only points to, by name, with the budgets they are the dev-best of."""
    named: dict[tuple[str, str], list[str]] = {}
    for d in found:
        if d.choice is not None and d.choice.dev_best["pipeline_name"] != d.choice.pick["pipeline_name"]:
            best = d.choice.dev_best
            named.setdefault((d.dataset, f"{best['pipeline']} (dev {best['dev_ndcg_at_10']:.3f})"), []).append(
                _budget_text(d.budget))
    return [f"The dev-best on {dataset} at {', '.join(budgets)}: {name}; the pick ties with it on dev and costs less."
            for (dataset, name), budgets in named.items()]


def across_lines(frame: pd.DataFrame, budgets: list[Budget]) -> list[str]:
    """One pipeline for all datasets per budget (the mean of their dev nDCG@10), then each dataset's pick measured
    on the others."""
    datasets = sorted(frame["dataset"].unique())
    over = []
    for budget in budgets:
        head = {"budget": _budget_text(budget)}
        try:
            choice = recommend_over_mean(frame, budget)
        except NothingFits:
            over.append({**head, "pipeline": "nothing fits on every dataset"})
            continue
        pick = choice.pick
        over.append({**head, "pipeline": pick.iloc[0]["pipeline_name"], "mean dev nDCG@10": ci(*choice.interval("dev")),
                     "mean test nDCG@10": ci(*choice.interval()),
                     **{f"{d} test": ci(*t_interval(r["q_ndcg_at_10"])) for d, r in pick.iterrows()}})
    transfer = []
    for budget in budgets:
        for source in datasets:
            try:
                pick = recommend(frame[frame["dataset"] == source], budget).pick
            except NothingFits:
                continue
            for target in datasets:
                if target == source:
                    continue
                same = frame[(frame["dataset"] == target) & (frame[CONFIGURATION] == pick[CONFIGURATION])]
                try:
                    own = recommend(frame[frame["dataset"] == target], budget).pick
                    own_text = "the same pipeline" if own["pipeline_name"] == pick["pipeline_name"] else \
                        f"{own['pipeline_name']}: {ci(*t_interval(own['q_ndcg_at_10']))}"
                except NothingFits:
                    own_text = "nothing fits"
                transfer.append({"budget": _budget_text(budget), "chosen on": source,
                                 "pipeline": pick["pipeline_name"], "measured on": target,
                                 "its test nDCG@10 there": ci(*t_interval(same.iloc[0]["q_ndcg_at_10"])) if len(same)
                                 else "not measured", "that dataset's own pick": own_text})
    over, transfer = _merge_budgets(over), _merge_budgets(transfer)
    moved = [row for row in transfer if row["that dataset's own pick"] != "the same pipeline"]
    return ["## Across datasets", "",
            f"One pipeline for {', '.join(datasets)} (`recommend --over-mean`): the best mean of per-dataset dev nDCG@10 "
            "among pipelines that fit on every dataset, ties to the cheaper (worst-dataset p95); test reported once, "
            "interval of the mean of per-dataset means.", "", markdown_table(pd.DataFrame(over)), "",
            *(["Does a pick travel? Each dataset's pick, measured on the other datasets' test queries, beside that "
               "dataset's own pick under the same budget:", "", markdown_table(pd.DataFrame(moved)), ""] if moved else
              [f"Does a pick travel? Under every budget each dataset picks the same pipeline as the others "
               f"({len(transfer)} of {len(transfer)} comparisons; K may differ where it does not change the top 10): "
               "its test nDCG@10 on each dataset is in the table above." if transfer else "(no budget has a pick)",
               ""])]


def _merge_budgets(rows: list[dict]) -> list[dict]:
    """Budgets whose row is otherwise the same, as one row listing them."""
    merged: dict[tuple, dict] = {}
    for row in rows:
        key = tuple((k, v) for k, v in row.items() if k != "budget")
        if key in merged:
            merged[key]["budget"] += "; " + row["budget"]
        else:
            merged[key] = dict(row)
    return list(merged.values())
