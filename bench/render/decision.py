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
        head = {"dataset": d.dataset, "p95 / memory budget": f"{d.budget.p95_ms:g} ms / {d.budget.memory_mb:g} MB"}
        if d.choice is None:
            rows.append({**head, "deploy": "nothing fits"})
            continue
        pick, choice = d.choice.pick, d.choice
        marks = (" [documents seen in training]" if pick["saw_eval_docs"] else "") + (
            " [chosen on test]" if not pick["has_dev_queries"] else "")
        tied = len(choice.ties) - 1
        rows.append({**head, "deploy": pick["pipeline"] + marks,
                     "dev nDCG@10": ci(*choice.dev_interval()), "test nDCG@10": ci(*choice.test_interval()),
                     "e2e p50 / p95 / p99 ms": " / ".join(timing_text(v) for v in d.e2e_ms)
                     + ("" if d.e2e_source == "composed run" else " (sweep)"),
                     "memory MB": f"{pick['memory_mb']:.0f}", "USD / 1M queries": timing_text(d.cost_per_million_usd),
                     "tied with": (f"is the dev-best; {tied} of {choice.candidates} rows tie with it"
                                   if choice.dev_best.name == pick.name else
                                   f"the dev-best {choice.dev_best['pipeline_id']} (dev "
                                   f"{choice.dev_best['dev_ndcg_at_10']:.3f}) and {tied - 1} more of {choice.candidates} "
                                   "rows; this is the cheapest"),
                     "config": f"[{d.name}.toml]({blocks[d.name]})" if d.name in blocks else "-"})
    return [markdown_table(pd.DataFrame(rows)), "",
            f"Each pick: the dev-best pipeline within the budget, then the cheapest one whose dev nDCG@10 is not "
            f"significantly below it (one-sided paired t-test, p >= {ALPHA}; p95s within {LATENCY_TIE:.0%} tie, then "
            "less memory, then higher dev recall@K, then higher dev nDCG@10); test nDCG@10 is reported once, for the "
            "pick (95% t-intervals). Notation: `model · index` a first stage (the model's encoder over that index), "
            "`fuse[rule](A, B)` a fusion of two first stages, `X % K` the top K of X, `>> reranker % R` then the "
            "reranker re-scores the top R, `@1a2b3c4d` a model's weights (the first 8 hex digits of their digest), "
            "`|max_length=192` its variant. "
            "e2e from the pick's composed "
            "run (every query through every stage in one loop; 'Pipelines timed as deployed'), else the sweep row "
            "(marked). Cost: the load test's where the pick was served under load, else one core per query at "
            f"{PRICE_PER_CORE_HOUR} USD per core-hour. `config`: the pick as a block that `python -m bench run`, `load` "
            "and `check-pipeline` take verbatim; `python -m bench recommend` prints it for any budget.", ""]


def across_lines(frame: pd.DataFrame, budgets: list[Budget]) -> list[str]:
    """One pipeline for all datasets per budget (the mean of their dev nDCG@10), then each dataset's pick measured
    on the others."""
    datasets = sorted(frame["dataset"].unique())
    over = []
    for budget in budgets:
        head = {"budget": f"{budget.p95_ms:g} ms / {budget.memory_mb:g} MB"}
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
                    own_text = "the same pipeline" if own[CONFIGURATION] == pick[CONFIGURATION] else \
                        f"{own['pipeline_name']}: {ci(*t_interval(own['q_ndcg_at_10']))}"
                except NothingFits:
                    own_text = "nothing fits"
                transfer.append({"budget": f"{budget.p95_ms:g} ms / {budget.memory_mb:g} MB", "chosen on": source,
                                 "pipeline": pick["pipeline_name"], "measured on": target,
                                 "its test nDCG@10 there": ci(*t_interval(same.iloc[0]["q_ndcg_at_10"])) if len(same)
                                 else "not measured", "that dataset's own pick": own_text})
    over, transfer = _merge_budgets(over), _merge_budgets(transfer)
    return ["## Across datasets", "",
            f"One pipeline for {', '.join(datasets)} (`recommend --over-mean`): the best mean of per-dataset dev nDCG@10 "
            "among pipelines that fit on every dataset, ties to the cheaper (worst-dataset p95); test reported once, "
            "interval of the mean of per-dataset means.", "", markdown_table(pd.DataFrame(over)), "",
            "Does a pick travel? Each dataset's pick, measured on the other datasets' test queries, beside that "
            "dataset's own pick under the same budget:", "", markdown_table(pd.DataFrame(transfer)) if transfer else "(no budget has a pick)", ""]


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
