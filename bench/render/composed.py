"""Composed runs: each chosen pipeline's end-to-end percentiles over per-query totals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.core.figures import timing_text
from bench.render.markdown import Tables, markdown_table


def as_today(frame: pd.DataFrame, cells: pd.DataFrame | None) -> pd.DataFrame:
    """Rows of a series that served sweep cells (`sweep_cell_id`) as today's sweep rows have them (`cells`: the
    derived sweep rows by cell id): their `pipeline` name and `pipeline_id`, and the sweep's figures beside them
    (e2e and calibration), not what was stored when they ran."""
    if cells is None or frame.empty:
        return frame
    known = frame["sweep_cell_id"].isin(cells.index)
    named = cells.reindex(frame["sweep_cell_id"])
    out = frame.assign(pipeline=np.where(known, named["pipeline"].to_numpy(), frame["pipeline"]),
                       pipeline_id=np.where(known, named["pipeline_id"].to_numpy(),
                                            frame["pipeline_id"] if "pipeline_id" in frame else ""))
    # a composed row's sweep figures: the sweep row as it stands today (it may have been re-timed since)
    today = {f"sweep_e2e_{q}_ms": f"sweep_e2e_{q}_ms" for q in ("p50", "p95", "p99")}
    today["sweep_calibration_ms"] = "calibration_ms"
    for column, source in today.items():
        if column in out and source in cells:
            out[column] = np.where(known, named[source].to_numpy(), out[column])
    return out


def chosen_now(frame: pd.DataFrame, picks: dict[tuple[str, str], list[str]]) -> pd.Series:
    """Why each composed row is shown, from today's decisions (`picks`: (dataset, pipeline_id) -> budget labels), not
    from what it was chosen as when it ran: a pipeline no budget picks any more says so, with its old label."""
    def label(row) -> str:
        now = picks.get((row["dataset"], row["pipeline_id"]), [])
        if now:
            return "; ".join(now)
        return "not picked today (a budget's pick when it ran)" if "budget" in row["chosen_as"] else row["chosen_as"]
    return frame.apply(label, axis=1) if len(frame) else frame["chosen_as"]


def composed_section(frame: pd.DataFrame, tables: Tables | None = None,
                     picks: dict[tuple[str, str], list[str]] | None = None, cells: pd.DataFrame | None = None) -> str:
    """Markdown for composed runs: each chosen pipeline's end-to-end percentiles over per-query totals (every query
    through every stage in one loop), beside the sweep's per-query sums of per-stage medians. The report shows the
    pipelines today's budgets pick (`picks`: (dataset, pipeline_id) -> budget labels; without it, what each row was
    chosen as when it ran); every pipeline timed (the dev frontier and earlier picks too) is in the linked table."""
    if frame.empty:
        return ""
    tables = tables or Tables(None)
    frame = as_today(frame, cells)
    if picks is not None:
        frame = frame.assign(chosen_as=chosen_now(frame, picks))
    lines = ["## Pipelines timed as deployed", "",
             "Each pipeline a budget or the dev frontier could pick, rebuilt from its sweep cell; every test query sent "
             "through encode, search and rerank in one loop, one query at a time, each stage and the whole timed per "
             "sample (`python -m bench composed`). 'composed' percentiles are over the measured per-query totals; "
             "'from medians' summarizes the same samples as the sweep's e2e was before per-sample sums (each stage's "
             "per-query median over the passes, summed); 'sweep' is the sweep row's figure, from another run: its "
             "host speed differs by the kernel ratio shown (composed kernel / sweep kernel). Samples = queries x "
             "passes, on the threads given.", ""]
    for dataset, rows in frame.sort_values(["dataset", "e2e_p95_ms"]).groupby("dataset"):
        table = pd.DataFrame({
            "pipeline": rows["pipeline"], "chosen as": rows["chosen_as"],
            "samples (threads)": [f"{q} x {r} ({t})" for q, r, t in zip(rows["queries"], rows["repetitions"], rows["threads"])],
            "composed e2e p50 / p95 / p99 ms": [" / ".join(timing_text(v) for v in vals) for vals in
                                                zip(rows["e2e_p50_ms"], rows["e2e_p95_ms"], rows["e2e_p99_ms"])],
            "from medians p50 / p95 / p99 ms": [" / ".join(timing_text(v) for v in vals) for vals in
                                                zip(rows["medians_e2e_p50_ms"], rows["medians_e2e_p95_ms"],
                                                    rows["medians_e2e_p99_ms"])],
            "sweep e2e p50 / p95 / p99 ms (kernel ratio)": [
                " / ".join(timing_text(v) for v in vals[:3]) + f" ({vals[3] / vals[4]:.2f}x)" for vals in
                zip(rows["sweep_e2e_p50_ms"], rows["sweep_e2e_p95_ms"], rows["sweep_e2e_p99_ms"], rows["calibration_ms"],
                    rows["sweep_calibration_ms"])],
            "encode / search / rerank p95 ms": [" / ".join(timing_text(v) for v in vals) for vals in
                                                zip(rows["encode_p95_ms"], rows["search_p95_ms"], rows["rerank_p95_ms"])],
            "measured": rows["measured_at"].map(lambda t: f"{t:%Y-%m-%d}" if pd.notna(t) else "")})
        shown = table[table["chosen as"].str.startswith("budget")]
        every = (f"every pipeline timed on {dataset}, the dev frontier's and earlier picks' too: "
                 + tables.link(f"composed-{dataset}", table))
        if len(shown):
            lines += [f"### {dataset}", "", markdown_table(shown), "", every[0].upper() + every[1:], ""]
        else:
            lines += [f"{dataset}: no pipeline today's budgets pick has a composed run (the picks are cells the sweep "
                      f"alone timed; `python -m bench composed` times them); {every}", ""]
    return "\n".join(lines)
