"""What the result series other than the sweep say (scale, memory, query-encoding repeatability, composed runs):
pure functions of their rows, moved here from the modules that measure them so that rendering imports no
measuring module.

Memory: what an index costs per vector, what it buys in recall and quality, and what 100M / 1B vectors need.

Bytes per vector are the serialized index bytes over the vectors indexed (fixed parts such as centroids and
codebooks included, so small corpora read a little high). Projections to 100M and 1B use each backend's own
memory model (`memory_bytes`, checked against the serialized size to within 1% in the tests) with the build
as run at the largest measured N. Frontiers are chosen on dev recall (recall against exact search on the dev
queries); test figures are reported for the same rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench.analysis import pareto

GB = 10**9
SIZES = (10**8, 10**9)  # the capacity projection's sizes
RAM_GB = (64, 256)


def projected_bytes(backend: str, build_params: str, n: int, dim: int) -> int:
    """The backend's memory model at `n` vectors for the build as run (an IVF's nlist stays as built)."""
    from bench.search.indexes import make_index

    return make_index(backend, **json.loads(build_params)).memory_bytes(n, dim)


def latest(frame: pd.DataFrame) -> pd.DataFrame:
    """The newest row per (host, source, N, variant): rows of an earlier grid stay in the file but not in tables."""
    frame = frame.assign(variant=frame["variant"].where(frame["variant"] != "", frame["backend"]))
    return frame.sort_values("timestamp").drop_duplicates(["host_id", "source", "n", "variant"], keep="last")


def growth(frame: pd.DataFrame, columns=("build_s", "index_bytes", "rss_build_delta_bytes", "search_p50_ms",
                                          "search_p95_ms")) -> pd.DataFrame:
    """Per backend variant, the log-log slope of each column against N over the configured sizes (>= 2 needed): the
    generator's rows, less its comparison point at the real corpus size."""
    rows = []
    frame = latest(frame)
    real_sizes = set(frame.loc[frame["source"] == "real", "n"])
    sampled = frame[(frame["source"] == "gmm") & ~frame["n"].isin(real_sizes)]
    for variant, group in sampled.groupby("variant"):
        entry = _slopes(group, columns)
        if entry is not None:
            rows.append({"variant": variant, **entry})
    return pd.DataFrame(rows)


def _slopes(group: pd.DataFrame, columns) -> dict | None:
    """`sizes` and the log-log slope of each column against N (None below two sizes; NaN where < 2 values > 0)."""
    group = group.sort_values("n")
    if group["n"].nunique() < 2:
        return None
    entry = {"sizes": ", ".join(f"{n:,}" for n in group["n"])}
    for column in columns:
        values = group[column].to_numpy(dtype=float)
        ok = values > 0
        entry[f"slope {column}"] = (float(np.polyfit(np.log(group["n"][ok]), np.log(values[ok]), 1)[0])
                                    if ok.sum() >= 2 else float("nan"))
    return entry


def with_bytes_per_vector(first: pd.DataFrame) -> pd.DataFrame:
    """First-stage rows plus `bytes_per_vector` (index bytes over the vectors indexed: passages when chunked)."""
    vectors = np.where(first["n_chunks"] > 0, first["n_chunks"], first["n_docs"])
    return first.assign(bytes_per_vector=first["index_bytes"] / vectors)


def memory_frontier(first: pd.DataFrame, k: int, quality: str = "dev_recall_at_k") -> pd.DataFrame:
    """Per backend, the rows at K not dominated in (`quality` up, bytes per vector down), cheapest first."""
    rows = with_bytes_per_vector(first[first["k"] == k])
    return pd.concat([pareto(group, quality, "bytes_per_vector") for _, group in rows.groupby("backend")])


def smallest_at_recall(first: pd.DataFrame, k: int, target: float = 0.95) -> pd.DataFrame:
    """Per backend and build, the fastest cell at K reaching dev recall@K >= `target`; then per backend the
    build with the fewest bytes per vector among those (ties on bytes to the lower p95)."""
    rows = with_bytes_per_vector(first[(first["k"] == k) & (first["dev_recall_at_k"] >= target)])
    if rows.empty:
        return rows
    fastest = rows.sort_values(["search_p95_ms", "cell_id"]).drop_duplicates(["backend", "build_params"])
    return fastest.sort_values(["bytes_per_vector", "search_p95_ms"]).drop_duplicates("backend").sort_values(
        "bytes_per_vector")


