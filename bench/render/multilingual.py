"""Queries in other languages: the reproduction of published figures, then each setting's table per language."""

from __future__ import annotations

import pandas as pd

from bench.core.figures import ci, timing_text
from bench.render.markdown import markdown_table

SETTINGS = {"mono": "Same-language (questions and paragraphs in L)",
            "cross": "Cross-lingual (questions in L, the same paragraphs in English)"}


def reproduction_text(table: pd.DataFrame) -> str:
    """One line saying how many published figures reproduce within the bar, then the table."""
    if table.empty:
        return "No same-language exact-search rows."
    from bench.analysis.multilingual import REPRODUCED_WITHIN

    published = table[table["published"].notna()]
    held = int(published["within"].sum())
    head = (f"Published same-language figures reproduced within {REPRODUCED_WITHIN}: {held} of {len(published)} "
            "(exact search over all questions, dev and test together, as MTEB evaluates XQuADRetrieval; "
            "duplicate question texts kept).")
    shown = table.assign(**{"nDCG@10": [ci(m, h) for m, h in zip(table["nDCG@10"], table["ci"])],
                            "published": table["published"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}"),
                            "gap": table["gap"].map(lambda v: "" if pd.isna(v) else f"{v:+.3f}")})
    return head + "\n\n" + markdown_table(shown[["language", "model", "questions", "nDCG@10", "published", "gap"]])


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
    return (f"{SETTINGS[setting]}: test nDCG@10 with 95% intervals (about {n} test questions per language, on 36 of "
            f"the 48 articles; the other 12 are dev). Median e2e p95 (one thread): {note}.\n\n"
            + markdown_table(wide[order].reset_index()))


__all__ = ["language_text", "reproduction_text"]
