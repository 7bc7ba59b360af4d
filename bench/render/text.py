"""What the command line prints: `recommend` (the pick, what it rests on, its pipeline block), `summary` (one line
per group, at most WIDTH characters) and `contributions`."""

from __future__ import annotations

import pandas as pd

from bench.analysis import ALPHA, MeanChoice, t_interval
from bench.analysis.decisions import Decision, pipeline_block
from bench.core.figures import ci, timing_text
from bench.core.instruction_sets import isa_dependent_runtimes

WIDTH = 160  # the widest line `summary` prints
BLOCK_HEAD = "pipeline block (python -m bench run / load / check-pipeline take it verbatim, saved as a .toml file):"


def pick_source(rows: pd.DataFrame) -> str:
    n_dev = int(rows["n_dev_queries"].iloc[0])
    return f"{n_dev} dev queries: {rows['dev_source'].iloc[0]}" if n_dev else \
        "NO dev queries: chosen on the test queries themselves"


def latency_lines(decision: Decision) -> str:
    """The pick's end-to-end figures, the ones the budget read: its composed run's where one exists (the sweep row's
    beside them), else the sweep row's."""
    pick = decision.choice.pick
    column = "sweep_e2e_{}_ms" if decision.e2e_source == "composed run" else "e2e_{}_ms"
    sweep = (" / ".join(f"{q} {timing_text(pick.get(column.format(q), float('nan')))}" for q in ("p50", "p95", "p99"))
             + f" ms ({pick.get('e2e_method', 'unknown method')}, {pick.get('e2e_queries', '?')} queries)")
    if decision.e2e_source != "composed run":
        return (f"  end-to-end {sweep}, the figure the budget read; not timed as a composed run on this host "
                "(python -m bench composed)\n")
    p50, p95, p99 = (timing_text(v) for v in decision.e2e_ms)
    return (f"  end-to-end as deployed: p50 {p50} / p95 {p95} / p99 {p99} ms (composed run; the figure the budget "
            f"read)\n  the sweep row's: {sweep}\n")


def recommendation_text(decision: Decision, rows: pd.DataFrame, top: int) -> str:
    choice = decision.choice
    pick = choice.pick
    seen = "  [a model in it saw documents the evaluation queries judge, in training]\n" if pick["saw_eval_docs"] else ""
    text = (f"{decision.dataset}: recommended {pick['pipeline']}\n{seen}"
            f"  dev nDCG@10 {ci(*choice.dev_interval())} ({pick_source(rows)}), test nDCG@10 "
            f"{ci(*choice.test_interval())} (95% t-intervals; test reported once, for this pick)\n"
            f"  recall@K {pick['recall_at_k']:.3f}, memory {pick['memory_mb']:.1f} MB, "
            f"{timing_text(decision.cost_per_million_usd)} USD per 1M queries ({decision.cost_source})\n"
            f"{latency_lines(decision)}"
            f"  rule: dev-best {choice.dev_best['pipeline']} (dev {choice.dev_best['dev_ndcg_at_10']:.3f}); "
            f"{len(choice.ties)} of {choice.candidates} rows within the budget are not significantly below it on dev "
            f"(one-sided paired t-test, p >= {ALPHA}); the cheapest of them is the pick (its p = {choice.p_vs_best:.2g})\n")
    others = choice.ties.drop(index=pick.name).sort_values(["e2e_p95_ms", "memory_mb"]).head(top - 1)
    if len(others):
        text += "  other tied rows, cheapest first:\n" + "\n".join(
            f"    {r['dev_ndcg_at_10']:.3f} dev, {timing_text(r['e2e_p95_ms'])} ms p95, {r['memory_mb']:.1f} MB: "
            f"{r['pipeline']}" for _, r in others.iterrows()) + "\n"
    return text + int8_note(pick) + f"  {BLOCK_HEAD}\n\n{pipeline_block(decision)}"


def int8_note(pick: pd.Series) -> str:
    """A pick whose quality rests on int8 kernels holds for the instruction set it was measured on (bench.core.env)."""
    if not isa_dependent_runtimes(pick):
        return ""
    level = pick.get("int8_level") or "not recorded"
    return (f"  [its quality rests on int8 kernels ({', '.join(isa_dependent_runtimes(pick))}; measured on int8 kernel "
            f"family: {level}): on a host of another instruction set it is scored again, `python -m bench recheck`; "
            "AVX2 without VNNI quantizes otherwise, `python -m bench int8-isa` shows what it costs there]\n")