def capacity(scale: pd.DataFrame, sizes=SIZES, ram_gb=RAM_GB, source: str = "gmm") -> pd.DataFrame:
    """Per variant at the largest N of `source` (the generator's by default; a real vector set's name): measured
    bytes per vector, recall and p95 there, and the bytes 100M / 1B vectors would take, with whether that index
    alone fits each RAM size."""
    frame = latest(scale)
    frame = frame[frame["source"] == source]
    if frame.empty:
        return pd.DataFrame()
    top = frame[frame["n"] == frame["n"].max()]
    from bench.search.indexes import BACKENDS

    rows = []
    for _, row in top.sort_values("index_bytes").iterrows():
        if row["backend"] not in BACKENDS:  # a backend no longer registered has no memory model
            continue
        entry = {"variant": row["variant"], "measured": _when(row), "bytes/vector": row["index_bytes"] / row["n"],
                 "vs float32": row["index_bytes"] / (row["n"] * row["dim"] * 4),
                 "recall": row["recall_at_k"], "reached": bool(row["reached"]), "p95 ms": row["search_p95_ms"],
                 "build s": row["build_s"]}
        for n in sizes:
            need = projected_bytes(row["backend"], row["build_params"], n, int(row["dim"])) / GB
            entry[f"{_count(n)} GB"] = need
            for ram in ram_gb:
                entry[f"{_count(n)} in {ram} GB"] = need <= ram
        rows.append(entry)
    return pd.DataFrame(rows)


def _when(row: pd.Series) -> str:
    """When a row was measured (rows from before `measured_at` existed: their run's start)."""
    when = row["measured_at"] if pd.notna(row.get("measured_at")) else row["timestamp"]
    return pd.Timestamp(when).strftime("%Y-%m-%d %H:%M")


def _count(n: int) -> str:
    return f"{n // 10**9}B" if n >= 10**9 else f"{n // 10**6}M"


def search_effort(tried_json: str) -> tuple[str, float]:
    """The search parameter a grid varied and its value at the chosen (last tried) point."""
    tried = json.loads(tried_json)
    if not tried:
        return "", float("nan")
    varying = [name for name in tried[-1][0] if len({json.dumps(p.get(name)) for p, _ in tried}) > 1]
    if len(varying) != 1:
        return "", float("nan")
    return varying[0], float(tried[-1][0][varying[0]])


DATASET_SOURCES = ("real", "gmm", "pooled", "gmm-pooled")  # the scale series' points over the sweep's dataset


def set_sources(scale: pd.DataFrame) -> list[str]:
    """The real vector sets of a scale frame (bench.series.vectorsets), in order of appearance (not their mixtures)."""
    names = [s for s in dict.fromkeys(scale["source"]) if s not in DATASET_SOURCES and not s.startswith("gmm-")]
    return names


def set_points(scale: pd.DataFrame) -> pd.DataFrame:
    """Per backend variant, each real vector set at its largest N beside the mixture fitted to it at that N: the
    search effort that reached the target, recall, p95, bytes per vector, build time."""
    frame = latest(scale)
    rows = []
    for name in set_sources(frame):
        for source in (name, f"gmm-{name}"):
            part = frame[frame["source"] == source]
            if part.empty:
                continue
            top = part[part["n"] == frame.loc[frame["source"] == name, "n"].max()]
            for _, r in top.iterrows():
                knob, effort = search_effort(r["search_tried"])
                rows.append({"variant": r["variant"], "set": name, "vectors": "mixture" if source != name else "real",
                             "N": int(r["n"]), "dim": int(r["dim"]), "knob": knob, "effort": effort,
                             "recall": r["recall_at_k"], "reached": bool(r["reached"]), "p95 ms": r["search_p95_ms"],
                             "bytes/vector": r["index_bytes"] / r["n"], "build s": r["build_s"],
                             "queries": int(r["n_queries"]), "latency samples": int(r["latency_samples"])})
    return pd.DataFrame(rows)


