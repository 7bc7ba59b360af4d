"""The scale series: growth with N, the generator against real vectors, the HNSW build grid, 100M / 1B."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import MB, params_text as _params, short_names_of
from bench.analysis.series import (
    build_grid, capacity, generator_bias, growth, latest, set_growth, set_points, set_sources,
)
from bench.core.figures import timing_text
from bench.render.markdown import Tables, _span, _variant, markdown_table
from bench.render.plots import _capacity_plot


def scale_section(frame: pd.DataFrame, plots_dir: Path | None = None, link_prefix: str = "",
                  tables: Tables | None = None) -> str:
    """Markdown for the scale series: one row per variant, vector source and N; the log-log slopes; the
    generator against real vectors; the HNSW build grid; bytes per vector and the 100M / 1B projection."""
    if frame.empty:
        return ""
    tables = tables or Tables(None)
    frame = latest(frame)
    order = {"real": 0, "gmm": 1, "pooled": 2, "gmm-pooled": 3}
    rows = frame.assign(order=frame["source"].map(order)).sort_values(["variant", "n", "order"])
    table = pd.DataFrame({
        "variant": rows["variant"].map(_variant), "vectors": rows["source"], "N": rows["n"].map("{:,}".format),
        "build": rows["build_params"].map(_params),
        "search (cheapest at target)": rows["search_params"].map(_params)
        + np.where(rows["reached"], "", " (target NOT reached)"),
        f"recall@{int(rows['k'].iloc[0])}": rows["recall_at_k"].map("{:.3f}".format),
        "build s": rows["build_s"].map(timing_text),
        "bytes/vector": (rows["index_bytes"] / rows["n"]).map("{:,.0f}".format),
        "index MB": (rows["index_bytes"] / MB).map("{:,.1f}".format),
        "predicted MB": (rows["predicted_index_bytes"] / MB).map("{:,.1f}".format),
        "RSS growth MB": (rows["rss_build_delta_bytes"] / MB).map("{:,.0f}".format),
        "p50 ms": rows["search_p50_ms"].map(timing_text), "p95 ms": rows["search_p95_ms"].map(timing_text),
        "measured": rows["measured_at"].fillna(rows["timestamp"]).dt.strftime("%m-%d %H:%M"),
    })
    ratio = rows["index_bytes"] / rows["predicted_index_bytes"]
    slopes = growth(frame)
    if len(slopes):
        slopes = slopes.assign(variant=slopes["variant"].map(_variant))
    first = frame.iloc[0]
    k = int(first["k"])
    generator = json.loads(frame.loc[frame["source"] == "gmm", "generator"].iloc[0]) if (frame["source"] == "gmm").any() else {}
    pooled = frame[frame["source"] == "pooled"]
    parts = [
        "## Scale: growth with N", "",
        f"Each backend variant (backend and build as configured) at the cheapest search point of its grid reaching "
        f"recall@{k} >= {first['target_recall']} against exact search ({first['n_queries']} real queries, "
        f"{first['dim']} dims), latency of one query on one thread. `vectors`: `real` = the encoder's embeddings of "
        f"the corpus; `gmm` = sampled from {generator.get('mixture', 'the generator')} fitted to the "
        f"{generator.get('fitted_on', '?')} real ones ({generator.get('model', '')}, {generator.get('dataset', '')}, "
        f"seed {generator.get('seed', '')}); `pooled` = every real vector the shared data gives (documents, passages "
        "and train/dev queries of both datasets, exact duplicates dropped), `gmm-pooled` = the same mixture fitted to "
        "the pool. Predicted bytes come from each backend's memory model (`memory_bytes` in its module under "
        "`bench/search/indexes/`); RSS growth is the process RSS after the build minus before it (the vectors were "
        "already loaded; allocator and build-time buffers included). Builds on "
        f"{int(first['build_threads'])} threads.", "",
        "Every row: " + tables.link("scale", table) + ".",
        f"Serialized index / predicted: {ratio.min():.4f} to {ratio.max():.4f} over {len(ratio)} rows "
        f"(largest deviation {100 * (ratio - 1).abs().max():.2f}%).", "",
        "Log-log slopes against N over the generator's configured sizes (1 = linear growth). RSS growth is only "
        "meaningful at large N: at small N the allocator reuses freed memory and the growth reads near 0: "
        + (tables.link("scale-slopes", slopes) if len(slopes) else "(fewer than two sizes measured)"), "",
        *([f"Over {len(slopes)} variants, index bytes grow as N^{slopes['slope index_bytes'].min():.2f} to "
           f"N^{slopes['slope index_bytes'].max():.2f} and p95 at the recall target as "
           f"N^{slopes['slope search_p95_ms'].min():.2f} to N^{slopes['slope search_p95_ms'].max():.2f}; the steepest "
           f"p95: {_variant(slopes.loc[slopes['slope search_p95_ms'].idxmax(), 'variant'])}.", ""]
          if len(slopes) else []),
    ]
    bias = generator_bias(frame)
    pooled_n = f" (N = {int(pooled['n'].iloc[0]):,})" if len(pooled) else ""
    if len(bias):
        bias = bias.assign(variant=bias["variant"].map(_variant))
        parts += ["The generator against real vectors: per variant, the search effort (the grid's knob at the cheapest point reaching the target) on real "
                  "vectors and on vectors sampled from a mixture fitted to them, at the same N: the real corpus, and "
                  f"the pooled real vectors{pooled_n}. "
                  "A ratio above 1: the generator makes that index work harder than real data does; below 1: easier. "
                  "Every generated-vector figure in this section (10k to 1M) carries this bias: "
                  + tables.link("scale-generator-bias", bias), ""]
    grid = build_grid(frame)
    if len(grid) and grid["variant"].nunique() > 1:
        grid = grid.assign(variant=grid["variant"].map(_variant))
        parts += ["HNSW build grid: hnswlib at each build (M, ef_construction) on generated vectors: the ef each needed for the target, "
                  "its p95, build time and size (`measured`: when, or its run's start for older rows; p95 compares "
                  "within a run, not across runs). Builds above 100k were limited by build time on this machine "
                  "(see configs/scale.toml): " + tables.link("scale-hnsw-build-grid", grid), ""]
    table = capacity(frame)
    if len(table):
        n_top = int(frame.loc[frame["source"] == "gmm", "n"].max())
        plot = ""
        if plots_dir is not None:
            png = plots_dir / "memory_at_scale.png"
            _capacity_plot(png, table, k, n_top)
            plot = f"![bytes per vector vs p95 at N={n_top:,}]({link_prefix}{png.name})"
        shown = table.assign(variant=table["variant"].map(_variant),
                             **{"bytes/vector": table["bytes/vector"].map("{:,.0f}".format),
                                "vs float32": table["vs float32"].map("{:.3f}".format),
                                "recall": table["recall"].map("{:.3f}".format),
                                "p95 ms": table["p95 ms"].map(timing_text),
                                "build s": table["build s"].map("{:,.0f}".format)}).drop(columns="reached")
        shown["recall"] = np.where(table["reached"], shown["recall"], shown["recall"] + " (not reached)")
        for column in [c for c in shown.columns if c.endswith(" GB")]:
            shown[column] = table[column].map("{:,.1f}".format)
        for column in [c for c in shown.columns if " in " in c]:
            shown[column] = np.where(table[column], "yes", "no")
        parts += ["### Memory at 100M and 1B vectors", "",
                  f"At N = {n_top:,} generated vectors (`measured`: when the row was measured, or its run's start for older rows; "
                  f"latencies compare within a run, #13): bytes per vector as serialized, recall@{k} and p95 at the "
                  f"cheapest search point reaching the target (recall below {first['target_recall']} where the grid "
                  "never reached it), build time; then the index bytes at 100M and 1B vectors from each backend's memory "
                  "model with the build as run (IVF centroids kept at this N's nlist: with nlist ~ sqrt(N) they add "
                  f"nlist x {int(first['dim'])} x 4 bytes, 49 MB at 1B), and whether that index alone fits in 64 / "
                  "256 GB of RAM (the process, the OS and query buffers need more). Recall and latency at 100M and 1B "
                  "are not measured: they are not implied by these rows. " + plot + "; every variant: "
                  + tables.link("scale-capacity", shown), "", _fits_line(table), ""]
    return "\n".join(parts)


def _fits_line(table: pd.DataFrame) -> str:
    """Which variants' indexes alone fit the RAM sizes at 1B vectors."""
    columns = [c for c in table.columns if c.startswith("1B in ")]
    parts = []
    for column in columns:
        fits = table[table[column]]
        parts.append(f"{column.removeprefix('1B in ')}: " + (", ".join(f"{_variant(v)} ({g:,.0f} GB)" for v, g in
                                                                      zip(fits["variant"], fits["1B GB"])) or "none"))
    return "At 1B vectors, the index alone fits in " + "; in ".join(parts) + "." if parts else ""


