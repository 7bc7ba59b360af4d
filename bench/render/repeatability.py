"""Repeatability of query encoding: p50 per round, raw and over the calibration kernel."""

from __future__ import annotations


import numpy as np
import pandas as pd

from bench.analysis import LATENCY_TIE
from bench.analysis.series import architecture_table, relative_sd, spread_table
from bench.render.markdown import Tables, markdown_table


def repeatability_lines(rows: pd.DataFrame) -> list[str]:
    """One `encode-latency` series: per encoder its p50 per round and spread (raw, over the kernel), the encoders
    sharing a query network, and how far the host itself moved (the kernel timed between each encoder's queries)."""
    table = spread_table(rows)
    for column in ("p50 spread", "p50/kernel spread"):
        table[column] = table[column].map("{:.1%}".format)
    first = rows.iloc[0]
    by_encoder = rows.groupby("encoder")["kernel_ms"]
    kernel = (by_encoder.max() / by_encoder.min() - 1).sort_values()
    lines = [f"{rows['round'].nunique()} consecutive rounds; per round and encoder {first['samples']} samples "
             f"({first['passes']} passes, {first['order']}), {first['threads']} thread(s); started "
             f"{rows['measured_at'].min():%Y-%m-%d %H:%M} UTC.", "", markdown_table(table, floatfmt=".3g"), ""]
    shared = architecture_table(rows)
    if len(shared):
        shared["spread"] = shared["spread"].map("{:.1%}".format)
        lines += ["Encoders with the same query network shape (median p50 over the rounds):", "",
                  markdown_table(shared), ""]
    lines += [f"The calibration kernel timed between an encoder's queries moved by {kernel.iloc[0]:.1%} "
              f"({kernel.index[0]}) to {kernel.iloc[-1]:.1%} ({kernel.index[-1]}) over the rounds: how far the host "
              "itself moved while that encoder was timed.", ""]
    return lines


def _largest_shared_spread(rows: pd.DataFrame) -> str:
    shared = architecture_table(rows)
    return f"{shared['spread'].max():.1%}" if len(shared) else "-"


def repeatability_section(rows: pd.DataFrame, tables: Tables | None = None) -> str:
    """Every `encode-latency` series: a summary line each, then the latest one in full."""
    summary = []
    for series, group in rows.groupby("series"):
        spreads = spread_table(group)
        summary.append({"series": series, "started UTC": f"{group['measured_at'].min():%Y-%m-%d %H:%M}",
                        "passes": group["passes"].iloc[0], "order": group["order"].iloc[0],
                        "encoders": group["encoder"].nunique(),
                        "within 10% raw": f"{(spreads['p50 spread'] <= 0.10).sum()} of {len(spreads)}",
                        "largest raw spread": f"{spreads['p50 spread'].max():.1%}",
                        "within 10% over the kernel": f"{(spreads['p50/kernel spread'] <= 0.10).sum()} of {len(spreads)}",
                        "largest over the kernel": f"{spreads['p50/kernel spread'].max():.1%}",
                        "same network shape: largest spread": _largest_shared_spread(group),
                        "relative SD raw / over the kernel": f"{relative_sd(group):.1%} / "
                                                             f"{relative_sd(group, normalized=True):.1%}"})
    latest = rows[rows["series"] == rows["series"].max()]
    pooled = relative_sd(rows)
    return "\n".join([
        "## Repeatability of query encoding", "",
        "`python -m bench encode-latency CONFIG` (`make encode-latency`) times every network encoder's query "
        "encoding as the sweep does, in consecutive rounds in one process; each invocation is a series of "
        "results/encode_latency.parquet. Order: `back to back` is the sweep's (an encoder's passes one after another, "
        "a few seconds), `interleaved` takes every encoder's passes in turn so that each figure samples the whole "
        "round. Spread = max / min - 1 of an encoder's p50 over the rounds; over the "
        "kernel = the same for p50 / the calibration kernel timed between its queries.", "",
        "Per series: " + (tables or Tables(None)).link("encode-latency-series", pd.DataFrame(summary))
        + f"; the latest ({summary[-1]['series']}, {summary[-1]['order']}, {summary[-1]['passes']} passes): "
        f"{summary[-1]['within 10% raw']} encoders within 10% raw (largest spread {summary[-1]['largest raw spread']}), "
        f"{summary[-1]['within 10% over the kernel']} over the kernel (largest {summary[-1]['largest over the kernel']}); "
        f"per encoder and round: " + (tables or Tables(None)).link("encode-latency-latest", spread_table(latest)) + ". "
        f"Relative SD of one timed p50 (SD of log p50 between rounds, pooled over encoders and series): "
        f"{pooled:.1%} raw, {relative_sd(rows, normalized=True):.1%} over the kernel; two independently timed p50s "
        f"then differ by up to {1.96 * np.sqrt(2) * pooled:.0%} on noise alone (95%), against the recommender's "
        f"latency tie band of {LATENCY_TIE:.0%}.", ""])
