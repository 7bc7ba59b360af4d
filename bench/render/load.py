"""Throughput under load: QPS and tail latency per concurrency, open-loop rates, cost per million queries."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.core.figures import timing_text
from bench.render.composed import chosen_now, as_today
from bench.render.markdown import Tables, markdown_table
from bench.render.plots import _load_plot


def load_section(frame: pd.DataFrame, plots_dir: Path | None = None, link_prefix: str = "",
                 tables: Tables | None = None, picks: dict[tuple[str, str], list[str]] | None = None,
                 cells: pd.DataFrame | None = None) -> str:
    """Markdown for throughput under load: per served pipeline, QPS and tail latency per concurrency (closed
    loop), p99 and the share over the deadline at target rates (open loop), cost per million queries. With `cells`
    (today's derived sweep rows by cell id) and `picks` ((dataset, pipeline_id) -> today's budget labels), each
    pipeline is named as today and labelled by today's decision, and the run's host speed is set beside the
    sweep's."""
    if frame.empty:
        return ""
    frame = as_today(frame, cells)
    if picks is not None:
        frame = frame.assign(chosen_as=chosen_now(frame, picks))
    first = frame.iloc[0]
    closed = frame[frame["mode"] == "closed"].sort_values(["pipeline", "concurrency"])
    opened = frame[frame["mode"] == "open"].sort_values(["pipeline", "target_qps"])
    best = closed.loc[closed.groupby("sweep_cell_id")["achieved_qps"].idxmax()].set_index("sweep_cell_id")
    summary = []
    for cell, row in best.iterrows():
        levels = closed[closed["sweep_cell_id"] == cell]
        summary.append({
            "pipeline": row["pipeline"], "chosen as": row["chosen_as"],
            "serial e2e p95 ms": timing_text(row['serial_e2e_p95_ms']),
            **{f"C={c} QPS / p99 ms": f"{timing_text(q)} / {timing_text(p)}"
               for c, q, p in zip(levels["concurrency"], levels["achieved_qps"], levels["latency_p99_ms"])},
            "best QPS": f"{timing_text(row['achieved_qps'])} (C={row['concurrency']})",
            "USD per 1M queries": timing_text(row['cost_per_million_usd'])})
    open_rows = [{"pipeline": r["pipeline"], "target QPS": timing_text(r['target_qps']), "achieved QPS": timing_text(r['achieved_qps']),
                  "requests": f"{r['requests']} (+{r['dropped']} dropped)" if r["dropped"] else str(r["requests"]),
                  "p50 ms": timing_text(r["latency_p50_ms"]), "p99 ms": timing_text(r["latency_p99_ms"]),
                  f"over {r['deadline_ms']:g} ms": f"{r['over_deadline_share']:.1%}"} for _, r in opened.iterrows()]
    when = frame["measured_at"]
    parts = [
        "## Throughput under load", "",
        f"{first['dataset']}: each recommended pipeline and each listed encoder's fastest cell (`chosen as`), served "
        f"end to end (encode, search, rerank) by one process on {first['cores']} cores, {first['threads_per_request']} "
        "torch thread per request (`python -m bench load`, bench/series/load.py). Closed loop: C client threads back to back "
        f"for {frame['duration_s'].min():.0f}+ s each; open loop: Poisson arrivals at a target rate, "
        f"{opened['concurrency'].max() if len(opened) else '-'} serving threads, latency from the scheduled arrival "
        "(queueing included); a p99 the samples cannot support (fewer than 100 requests, or requests dropped) is "
        f"`-`. Cost: cores x {first['price_per_core_hour']:g} USD per core-hour / best QPS. Measured "
        f"{when.min():%Y-%m-%d %H:%M}-{when.max():%H:%M} UTC at calibration {frame['calibration_ms'].min():.3f}-"
        f"{frame['calibration_ms'].max():.3f} ms; {len(frame)} rows." + _speed_note(frame, cells), "",
        markdown_table(pd.DataFrame(summary)), ""]
    after = []
    if open_rows:
        after.append("Open loop: " + (tables or Tables(None)).link("load-open-loop", pd.DataFrame(open_rows)))
    if plots_dir is not None:
        png = Path(plots_dir) / "load_qps_p99.png"
        _load_plot(png, closed, opened)
        after.append(f"![QPS vs p99]({link_prefix}{png.name})")
    if after:
        parts += ["; ".join(after), ""]
    return "\n".join(parts)


def _speed_note(frame: pd.DataFrame, cells: pd.DataFrame | None) -> str:
    """How fast the host ran then against the sweep rows it served (the calibration kernel's ratio)."""
    if cells is None:
        return ""
    sweep = cells.reindex(frame["sweep_cell_id"].unique())["calibration_ms"].dropna()
    if sweep.empty:
        return ""
    ratio = frame["calibration_ms"].median() / sweep.median()
    return (f" The sweep rows these cells come from ran at calibration {sweep.median():.3f} ms: this run's host was "
            f"{ratio:.2f}x the sweep's kernel time, so its latencies and costs compare with each other, not with the "
            "decision table's; the decision uses its cost only for a pick served within 10% of the pick's kernel.")