def over_mean_text(choice: MeanChoice, datasets: list[str]) -> str:
    pick = choice.pick.iloc[0]
    return (f"over the mean of {len(datasets)} datasets ({', '.join(datasets)}; each weighs the same): recommended "
            f"{pick['pipeline_name']}\n  mean dev nDCG@10 {ci(*choice.interval('dev'))}, mean test nDCG@10 "
            f"{ci(*choice.interval())} (95% intervals of the mean of per-dataset means; test reported once)\n"
            + "".join(f"  {d}: {r['pipeline']}\n    test nDCG@10 {ci(*t_interval(r['q_ndcg_at_10']))}, e2e p95 "
                      f"{timing_text(r['e2e_p95_ms'])} ms, memory {r['memory_mb']:.1f} MB\n" for d, r in choice.pick.iterrows())
            + f"  rule: mean-dev-best {choice.dev_best.iloc[0]['pipeline_name']}; {choice.ties} of {choice.candidates} "
            f"pipelines that fit on every dataset are not significantly below it (one-sided t-test on the mean of "
            f"per-dataset paired differences, p >= {ALPHA}); the cheapest (worst-dataset p95) is the pick")


def replay_text(results) -> str:
    """The pruning replay (bench.analysis.pruning.replay) as a table, the verdict first."""
    table = pd.DataFrame([{"dataset": r.dataset, "rule": r.rule, "rows skipped": f"{r.skipped} of {r.rows}",
                           "picks skipped": r.picks_skipped, "ties skipped": r.ties_skipped,
                           "ties skipped without a kept twin": r.ties_lost,
                           "decision again: same or tied": f"{r.picks_kept} of {r.budgets}"} for r in results])
    strict = [r for r in results if r.safe]
    return (f"{len(strict)} of {len(results)} (dataset, rule) replays skip no pick, no tie without a kept twin (the "
            f"same per-query dev nDCG@10), and decide the same again; the others: "
            + ("; ".join(f"{r.dataset} {r.rule}: {r.picks_skipped} picks, {r.ties_lost} ties without a twin skipped, "
                         f"{r.picks_kept} of {r.budgets} decisions same or tied" for r in results if not r.safe)
               or "none") + "\n\n"
            + table.to_string(index=False) + "\n\nties skipped and picks skipped count (budget, row) pairs over the "
            "budgets; 'decision again': the decision made on the rows left picks the same row or one not significantly "
            "below it on dev (one-sided paired t, p >= 0.05)")


def summary_text(rows: pd.DataFrame, total: int, every_row: bool, k: int | None = None, ks=()) -> str:
    """One line per row within WIDTH characters, the pipeline's name whole (on a line of its own where it does not
    fit). `k`: the K asked for;
    `ks`: the Ks the files hold (said when none of their rows has K = `k`)."""
    if rows.empty:
        held = ", ".join(str(int(v)) for v in sorted(set(ks)))
        return f"no rows at K = {k} (the files hold K = {held}: summary --k one of them, or no --k)" if k and held \
            else "no rows"
    table = pd.DataFrame({
        "dataset": rows["dataset"], "K": rows["k"],
        "recall@K": rows["recall_at_k"].map("{:.3f}".format), "dev nDCG@10": rows["dev_ndcg_at_10"].map("{:.3f}".format),
        "test nDCG@10": [f"{m:.3f}±{h:.3f}" for m, h in (t_interval(v) for v in rows["q_ndcg_at_10"])],
        "e2e p95 ms": rows["e2e_p95_ms"].map(timing_text), "MB": (rows["index_bytes"] / 2**20).map("{:.0f}".format),
        "pipeline": rows["pipeline"],
    }).sort_values(["dataset", "pipeline", "K"])
    numbers = table.drop(columns=["pipeline"]).to_string(index=False).splitlines()
    lines = [numbers[0] + "  pipeline"]
    for line, name in zip(numbers[1:], table["pipeline"]):  # the name whole, on the next line where it does not fit
        lines += [f"{line}  {name}"] if len(line) + 2 + len(name) <= WIDTH else [line, f"    {name}"]
    note = (f"{len(table)} of {total} rows" + ("" if every_row else " (per dataset, encoder, backend, K and rerank "
            "stage: the fastest cell reaching dev recall@K >= 0.95; --all for every row)"))
    return "\n".join([*lines, "", note, "test nDCG@10 with its 95% t-interval; MB: the index; the pipeline as the "
                      "report and `recommend` name it"])