def set_growth(scale: pd.DataFrame, columns=("build_s", "index_bytes", "search_p95_ms")) -> pd.DataFrame:
    """Per real vector set and variant, the log-log slope of each column against N over the set's sizes."""
    frame = latest(scale)
    rows = []
    for name in set_sources(frame):
        for variant, group in frame[frame["source"] == name].groupby("variant"):
            entry = _slopes(group, columns)
            if entry is not None:
                rows.append({"set": name, "variant": variant, **entry})
    return pd.DataFrame(rows)


def generator_bias(scale: pd.DataFrame) -> pd.DataFrame:
    """Per variant, the cheapest search point reaching the target on real vectors and on the generator's at
    the same N (the real corpus; the pooled real vectors), and the ratio of search effort generator / real."""
    frame = latest(scale)
    rows = []
    for real_source, fake_source in (("real", "gmm"), ("pooled", "gmm-pooled")):
        real = frame[frame["source"] == real_source]
        for _, r in real.iterrows():
            fake = frame[(frame["source"] == fake_source) & (frame["n"] == r["n"]) & (frame["variant"] == r["variant"])]
            if fake.empty or not search_effort(r["search_tried"])[0]:
                continue  # nothing to compare where the grid has no knob (exact, exhaustive scans)
            f = fake.iloc[0]
            name, real_effort = search_effort(r["search_tried"])
            _, fake_effort = search_effort(f["search_tried"])
            rows.append({"variant": r["variant"], "N": int(r["n"]), "vectors": f"{real_source} / {fake_source}",
                         "knob": name or "-", "real": real_effort, "generated": fake_effort,
                         "generated / real": fake_effort / real_effort if real_effort else float("nan"),
                         "real recall": r["recall_at_k"], "generated recall": f["recall_at_k"],
                         "real p95 ms": r["search_p95_ms"], "generated p95 ms": f["search_p95_ms"],
                         "reached (real, generated)": f"{'yes' if r['reached'] else 'NO'}, "
                                                      f"{'yes' if f['reached'] else 'NO'}"})
    return pd.DataFrame(rows)


def build_grid(scale: pd.DataFrame, backend: str = "hnsw") -> pd.DataFrame:
    """Every build of `backend` at each generated N: the search effort it needed, recall, p95, build time, bytes."""
    frame = latest(scale)
    frame = frame[(frame["backend"] == backend) & (frame["source"] == "gmm")]
    rows = []
    for _, r in frame.sort_values(["n", "variant"]).iterrows():
        name, effort = search_effort(r["search_tried"])
        rows.append({"N": int(r["n"]), "variant": r["variant"], "measured": _when(r), "knob": name or "-",
                     "at target": effort,
                     "recall": r["recall_at_k"], "reached": bool(r["reached"]), "p95 ms": r["search_p95_ms"],
                     "build s": r["build_s"], "MB": r["index_bytes"] / 2**20})
    return pd.DataFrame(rows)


def relative_sd(rows: pd.DataFrame, normalized: bool = False) -> float:
    """The pooled relative standard deviation of one encoder's p50 between rounds (SD of log p50 within each
    (series, encoder), pooled over them): the noise of one timed figure. `normalized`: of p50 / kernel."""
    values = rows["p50_ms"] / rows["kernel_ms"] if normalized else rows["p50_ms"]
    logs = np.log(values).groupby([rows["series"], rows["encoder"]])
    return float(np.sqrt(logs.var(ddof=1).mean()))


def spread_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per encoder: p50 per round, the spread (max / min - 1) of p50 and of p50 / kernel."""
    rows = rows.assign(normalized=rows["p50_ms"] / rows["kernel_ms"])
    wide = rows.pivot(index="encoder", columns="round", values="p50_ms")
    wide.columns = [f"p50 ms round {r}" for r in wide.columns]
    by_encoder = rows.groupby("encoder")
    wide["p50 spread"] = by_encoder["p50_ms"].max() / by_encoder["p50_ms"].min() - 1
    wide["p50/kernel spread"] = by_encoder["normalized"].max() / by_encoder["normalized"].min() - 1
    wide["architecture"] = by_encoder["architecture"].first()
    return wide.reset_index()


def architecture_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per architecture shared by several encoders: their p50s over all rounds, and max / min - 1."""
    groups = []
    for arch, group in rows.groupby("architecture"):
        if group["encoder"].nunique() < 2:
            continue
        medians = group.groupby("encoder")["p50_ms"].median()
        groups.append({"architecture": arch, "encoders": ", ".join(medians.index),
                       "median p50 ms each": ", ".join(f"{v:.3g}" for v in medians),
                       "spread": medians.max() / medians.min() - 1})
    return pd.DataFrame(groups)


