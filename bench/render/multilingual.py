"""Queries in other languages: the reproduction of published figures, then each setting's table per language."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.core.figures import ci, timing_text
from bench.render.markdown import markdown_table
from bench.analysis import Budget, with_derived
from bench.analysis.multilingual import (
    MODEL_NAMES, REPRODUCED_WITHIN, family, language_table, over_languages, picks_table, reproduction_table, twin_table,
)

WIDER = Budget(100, 500)  # a budget clear of the multilingual encoder's query cost on this host
SETTINGS = {"mono": "Same-language (questions and paragraphs in L)",
            "cross": "Cross-lingual (questions in L, the same paragraphs in English)"}


def reproduction_text(table: pd.DataFrame) -> str:
    """One line saying how many published figures reproduce within the bar, then the table."""
    if table.empty:
        return "No same-language exact-search rows."
    published = table[table["published"].notna()]
    held = int(published["within"].sum())
    repeats = ("the gap is taken without questions repeating an earlier one's text, as MTEB counts"
               if table["nDCG@10 distinct"].notna().any() else "duplicate question texts kept")
    head = (f"Published same-language figures reproduced within {REPRODUCED_WITHIN}: {held} of {len(published)} "
            f"(exact search over all questions, dev and test together, as MTEB evaluates XQuADRetrieval; {repeats}).")
    shown = table.assign(**{"nDCG@10": [ci(m, h) for m, h in zip(table["nDCG@10"], table["ci"])],
                            "without repeats": table["nDCG@10 distinct"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}"),
                            "published": table["published"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}"),
                            "gap": table["gap"].map(lambda v: "" if pd.isna(v) else f"{v:+.3f}")})
    columns = ["language", "model", "questions", "nDCG@10", "without repeats", "published", "gap"]
    if table["nDCG@10 distinct"].isna().all():
        columns.remove("without repeats")
    return head + "\n\n" + markdown_table(shown[columns])


def language_text(table: pd.DataFrame, setting: str) -> str:
    """Per language, each family's test nDCG@10 with its interval (a column per family) and e2e p95 in a note."""
    if table.empty:
        return f"{SETTINGS[setting]}: no rows."
    cells = table.assign(cell=[ci(m, h) for m, h in zip(table["nDCG@10"], table["ci"])])
    wide = cells.pivot(index="language", columns="family", values="cell").fillna("")
    order = sorted(wide.columns, key=lambda f: (f != "BM25", "+" in f, f))
    p95 = table.groupby("family")["e2e p95 ms"].median()
    note = "; ".join(f"{f} {timing_text(p95[f])} ms" for f in order)
    n = int(table["test questions"].median())
    return (f"{SETTINGS[setting]}: test nDCG@10 with 95% intervals (about {n} test questions per language; the dev "
            f"questions are about other articles). Median e2e p95 (one thread): {note}.\n\n"
            + markdown_table(wide[order].reset_index()))


def _pick_cell(row: pd.Series) -> str:
    if pd.isna(row.get("ci", float("nan"))):  # nothing fits
        return str(row["family"])
    return (f"{row['family']} (K {int(row['K'])}): {ci(row['nDCG@10'], row['ci'])}, p95 "
            f"{timing_text(row['e2e p95 ms'])} ms, {int(row['tied on dev'])} tied")


def picks_text(table: pd.DataFrame, budget) -> str:
    """Each language's dev-chosen pipeline under the budget, same-language and cross-lingual side by side."""
    if table.empty:
        return "No XQuAD rows."
    shown = table.assign(pick=[_pick_cell(row) for _, row in table.iterrows()])
    wide = shown.pivot(index="language", columns="setting", values="pick").fillna("")
    wide = wide[[c for c in ("mono", "cross") if c in wide.columns]].rename(columns=SHORT)
    return (f"Dev-chosen per language at p95 <= {budget.p95_ms:g} ms, memory <= {budget.memory_mb:g} MB (`recommend`: "
            "the cheapest row tied on the dev articles' questions with the dev-best; test nDCG@10 with its 95% "
            "interval):\n\n" + markdown_table(wide.reset_index()))


SHORT = {"mono": "same-language", "cross": "cross-lingual (English paragraphs)"}
MODELS_SHORT = {"multilingual-e5-small": "e5-small", "all-MiniLM-L6-v2": "MiniLM"}


def _short(family: str) -> str:
    for long, short in MODELS_SHORT.items():
        family = family.replace(long, short)
    return family.replace(", exact", "")


def over_languages_text(choice, budget) -> str:
    """One clause: the configuration `recommend --over-mean` picks for every cross-lingual language, its test range."""
    if choice is None:
        return f"at {budget.p95_ms:g} ms nothing fits on every language"
    means = [float(np.mean(v)) for v in choice.pick["q_ndcg_at_10"]]
    return (f"at {budget.p95_ms:g} ms {_short(family(choice.pick.iloc[0]))} (test {min(means):.2f}-{max(means):.2f}, "
            f"{choice.ties} of {choice.candidates} tied on the mean dev nDCG@10)")