def real_sets_section(frame: pd.DataFrame, tables: Tables | None = None) -> str:
    """Markdown for the scale series on real vector sets (bench.series.vectorsets): per backend variant, each set at its
    largest N beside the mixture fitted to it at the same N; log-log slopes over the set's sizes; the 100M / 1B
    memory table from the largest real set."""
    if frame.empty or not set_sources(frame):
        return ""
    tables = tables or Tables(None)
    points = set_points(frame)
    first = frame.iloc[0]
    described = {name: json.loads(frame.loc[frame["source"] == name, "generator"].iloc[0]) for name in set_sources(frame)}
    cell = [(f"{effort:g} · " if knob else "") + f"{p95} ms · {b:,.0f} B · {build} s"
            + ("" if reached else f" (recall {recall:.3f})")
            for knob, effort, p95, b, build, reached, recall in
            zip(points["knob"], points["effort"], points["p95 ms"].map(timing_text), points["bytes/vector"],
                points["build s"].map(timing_text), points["reached"], points["recall"])]
    wide = points.assign(cell=cell, column=[f"{s} {v} N={n:,}" for s, v, n in
                                            zip(points["set"], points["vectors"], points["N"])])
    table = wide.pivot(index="variant", columns="column", values="cell").fillna("-")
    table = table[[c for c in dict.fromkeys(wide["column"])]].reset_index()
    knobs = {v: short_names_of([v.split(" ")[0]]).get(k, k) for v, k in zip(points["variant"], points["knob"]) if k}
    table["variant"] = [_variant(v) + (f" ({knobs[v]})" if v in knobs else "") for v in table["variant"]]
    sets = "; ".join(f"`{name}`: {d.get('source', '')}, queries: {d.get('queries', '')}" for name, d in described.items())
    lines = ["## Scale on real vector sets", "",
             f"Each backend variant at the cheapest search point reaching recall@{int(first['k'])} >= "
             f"{first['target_recall']} against exact search over each set's own held-out queries "
             f"({int(points['queries'].iloc[0]):,}; single-query p95 over {int(points['latency samples'].iloc[0]):,} "
             f"of them, one thread), at each set's largest N, beside a Gaussian mixture fitted to that set and "
             f"sampled at the same N (`mixture`: a labelled control, not data). Sets: {sets} "
             "(`python -m bench scale configs/scale-real.toml`). Each cell: search effort (the knob named after the "
             "variant) · p95 · bytes per vector (serialized index over N) · build seconds.", "",
             markdown_table(table), ""]
    slopes = set_growth(frame)
    if len(slopes):
        lines += ["Log-log slopes against N over each real set's sizes (1 = linear): "
                  + tables.link("scale-real-slopes", slopes.assign(variant=slopes["variant"].map(_variant))), ""]
    largest = max(set_sources(frame), key=lambda name: (int(frame.loc[frame["source"] == name, "dim"].iloc[0]),
                                                        int(frame.loc[frame["source"] == name, "n"].max())))
    memory = capacity(frame, source=largest)
    if len(memory):
        shown = memory.assign(variant=memory["variant"].map(_variant))
        lines += [f"Memory at 100M and 1B vectors from the real set `{largest}` at its largest N (each backend's memory "
                  "model with the build as run; recall and latency at those sizes are not measured): "
                  + tables.link("scale-real-capacity", shown), "", _fits_line(memory), ""]
    lines[-2] += " " + _span(frame)  # the paragraph above says which runs its rows come from
    return "\n".join(lines)