def contributions_text(table: pd.DataFrame) -> str:
    if table.empty:
        return "no reranked or fused pipelines"
    lines = ["What each added stage contributes: nDCG@10 of the dev-chosen pipeline of each group minus the same "
             "pipeline without that stage (a fusion: minus each member alone), per query; 95% t-intervals, one-sided "
             "paired p of a gain; dev decides, test is reported once. A stage that ties on dev, or is fused at alpha "
             "0, adds nothing here and is not a candidate of its own.", ""]
    for dataset, rows in table.groupby("dataset"):
        lines += [f"{dataset}:", rows.drop(columns=["dataset", "pipeline"]).to_string(index=False), ""]
    return "\n".join(lines)


def cross_training_text(path, report: dict) -> str:
    """What `train-cross` prints: the loss, the data it trained on, dev nDCG@10 per stage, calibration."""
    return (f"{path}\n  loss {report['loss_first_50']:.4f} (first 50 steps) -> {report['loss_last_50']:.4f} (last 50), "
            f"{report['steps']} steps in {report['train_seconds']:.0f}s\n"
            f"  trained on {report['train_queries']} train queries ({report['protocol']['guard']['reason']})\n"
            f"  dev queries ({report['dev_queries']}, top-{report['dev_r']}): nDCG@10 first stage "
            f"{report['dev_ndcg_first_stage']:.4f}, cross-encoder {report['dev_ndcg_cross_only']:.4f}, "
            f"fused {report['dev_ndcg_fused']:.4f} at alpha={report['alpha']} (chosen on dev)\n"
            f"  Platt a={report['platt']['a']:.3f} b={report['platt']['b']:.3f}: ECE {report['ece_before']:.4f} -> "
            f"{report['ece_after']:.4f}")


def towers_training_text(path, architecture: str, mode: str, report: dict) -> str:
    """What `train-towers` prints: the loss, steps, parameters."""
    return (f"{path}\n  {architecture} ({mode}): loss {report['loss_first_10']:.4f} (first 10 steps) -> "
            f"{report['loss_last_10']:.4f} (last 10), {report['steps']} steps in {report['train_seconds']:.1f}s; "
            f"{report['parameters']:,} parameters ({report['trainable_parameters']:,} trained)")


def variants_text(table, reference: str) -> str:
    """What `reranker-variants` prints: each variant against the reference, with depth details where adaptive."""
    lines = [f"Each reranker variant against {reference} over the same first-stage lists, R and alpha (dev delta "
             "with its paired 95% interval; p = one-sided paired t of 'worse than the reference'; latency as served, one "
             "query's R pairs per call):"]
    for _, row in table.sort_values(["R", "alpha", "rerank p50 ms"]).iterrows():
        depth = "" if row["depth"] == "fixed" else (
            f" [{row['depth']}: {row['pairs/query mean']:.1f} pairs/query (p95 {row['pairs/query p95']:.0f}), top 10 "
            f"changed for {row['top 10 changed vs full depth']:.0%}, e2e p95 {timing_text(row['e2e p95 ms'])} ms]")
        lines.append(f"  R={row['R']:<3d} alpha {row['alpha']:<10s} {row['reranker']:18s} {row['precision']:4s} {row['runtime']:11s} "
                     f"len {row['max_length']:<3d} {timing_text(row['pairs/s']):>5s} pairs/s  p50/p95 "
                     f"{timing_text(row['rerank p50 ms'])}/{timing_text(row['rerank p95 ms'])} ms ({row['speed-up p50']:.2f}x, "
                     f"{row['timed queries x threads']})  dev {row['dev nDCG@10']:.3f}, delta "
                     f"{ci(row['dev delta'], row['dev delta ci'])} (p {row['dev p (worse)']:.3f}){depth}")
    return "\n".join(lines)