def twin_clause(twin: pd.DataFrame) -> str:
    """The twin-tower verdict in one sentence: each twin against the bi-encoder of the same start, and the twin over
    two encoders against the query encoder alone (test, paired 95% intervals)."""
    systems, deltas = twin_table(twin)
    same = deltas[deltas["what"].str.startswith("twin against bi")]
    mixed = systems[systems["query_model"] != systems["document_model"]]
    by_name = systems.set_index("system")
    parts = [f"{_model_short(by_name.loc[d['system'], 'query_model'])} {d['test delta']:+.3f} ± {d['ci']:.3f}"
             for _, d in same.iterrows()]
    text = (f"Twin towers like for like (`python -m bench xquad-twin`, heads over frozen vectors, chosen on dev): twin "
            f"minus bi-encoder on test {', '.join(parts)}")
    for _, row in mixed.iterrows():
        alone = systems[(systems["architecture"] == "none") & (systems["query_model"] == row["query_model"])]
        text += (f"; {_model_short(row['query_model'])} queries with {_model_short(row['document_model'])} documents "
                 f"{ci(row['test nDCG@10'], row['ci'])}" + (f" against {ci(alone['test nDCG@10'].iloc[0], alone['ci'].iloc[0])} "
                                                         f"for {_model_short(row['query_model'])} alone" if len(alone) else ""))
    return text + "."


def multilingual_section(frame: pd.DataFrame, series, budget, twin: pd.DataFrame | None = None) -> str:
    """The report's lines: reproduction in one clause, then each language's dev-chosen pipeline per setting in one
    line each; the full tables linked."""
    derived = with_derived(frame)  # once: the picks and both over-the-languages choices read it
    picks = picks_table(derived, budget)
    if picks.empty:
        return ""
    reproduced = reproduction_table(frame)
    published = reproduced[reproduced["published"].notna()]
    gaps = ", ".join(f"{_short(r['model'])} {r['language']} {r['nDCG@10']:.3f} ({r['published']:.3f})"
                     for _, r in published.iterrows())
    lines = [f"XQuAD, questions in {picks['language'].nunique()} languages (`make xquad`, `python -m bench xquad`): "
             f"published same-language nDCG@10 reproduced within {REPRODUCED_WITHIN} for "
             f"{int(published['within'].sum())} of {len(published)} ({gaps}; all questions, exact search). "
             f"Dev-chosen at p95 <= {budget.p95_ms:g} ms, memory <= {budget.memory_mb:g} MB (dev questions about other "
             f"articles than the test's), test nDCG@10 — " + "; ".join(
                 f"{SHORT[setting].split(' ')[0]}: " + ", ".join(
                     f"{r['language']} {_short(r['family'])} {ci(r['nDCG@10'], r['ci'])}" if "ci" in r and
                     pd.notna(r["ci"]) else f"{r['language']} {r['family']}" for _, r in rows.iterrows())
                 for setting, rows in picks.groupby("setting", sort=False))
             + f". Tables: {series.link('xquad-picks', picks)}, "
             + ", ".join(series.link(f"xquad-{setting}", language_table(frame, setting)) for setting in ("mono", "cross"))
             + ", " + series.link("xquad-reproduction", reproduced) + ". One pipeline for every cross-lingual language "
             f"(`recommend --over-mean`): {over_languages_text(over_languages(derived, 'cross', budget), budget)}; "
             f"{over_languages_text(over_languages(derived, 'cross', WIDER), WIDER)}."
             + (f" {twin_clause(twin)}" if twin is not None and len(twin) else "")]
    return "\n".join(["## Queries in other languages", "", *lines, ""])



__all__ = ["language_text", "multilingual_section", "picks_text", "reproduction_text"]


def _model_short(model: str) -> str:
    name = MODEL_NAMES.get(model, model.split("/")[-1])
    return MODELS_SHORT.get(name, name)


def twin_text(systems: pd.DataFrame, deltas: pd.DataFrame) -> str:
    """The twin-tower comparison: the paired test deltas first (the answer), then each system's figures."""
    if systems.empty:
        return "No twin-tower rows."
    n = int(systems["test questions"].max())
    lines = [f"Twin towers like for like (heads over frozen vectors, trained on the train articles' questions in every "
             f"language, epochs chosen on the dev articles' questions; test: {n} questions, each the mean over its "
             f"languages; 95% paired intervals):", ""]
    for _, row in deltas.iterrows():
        delta = row["test delta"]
        verdict = "a tie" if row["ci"] >= abs(delta) else "helps" if delta > 0 else "hurts"
        lines.append(f"- {row['system']} vs {row['against']} ({row['what']}): {delta:+.3f} ± {row['ci']:.3f} on test "
                     f"(p {row['p']:.2g}; dev {row['dev delta']:+.3f}): {verdict}")
    languages = systems.attrs["languages"]
    start = [_model_short(q) if q == d else f"{_model_short(q)} queries, {_model_short(d)} documents"
             for q, d in zip(systems["query_model"], systems["document_model"])]
    shown = systems.assign(start=start, dev=[ci(m, h) for m, h in zip(systems["dev nDCG@10"], systems["dev ci"])],
                           test=[ci(m, h) for m, h in zip(systems["test nDCG@10"], systems["ci"])],
                           lr=systems["lr"].map(lambda v: "" if pd.isna(v) else f"{v:g}"),
                           **{lang: systems[lang].map(lambda v: f"{v:.3f}") for lang in languages})
    columns = ["system", "architecture", "start", "epochs", "lr", "train_pairs", "dev", "test", *languages]
    return "\n".join(lines) + "\n\n" + markdown_table(shown[columns])