def with_composed(frame: pd.DataFrame, composed: pd.DataFrame | None) -> pd.DataFrame:
    """Sweep rows with one end-to-end figure each: where a composed run of the same cell on the same host exists (the
    latest), `e2e_p50/p95/p99_ms` are its (every query through every stage in one loop, as deployed), the sweep's
    kept as `sweep_e2e_*_ms` and the composed ones also as `composed_e2e_*_ms` (NaN elsewhere); `e2e_figure` says
    which ("composed run" or "sweep"). A budget, a tie-break and a table then read the same number."""
    out = frame.copy()
    names = ["composed_e2e_p50_ms", "composed_e2e_p95_ms", "composed_e2e_p99_ms"]
    if composed is None or composed.empty:
        out = out.assign(**{name: np.nan for name in names})
    else:
        latest = (composed.sort_values("measured_at").drop_duplicates(["sweep_cell_id", "host_id"], keep="last")
                  .drop(columns=["cell_id"]).rename(columns={"sweep_cell_id": "cell_id", "e2e_p50_ms": names[0],
                                                             "e2e_p95_ms": names[1], "e2e_p99_ms": names[2]}))
        out = out.reset_index().merge(latest[["cell_id", "host_id", *names]], on=["cell_id", "host_id"],
                                      how="left").set_index("index")
    timed = out[names[1]].notna()
    for quantile, name in zip(("p50", "p95", "p99"), names):
        if f"e2e_{quantile}_ms" not in out:  # hand-made frames of tests
            continue
        out[f"sweep_e2e_{quantile}_ms"] = out[f"e2e_{quantile}_ms"]
        out[f"e2e_{quantile}_ms"] = out[name].where(timed, out[f"e2e_{quantile}_ms"])
    out["e2e_figure"] = np.where(timed, "composed run", "sweep")
    return out.copy()


def scale_note(scale: pd.DataFrame | None, row: pd.Series, slopes: pd.DataFrame | None = None) -> str:
    """The cost table's scale column: the measured slopes, for the encoder the scale series ran on only (as the
    row's stage kind puts it: BM25 is not in the series, a fusion quotes its dense side)."""
    from bench.pipeline.stages import kind_of

    return kind_of(row["encoder_type"]).scale_note(_dense_scale_note(scale, row, slopes))


def scale_slopes(scale: pd.DataFrame | None) -> pd.DataFrame:
    """`growth(scale)`, or an empty frame without a scale series: what `scale_note` reads (computed once per table)."""
    return growth(scale) if scale is not None and len(scale) else pd.DataFrame()


def _dense_scale_note(scale: pd.DataFrame | None, row: pd.Series, slopes: pd.DataFrame | None = None) -> str:
    from bench.pipeline.stages.base import model_name

    slopes = scale_slopes(scale) if slopes is None else slopes
    if slopes.empty:
        return "extrapolation: index bytes and build grow ~linearly in N (no scale series given)"
    generator = json.loads(scale["generator"].iloc[0])
    model, dataset = generator.get("model", ""), generator.get("dataset", "").split("/")[0]
    if row["model"] != model or row["dataset"] != dataset or row["encoder_mode"] != "pretrained" or row["passages"]:
        return f"not in the scale series (it ran on {model} vectors of {dataset})"
    own = slopes[slopes["variant"].str.split(" ").str[0] == row["backend"]]  # the cell's own backend's builds
    if own.empty:
        return f"{row['backend']} not in the scale series"
    slope = lambda c: "/".join(f"{v:.2f}" for v in own[f"slope {c}"])  # noqa: E731
    return (f"N {own['sizes'].iloc[0]} generated (a Gaussian mixture fitted to {model_name(model)} vectors of {dataset}, "
            f"not real data): bytes ~ N^{slope('index_bytes')}, p95 ~ N^{slope('search_p95_ms')}")
