"""Throughput under load: QPS and tail latency per concurrency, open-loop rates, cost per million queries."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.core.figures import timing_text
from bench.render.markdown import Tables, markdown_table
from bench.render.plots import _load_plot


def load_section(frame: pd.DataFrame, plots_dir: Path | None = None, link_prefix: str = "",
                 tables: Tables | None = None) -> str:
    """Markdown for throughput under load: per served pipeline, QPS and tail latency per concurrency (closed
    loop), p99 and the share over the deadline at target rates (open loop), cost per million queries."""
    if frame.empty:
        return ""
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
        f"{frame['calibration_ms'].max():.3f} ms; {len(frame)} rows.", "",
        markdown_table(pd.DataFrame(summary)), ""]
    if open_rows:
        parts += ["Open loop: " + (tables or Tables(None)).link("load-open-loop", pd.DataFrame(open_rows)), ""]
    if plots_dir is not None:
        png = Path(plots_dir) / "load_qps_p99.png"
        _load_plot(png, closed, opened)
        parts += [f"![QPS vs p99]({link_prefix}{png.name})", ""]
    return "\n".join(parts)
