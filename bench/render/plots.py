"""Plots (matplotlib, Agg): one colour per backend and per reranking stage in every plot."""

from __future__ import annotations

import functools
import hashlib
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import BACKEND_NAMES, t_interval
from bench.core.cache import atomic_write_bytes, cache_dir
from bench.render.markdown import _variant

SOURCE = Path(__file__).read_bytes()  # a change to any plot's code draws every plot again


def drawn_once(plot):
    """Skip drawing `plot(path, ...)` when the PNG at `path` is the one these same inputs drew last time (the inputs,
    this module's source and matplotlib's version, hashed; the PNG's digest kept under the cache): `make report`
    re-draws only what changed. A missing or edited PNG is drawn again."""

    @functools.wraps(plot)
    def draw(path: Path, *args, **kwargs) -> None:
        import matplotlib

        key = hashlib.sha256(pickle.dumps((plot.__name__, str(path), args, kwargs, matplotlib.__version__))
                             + SOURCE).hexdigest()[:32]
        marker = cache_dir() / "plots" / key
        if path.exists() and marker.exists() and marker.read_text() == hashlib.sha256(path.read_bytes()).hexdigest():
            return
        plot(path, *args, **kwargs)
        if path.exists():
            atomic_write_bytes(marker, lambda tmp: tmp.write_text(hashlib.sha256(path.read_bytes()).hexdigest()))

    return draw


TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


BACKEND_COLORS = {"exact": "#000000", **{name: TAB10[i % len(TAB10)]
                                         for i, name in enumerate(n for n in BACKEND_NAMES if n != "exact")}}


STAGE_COLORS = {"encode": "#9467bd", "search": "#1f77b4", "rerank": "#d62728"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _readable_log_axis(axis) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    _pyplot().close(fig)


def _facets(n: int):
    plt = _pyplot()
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(max(7.0, 4.6 * cols), 3.6 * rows + 0.4), dpi=100, squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


@drawn_once
def _frontier_plot(path: Path, panels: list[tuple[str, list[tuple[str, pd.DataFrame]]]], x: str, y: str,
                   xlabel: str, ylabel: str, title: str) -> None:
    """One panel per encoder, one frontier line per backend (same colour everywhere; reranking stages dashed)."""
    fig, axes = _facets(len(panels))
    stages = sorted({label.split(" + ", 1)[1] for _, series in panels for label, _ in series if " + " in label})
    styles = {stage: style for stage, style in zip(stages, ["--", ":", "-.", (0, (1, 3))] * 4)}
    for ax, (panel, series) in zip(axes, panels):
        for label, rows in series:
            rows = rows.sort_values(x)
            stage = label.split(" + ", 1)[1] if " + " in label else ""
            ax.plot(rows[x], rows[y], marker="o", markersize=3, label=label, linestyle=styles.get(stage, "-"),
                    color=BACKEND_COLORS.get(label.split(" ")[0], None))
        ax.set_xscale("log")
        _readable_log_axis(ax.xaxis)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


@drawn_once
def _stage_plot(path: Path, picks: list[tuple[str, pd.Series]]) -> None:
    """End-to-end latency of each recommended pipeline split by stage (mean ms per query)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.45 * len(picks)), dpi=100)
    labels = [label for label, _ in picks]
    left = np.zeros(len(picks))
    for stage, column in (("encode", "query_encode_mean_ms"), ("search", "search_mean_ms"),
                          ("rerank", "rerank_mean_ms")):
        values = np.array([0.0 if np.isnan(row[column]) else row[column] for _, row in picks])
        ax.barh(labels, values, left=left, color=STAGE_COLORS[stage], label=stage)
        left += values
    ax.set_xlabel("mean latency per query (ms), by stage")
    ax.tick_params(labelsize=7)
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    ax.grid(True, axis="x", alpha=0.3)
    _save(fig, path)


@drawn_once
def _r_plot(path: Path, curves: list[tuple[str, pd.DataFrame]], title: str) -> None:
    """Dev nDCG@10 against R (0 = first stage) per first stage and K, with 95% interval bands: one colour per
    backend (as in every plot), one line style per K."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    ks = sorted({int(cells["k"].iloc[0]) for _, cells in curves})
    styles = dict(zip(ks, ["--", "-", ":", "-."]))
    for label, cells in curves:
        stats_ = [t_interval(v) for v in cells["dev_q_ndcg_at_10"]]
        mean = np.array([m for m, _ in stats_])
        half = np.array([h for _, h in stats_])
        x = cells["r"].to_numpy()
        color = BACKEND_COLORS.get(label.split(" ")[0])
        ax.plot(x, mean, marker="o", markersize=3, label=label, color=color,
                linestyle=styles.get(int(cells["k"].iloc[0]), "-"))
        ax.fill_between(x, mean - half, mean + half, alpha=0.06, color=color)
    ax.set_xlabel("R (cross-encoder depth; 0 = first stage alone)")
    ax.set_ylabel("dev nDCG@10 (95% band)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


@drawn_once
def _capacity_plot(path: Path, table: pd.DataFrame, k: int, n: int) -> None:
    """Bytes per vector against p95 at the recall target, one point per variant (hollow: target not reached)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for _, row in table.iterrows():
        backend = row["variant"].split(" ")[0]
        color = BACKEND_COLORS.get(backend)
        ax.scatter(row["bytes/vector"], row["p95 ms"], color=color if row["reached"] else "none", edgecolors=color, s=40)
        ax.annotate(_variant(row["variant"]), (row["bytes/vector"], row["p95 ms"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("index bytes per vector (log)", fontsize=8)
    ax.set_ylabel(f"p95 ms at recall@{k} target (log)", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"N = {n:,} generated vectors: memory against latency at the recall target (hollow: not reached)",
                 fontsize=9)
    _save(fig, path)


@drawn_once
def _load_plot(path: Path, closed: pd.DataFrame, opened: pd.DataFrame) -> None:
    """Achieved QPS against p99 per pipeline: closed-loop concurrency levels joined, open-loop targets as crosses."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    # a p99 the samples cannot support is NaN (`-` in the tables): such points are not drawn
    closed, opened = (frame[np.isfinite(frame["latency_p99_ms"]) & (frame["achieved_qps"] > 0)] for frame in (closed, opened))
    if closed.empty and opened.empty:
        ax.text(0.5, 0.5, "no run had enough requests for a p99", ha="center", va="center", fontsize=9)
        ax.set_axis_off()
        _save(fig, path)
        return
    for i, (name, rows) in enumerate(closed.groupby("pipeline")):
        color = TAB10[i % len(TAB10)]
        ax.plot(rows["achieved_qps"], rows["latency_p99_ms"], "o-", color=color, label=name[:70], markersize=4)
        for _, r in rows.iterrows():
            ax.annotate(f"C={r['concurrency']}", (r["achieved_qps"], r["latency_p99_ms"]), fontsize=6)
        own = opened[opened["pipeline"] == name]
        ax.plot(own["achieved_qps"], own["latency_p99_ms"], "x", color=color, markersize=6)
    ax.set_xlabel("achieved QPS", fontsize=8)
    ax.set_ylabel("p99 ms (open loop: x, from scheduled arrival)", fontsize=8)
    ax.set_yscale("log")
    ax.set_xscale("log")
    _readable_log_axis(ax.xaxis)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=7)
    _save(fig, path)
