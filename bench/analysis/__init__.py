"""Statistics and selection over results rows: intervals, paired tests, Pareto frontiers, choosing under a budget.

The rules (the report states them where it uses them):
- choose on dev, report on test: every "best" is the dev-best row, then the cheapest row whose dev nDCG@10 is
  not significantly below it (one-sided paired t-test over the dev queries at `ALPHA`); its test numbers are
  reported once, with a 95% interval.
- "cheapest": lowest end-to-end p95; p95s within `LATENCY_TIE` (relative) of the lowest are a tie (timing noise),
  broken by memory (exact bytes: the smallest wins), then by higher dev recall@K, then by higher dev nDCG@10.
- intervals: a t-interval of the mean over queries (scipy.stats.t), 95%.
- comparisons: paired t-test (or Wilcoxon signed-rank) per query, Holm-corrected over the family with
  statsmodels' multipletests.
Nothing here renders text; bench.render does. May import core, data, search and pipeline (stage descriptions, pipeline
ids); never models, run or series (tests/test_layout.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from bench.core.figures import timing_text
from bench.search.catalog import CATALOG
from bench.pipeline.ids import Pipeline, pipeline_columns
from bench.pipeline.stages import Dense, Fusion, Lexical, Rerank
from bench.pipeline.stages.base import model_label
from bench.core.timing import E2E_METHOD  # noqa: F401 (how the sweep's e2e columns are made now)
from bench.search.fusion import fusion_label

MB = 2**20
ALPHA = 0.05  # one-sided significance level of "worse than the dev-best"
# Relative p95 difference treated as a tie. Measured (`make encode-latency`, results/encode_latency.parquet): the
# same query-encode p50 timed minutes apart on one host has a relative SD of 2-6% (4.6% pooled over eight series of
# 12 encoders x 3 rounds), so two independently timed p50s differ by up to 1.96 * sqrt(2) * 4.6% ~ 13% on noise
# alone; a p95 rests on fewer samples, hence 15%. `make report` recomputes both figures ("Repeatability of query
# encoding") from the stored series.
LATENCY_TIE = 0.15
CONFIDENCE = 0.95
MEASURES = {"ndcg_at_10": "nDCG@10", "recall_at_100": "R@100", "rr_at_10": "MRR@10"}

# Short names for long parameters in tables, as each backend names them (the parquet keeps the library's names).
ABBREVIATIONS = {name: short for listing in CATALOG.values() for name, short in listing.short_names.items()}


def short_names_of(backends) -> dict[str, str]:
    """The short names tables give the parameters of `backends` (catalog order; a name shared by two backends once)."""
    present = set(backends)
    return {name: short for backend, listing in CATALOG.items() if backend in present
            for name, short in listing.short_names.items()}


HIDDEN_PARAMS = {"seed", "random_init", "training_sample_size"}  # in the parquet, not in tables


def params_text(text: str) -> str:
    return " ".join(f"{ABBREVIATIONS.get(k, k)}={v}" for k, v in json.loads(text).items()
                    if k not in HIDDEN_PARAMS and v is not None) or "-"


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows plus the columns the analysis and the report reason with. Text columns are plain Python strings (object):
    the same values, and selecting rows does not go through Arrow's take once per column."""
    out = frame.copy()
    out["config"] = out["build_params"].map(params_text) + " / " + out["search_params"].map(params_text)
    alpha = np.where(out["fusion_alpha_chosen_on"] == "dev", "dev", out["fusion_alpha"].map("{:.2f}".format))
    # typed fields in place of the stored sentinels (rerank_depth_rule "", n_dev_queries 0, stage2 "-"):
    # rerank_depth: "fixed" or "adaptive" (a depth per query up to R) on rerank rows, None on first-stage rows;
    # has_dev_queries: whether settings could be chosen on dev queries (else on test, and said so)
    rule = out["rerank_depth_rule"].fillna("") if "rerank_depth_rule" in out else ""  # frames of rows before it
    reranked = out["stage"] == "rerank"
    out["rerank_depth"] = pd.Series(np.where(rule != "", "adaptive", "fixed"), index=out.index).where(reranked, None)
    out["has_dev_queries"] = out["n_dev_queries"] > 0
    adaptive = np.where(out["rerank_depth"] == "adaptive", " adaptive", "")
    # the reranker by its weights' readable name (one config name may have run two sets of weights), as configured
    label = out["reranker_identity"].fillna("").map(lambda identity: model_label(identity) if identity else "")
    out["stage2"] = pd.Series(label + " a=" + alpha + adaptive, index=out.index).where(reranked, None)
    chosen = np.where(out["fusion_alpha_chosen_on"] == "dev", " (a=" + out["fusion_alpha"].map("{:.2f}".format) + ")", "")
    # the query network as served (rows before `encoder_bytes`: float32, 4 bytes per parameter), the index, the reranker
    out["model_mb"] = out["encoder_bytes"].fillna(4 * out["encoder_params"]) / MB
    out["memory_mb"] = out["model_mb"] + (out["index_bytes"] + 4 * out["reranker_params"]) / MB
    out["passages"] = out["n_chunks"] > 0  # indexed as token-window passages (else whole documents)
    vectors = out["n_chunks"].where(out["passages"], out["n_docs"])
    out["embeddings_mb"] = vectors * out["dim"] * 4 / MB
    out["saw_eval_docs"] = out["encoder_saw_eval_docs"] | out["reranker_saw_eval_docs"]
    out["row_label"] = (out["encoder"] + " + " + out["backend"] + " " + out["config"] + " K=" + out["k"].astype(str)
                        + np.where(out["stage"] == "rerank", " + " + out["stage2"] + chosen + " R=" + out["r"].astype(str), ""))
    out = out.join(pipeline_columns(out))
    out = out.join(stage_contribution_columns(out))  # `pipeline`: the name with the values tuned settings took here
    return out.astype({name: object for name, dtype in out.dtypes.items() if isinstance(dtype, pd.StringDtype)}).copy()


# ---------------------------------------------------------------- per-query values and intervals


def per_query(row: pd.Series, measure: str = "ndcg_at_10", split: str = "test") -> pd.Series:
    """A row's per-query values of `measure` on the test or the dev queries, indexed by query id."""
    prefix = "" if split == "test" else "dev_"
    return pd.Series(np.asarray(row[f"{prefix}q_{measure}"], dtype=float), index=list(row[f"{prefix}query_ids"]))


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(mean, half-width) of the t-interval for the mean of `values`."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if len(values) else float("nan")
    if len(values) < 2:
        return mean, float("nan")
    sem = float(values.std(ddof=1)) / np.sqrt(len(values))
    return mean, float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * sem)


# ---------------------------------------------------------------- paired tests


def paired_p(diff: np.ndarray, test: str = "t", alternative: str = "two-sided") -> float:
    """p-value of a paired test on per-query differences; identical lists give 1."""
    diff = np.asarray(diff, dtype=float)
    if not np.any(diff):
        return 1.0
    if test == "wilcoxon":
        return float(stats.wilcoxon(diff, alternative=alternative).pvalue)
    if np.allclose(diff, diff[0]):  # constant non-zero difference: no variance to test against
        return 0.0 if (alternative != "less" and diff[0] > 0) or (alternative != "greater" and diff[0] < 0) else 1.0
    return float(stats.ttest_1samp(diff, 0.0, alternative=alternative).pvalue)


def paired_p_rows(diffs: np.ndarray, alternative: str = "two-sided") -> np.ndarray:
    """`paired_p(d, "t", alternative)` for each row `d` of `diffs`, in one call (scipy's t-test along the rows gives
    the same floats as one row at a time)."""
    diffs = np.asarray(diffs, dtype=float)
    p = np.ones(len(diffs))
    varies = ~np.isclose(diffs, diffs[:, :1]).all(axis=1)
    if varies.any():
        p[varies] = stats.ttest_1samp(diffs[varies], 0.0, axis=1, alternative=alternative).pvalue
    for i in np.flatnonzero(~varies):  # zero or a constant difference: paired_p's own rule
        p[i] = paired_p(diffs[i], "t", alternative)
    return p


def holm(p_values) -> list[float]:
    """Holm-adjusted p-values (statsmodels), in input order."""
    p_values = list(p_values)
    return multipletests(p_values, method="holm")[1].tolist() if p_values else []


def paired_tests(baseline: pd.Series, systems: pd.DataFrame, measure: str = "ndcg_at_10", test: str = "t",
                 split: str = "test", queries: list[str] | None = None) -> pd.DataFrame:
    """Each system row against the baseline row on the same queries (`queries` restricts them): mean,
    difference with its 95% t-interval, paired p-value and Holm's correction over the systems."""
    base = per_query(baseline, measure, split)
    if queries is not None:
        base = base.reindex(queries)
    rows = []
    for _, row in systems.iterrows():
        other = per_query(row, measure, split).reindex(base.index)
        if other.isna().any() or base.isna().any():
            raise ValueError(f"paired test needs the same queries in both rows ({row.get('label', '')})")
        diff = other.to_numpy() - base.to_numpy()
        mean, half = t_interval(other)
        delta, delta_half = t_interval(diff)
        rows.append({"system": row.get("label", row.get("pipeline", "")), measure: mean, "ci": half,
                     "delta": delta, "delta_ci": delta_half, "p": paired_p(diff, test),
                     "improved": int((diff > 0).sum()), "worsened": int((diff < 0).sum())})
    table = pd.DataFrame(rows)
    if len(table):
        table["p_holm"] = holm(table["p"])
    return table


# ---------------------------------------------------------------- Pareto


def pareto(frame: pd.DataFrame, quality: str, cost: str) -> pd.DataFrame:
    """Rows not dominated (higher quality at no higher cost), sorted by cost."""
    ordered = frame.sort_values([cost, quality], ascending=[True, False])
    best, keep = -np.inf, []
    for index, value in ordered[quality].items():
        if value > best:
            keep.append(index)
            best = value
    return ordered.loc[keep]


# ---------------------------------------------------------------- choosing


class NothingFits(ValueError):
    """No configuration meets the budgets."""


@dataclass(frozen=True)
class Budget:
    p95_ms: float
    memory_mb: float
    min_recall: float = 0.0

    def __post_init__(self):
        for name in ("p95_ms", "memory_mb"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"{name.replace('_', '-')} must be a positive number, got {value}")
        if not 0 <= self.min_recall <= 1:
            raise ValueError(f"min-recall must be in [0, 1], got {self.min_recall}")


@dataclass(frozen=True)
class Choice:
    """A dev-chosen row: the dev-best, the cheapest row tied with it, and what the choice rests on."""

    pick: pd.Series
    dev_best: pd.Series
    ties: pd.DataFrame  # rows whose dev nDCG@10 is not significantly below the dev-best (the pick among them)
    candidates: int  # rows considered
    p_vs_best: float  # one-sided paired p of "the pick is worse than the dev-best" on dev

    def test_interval(self, measure: str = "ndcg_at_10") -> tuple[float, float]:
        return t_interval(self.pick[f"q_{measure}"])

    def dev_interval(self, measure: str = "ndcg_at_10") -> tuple[float, float]:
        return t_interval(self.pick[f"dev_q_{measure}"])


def _dev_matrix(rows: pd.DataFrame) -> np.ndarray:
    """Per-query dev nDCG@10, one row per results row, columns aligned by query id."""
    ids = list(rows["dev_query_ids"].iloc[0])
    first = np.asarray(ids)
    if all(len(q) == len(first) and np.array_equal(q, first) for q in rows["dev_query_ids"]):
        return np.vstack([np.asarray(v, dtype=float) for v in rows["dev_q_ndcg_at_10"]])
    matrix = []
    for _, row in rows.iterrows():
        values = per_query(row, "ndcg_at_10", "dev")
        if list(values.index) != ids:
            values = values.reindex(ids)
            if values.isna().any():
                raise ValueError("rows to choose among must share their dev queries (one dataset at a time)")
        matrix.append(values.to_numpy())
    return np.vstack(matrix)


def _cheapest(rows: pd.DataFrame) -> pd.Series:
    """Lowest e2e p95, where p95s within LATENCY_TIE (relative) of the lowest tie (timing noise); among those the
    least memory (bytes are exact, so any difference counts), then higher dev recall@K, then dev nDCG@10."""
    fastest = rows["e2e_p95_ms"].min()
    close = rows[rows["e2e_p95_ms"] <= fastest * (1 + LATENCY_TIE)]
    return close.sort_values(["memory_mb", "dev_recall_at_k", "dev_ndcg_at_10", "e2e_p95_ms", "cell_id"],
                             ascending=[True, False, False, True, True]).iloc[0]


def choose(rows: pd.DataFrame, alpha: float = ALPHA) -> Choice:
    """The dev-best row, then the cheapest row whose dev nDCG@10 is not significantly below it."""
    if rows.empty:
        raise NothingFits("no rows to choose from")
    if rows["dataset"].nunique() > 1:
        raise ValueError(f"choose within one dataset at a time, got {sorted(rows['dataset'].unique())}")
    rows = rows if "memory_mb" in rows else with_derived(rows)
    order = rows.sort_values(["dev_ndcg_at_10", "e2e_p95_ms", "cell_id"], ascending=[False, True, True])
    best = order.iloc[0]
    matrix = _dev_matrix(order)
    diffs = matrix[0] - matrix  # best minus each, per dev query
    p = paired_p_rows(diffs, "greater")
    tied = order[p >= alpha]
    pick = _cheapest(tied)
    return Choice(pick=pick, dev_best=best, ties=tied, candidates=len(rows),
                  p_vs_best=float(p[list(order.index).index(pick.name)]))


def within(rows: pd.DataFrame, budget: Budget) -> pd.DataFrame:
    rows = rows if "memory_mb" in rows else with_derived(rows)
    return rows[(rows["e2e_p95_ms"] <= budget.p95_ms) & (rows["memory_mb"] <= budget.memory_mb)
                & (rows["dev_recall_at_k"] >= budget.min_recall)]


def recommend(frame: pd.DataFrame, budget: Budget, exclude_seen: bool = False) -> Choice:
    """The dev-chosen configuration within the budget (see `choose`). Raises NothingFits.

    `exclude_seen` leaves out rows of models trained on documents the evaluation queries judge."""
    rows = frame if "memory_mb" in frame else with_derived(frame)
    if exclude_seen:
        rows = rows[~rows["saw_eval_docs"]]
    fits = within(candidates(rows), budget)
    if fits.empty:
        hint = ""
        if len(rows):
            fastest = rows.loc[rows["e2e_p95_ms"].idxmin()]
            hint = (f"; the fastest configuration needs p95 {timing_text(fastest['e2e_p95_ms'])} ms and "
                    f"{fastest['memory_mb']:.1f} MB")
        raise NothingFits(f"no configuration has end-to-end p95 <= {budget.p95_ms} ms, memory <= "
                          f"{budget.memory_mb} MB and recall@K >= {budget.min_recall}{hint}")
    return choose(fits)


CALIBRATION_TOLERANCE = 0.1  # `[measure] calibration_tolerance`'s default (bench.pipeline.config)


def contended(rows: pd.DataFrame, tolerance: float = CALIBRATION_TOLERANCE) -> pd.Series:
    """Rows timed while the host ran slower than the rest of their run: the row's own calibration figure (the kernel
    timed after each of its queries) above its run's median (runs by `timestamp`) by more than `tolerance`. A run's
    median can sit on the host's speed while minutes of it were busy (another job, CI): those rows are not
    comparable with the rest, though the run as a whole is."""
    return rows["calibration_ms"] / run_calibration(rows) > 1 + tolerance


def run_calibration(rows: pd.DataFrame) -> pd.Series:
    """Each row's run figure: the median `calibration_ms` over the rows of its run (runs by `timestamp`; one row's
    figure carries a few % of noise)."""
    return rows.groupby("timestamp")["calibration_ms"].transform("median")


def select(rows: pd.DataFrame) -> pd.Series:
    """The dev-chosen row of a group (the report's "best")."""
    return choose(rows).pick


def reranker_in_use(rows: pd.DataFrame) -> pd.DataFrame:
    """Rerank rows whose order the cross-encoder's scores change. Fused at alpha 0 a row ranks as its first stage
    does and only adds the reranking cost, so it cannot stand for what a reranker does (it is still a valid,
    dominated pipeline for the recommender)."""
    return rows[rows["fusion_alpha"] > 0]


def fastest_at_recall(rows: pd.DataFrame, target: float = 0.95) -> pd.Series | None:
    """The lowest-p95 search cell whose dev recall@K reaches `target` (recall is chosen on dev too)."""
    good = rows[rows["dev_recall_at_k"] >= target]
    if good.empty:
        return None
    return good.sort_values(["search_p95_ms", "cell_id"]).iloc[0]


CONFIGURATION = "pipeline_id"  # what a configuration is across datasets: the same pipeline (bench.pipeline.ids)


@dataclass(frozen=True)
class MeanChoice:
    """A configuration chosen over the mean of several datasets' dev nDCG@10 (each dataset weighs the same)."""

    pick: pd.DataFrame  # its row on each dataset
    dev_best: pd.DataFrame
    ties: int
    candidates: int
    p_vs_best: float

    def interval(self, split: str = "test") -> tuple[float, float]:
        """Mean over datasets of the per-dataset means, and its 95% half-width (independent datasets)."""
        prefix = "" if split == "test" else "dev_"
        return mean_of_means_interval(list(self.pick[f"{prefix}q_ndcg_at_10"]))


def mean_of_means_interval(samples: list) -> tuple[float, float]:
    """Mean over independent datasets of their per-query means, and its 95% half-width."""
    mean, se, df = _mean_of_means([np.asarray(v, dtype=float) for v in samples])
    return mean, float(stats.t.ppf(0.5 + CONFIDENCE / 2, df) * se)


def _mean_of_means(samples: list[np.ndarray]) -> tuple[float, float, int]:
    """Mean of independent samples' means, its standard error, and a conservative df (the smallest sample's)."""
    mean = float(np.mean([s.mean() for s in samples]))
    se = float(np.sqrt(sum(s.var(ddof=1) / len(s) for s in samples))) / len(samples)
    return mean, se, min(len(s) for s in samples) - 1


def recommend_over_mean(frame: pd.DataFrame, budget: Budget, alpha: float = ALPHA,
                        exclude_seen: bool = False) -> MeanChoice:
    """Over several datasets: configurations within the budget on every dataset; the best mean dev nDCG@10, then
    the cheapest (worst-dataset p95 within LATENCY_TIE, then memory, then mean dev recall@K) whose mean dev nDCG@10
    is not significantly below it (one-sided t-test on the mean of per-dataset paired differences, Welch-style
    standard error, smallest dataset's df). `exclude_seen` leaves out models trained on documents the evaluation
    queries judge, as `recommend` does."""
    rows = frame if "memory_mb" in frame else with_derived(frame)
    if exclude_seen:
        rows = rows[~rows["saw_eval_docs"]]
    datasets = sorted(rows["dataset"].unique())
    fits = within(candidates(rows), budget)
    counts = fits.groupby(CONFIGURATION)["dataset"].nunique()
    keys = set(counts[counts == len(datasets)].index)
    if not keys:
        raise NothingFits(f"no configuration fits end-to-end p95 <= {budget.p95_ms} ms and memory <= "
                          f"{budget.memory_mb} MB on every one of {', '.join(datasets)}")
    by_key = {key: group.set_index("dataset").loc[datasets]
              for key, group in fits[fits[CONFIGURATION].isin(keys)].groupby(CONFIGURATION)}
    mean_dev = {key: float(group["dev_ndcg_at_10"].mean()) for key, group in by_key.items()}
    best = max(by_key, key=lambda key: (mean_dev[key], -by_key[key]["e2e_p95_ms"].max()))
    p_values = {}
    for key, group in by_key.items():
        diffs = [per_query(by_key[best].loc[d], split="dev").to_numpy() - per_query(group.loc[d], split="dev").to_numpy()
                 for d in datasets]
        mean, se, df = _mean_of_means(diffs)  # best minus this configuration
        p_values[key] = float(stats.t.sf(mean / se, df)) if se > 0 else (0.0 if mean > 0 else 1.0)
    tied = [key for key in by_key if p_values[key] >= alpha]
    cost = pd.DataFrame([{"key": key, "p95": by_key[key]["e2e_p95_ms"].max(), "memory": by_key[key]["memory_mb"].max(),
                          "recall": by_key[key]["dev_recall_at_k"].mean(), "dev": mean_dev[key]} for key in tied])
    close = cost[cost["p95"] <= cost["p95"].min() * (1 + LATENCY_TIE)]
    pick = close.sort_values(["memory", "recall", "dev", "p95"], ascending=[True, False, False, True]).iloc[0]["key"]
    return MeanChoice(pick=by_key[pick], dev_best=by_key[best], ties=len(tied), candidates=len(keys),
                      p_vs_best=p_values[pick])


DEFAULT_BUDGETS = [Budget(5, 200), Budget(10, 100), Budget(50, 200), Budget(300, 200), Budget(1000, 500),
                   Budget(10000, 1000)]


# ---------------------------------------------------------------- seen / unseen positives


def seen_split(frame: pd.DataFrame) -> tuple[set[str], dict]:
    """The dev/test query ids with a relevant document that is a train positive, and the protocol record."""
    protocol = json.loads(frame["protocol"].iloc[0] or "{}")
    guard = protocol.get("guard") or {}
    return set(guard.get("seen_query_ids", [])), protocol


# ---------------------------------------------------------------- what each stage adds


def _paired_diff(ids, values, other_ids, other_values, split: str) -> np.ndarray:
    """Per-query differences of `values` minus `other_values`, aligned by query id."""
    if len(ids) == len(other_ids) and np.array_equal(ids, other_ids):
        diff = np.asarray(values, dtype=float) - np.asarray(other_values, dtype=float)
    else:
        other = pd.Series(np.asarray(other_values, dtype=float), index=list(other_ids))
        diff = np.asarray(values, dtype=float) - other.reindex(list(ids)).to_numpy()
    if np.isnan(diff).any():
        raise ValueError(f"paired delta needs the same {split} queries in both rows")
    return diff


def _paired_delta(row: pd.Series, other: pd.Series, split: str) -> tuple[float, float, float]:
    """Mean per-query nDCG@10 of `row` minus `other` on `split`'s queries, its 95% half-width, and the one-sided
    paired p of "row is better"."""
    prefix = "" if split == "test" else "dev_"
    diff = _paired_diff(row[f"{prefix}query_ids"], row[f"{prefix}q_ndcg_at_10"], other[f"{prefix}query_ids"],
                        other[f"{prefix}q_ndcg_at_10"], split)
    mean, half = t_interval(diff)
    return mean, half, paired_p(diff, "t", "greater")


STAGE_COLUMNS = ["stage_delta_dev", "stage_delta_dev_ci", "stage_p_dev", "stage_delta_test", "stage_delta_test_ci",
                 "stage_p_test", "adds_nothing"]


def stage_contribution_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """A reranked row's own gain: nDCG@10 paired against the same pipeline without its reranker (its first stage,
    `first_stage_id`, same dataset), on dev (`stage_delta_dev` ± `_ci`, one-sided p) and on test. `adds_nothing`:
    fused at alpha 0, or no significant gain on dev (one-sided p >= ALPHA) - the row ranks as its first stage does
    at more cost, so it is not a separate candidate. First-stage rows, and rows whose first stage is not in the
    frame: NaN and False."""
    out = pd.DataFrame(index=frame.index, columns=STAGE_COLUMNS, dtype=float)
    out["adds_nothing"] = False
    first_at: dict[tuple, int] = {}  # (dataset, pipeline_id) -> the position of its first first-stage row
    for position, (stage, dataset, pipeline_id) in enumerate(zip(frame["stage"], frame["dataset"], frame["pipeline_id"])):
        if stage == "first":
            first_at.setdefault((dataset, pipeline_id), position)
    rows = [(position, first_at[(dataset, first_id)]) for position, (stage, dataset, first_id)
            in enumerate(zip(frame["stage"], frame["dataset"], frame["first_stage_id"]))
            if stage == "rerank" and (dataset, first_id) in first_at]
    if not rows:
        out["adds_nothing"] = out["adds_nothing"].astype(bool)
        return out
    columns = {name: frame[name].tolist() for name in ("query_ids", "q_ndcg_at_10", "dev_query_ids", "dev_q_ndcg_at_10")}
    values = np.full((len(rows), 6), np.nan)
    for column, prefix in ((0, "dev_"), (3, "")):
        diffs = [_paired_diff(columns[f"{prefix}query_ids"][row], columns[f"{prefix}q_ndcg_at_10"][row],
                              columns[f"{prefix}query_ids"][parent], columns[f"{prefix}q_ndcg_at_10"][parent],
                              prefix.rstrip("_") or "test") for row, parent in rows]
        for i, diff in enumerate(diffs):
            values[i, column:column + 2] = t_interval(diff)
        for length in {len(diff) for diff in diffs}:  # one scipy call per query count: the same floats as one by one
            same = [i for i, diff in enumerate(diffs) if len(diff) == length]
            values[same, column + 2] = paired_p_rows(np.vstack([diffs[i] for i in same]), "greater")
    where = frame.index[[row for row, _ in rows]]
    out.loc[where, STAGE_COLUMNS[:6]] = values
    alpha_zero = (frame.loc[where, "fusion_alpha"] == 0).to_numpy()
    out.loc[where, "adds_nothing"] = alpha_zero | (values[:, 2] >= ALPHA) | (values[:, 0] <= 0)
    out["adds_nothing"] = out["adds_nothing"].astype(bool)
    return out


def candidates(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows that stand for a pipeline of their own: not a reranker that adds nothing over its first stage."""
    return rows[~rows["adds_nothing"]] if "adds_nothing" in rows else rows


def fusion_members(frame: pd.DataFrame, row: pd.Series) -> dict[str, pd.Series]:
    """A fused first stage's members run alone at the same K on the same dataset: its dense side (same model, index
    and search settings) and BM25; those present in `frame`."""
    fusion = Pipeline.of_row(row).first
    if not isinstance(fusion, Fusion):
        return {}
    same = frame[(frame["dataset"] == row["dataset"]) & (frame["stage"] == "first") & (frame["k"] == row["k"])]
    members = {}
    dense = same[same["pipeline_id"] == Pipeline(fusion.dense, int(row["k"])).pipeline_id]
    if len(dense):
        members["dense alone"] = dense.iloc[0]
    lexical = same[same["first_stage_kind"] == Lexical.kind]
    if len(lexical):
        members["BM25 alone"] = lexical.iloc[0]
    return members


def contribution_table(frame: pd.DataFrame) -> pd.DataFrame:
    """What each added stage contributes, per dataset: for each reranker over each first stage (encoder and backend),
    and each fusion over each backend, the dev-chosen row of the group (see `select`) with its paired nDCG@10 delta
    against the same pipeline without that stage (a fusion: against each member alone), on dev (the choice rests on
    it) and on test (reported once); how many rows of the group add something on dev."""
    rows = frame if "adds_nothing" in frame else with_derived(frame)
    out = []
    for (dataset, encoder, backend, reranker), group in rows[rows["stage"] == "rerank"].groupby(
            ["dataset", "encoder", "backend", "reranker_identity"]):
        group = group.dropna(subset=["stage_delta_dev"])
        if group.empty:
            continue
        pick = select(group)
        out.append({"dataset": dataset, "stage": Rerank.of_row(pick).name(),
                    "over": f"{encoder} · {backend}", "against": "its first stage", "pipeline": pick["pipeline"],
                    "rows adding on dev": f"{int((~group['adds_nothing']).sum())} of {len(group)}",
                    **_delta_cells(pick["stage_delta_dev"], pick["stage_delta_dev_ci"], pick["stage_p_dev"],
                                   pick["stage_delta_test"], pick["stage_delta_test_ci"], pick["stage_p_test"]),
                    "adds": "adds nothing here" if pick["adds_nothing"] else "adds"})
    fused = rows[(rows["stage"] == "first") & (rows["first_stage_kind"] == Fusion.kind)]
    for (dataset, encoder, backend), group in fused.groupby(["dataset", "encoder", "backend"]):
        pick = select(group)
        for member, alone in fusion_members(rows, pick).items():
            dev, test = _paired_delta(pick, alone, "dev"), _paired_delta(pick, alone, "test")
            adds = sum(1 for _, r in group.iterrows() if _member_adds(rows, r, member))
            out.append({"dataset": dataset, "stage": Fusion.of_row(pick).rule_name(),
                        "over": f"{encoder} · {backend}", "against": member, "pipeline": pick["pipeline"],
                        "rows adding on dev": f"{adds} of {len(group)}", **_delta_cells(*dev, *test),
                        "adds": "adds nothing here" if dev[2] >= ALPHA or dev[0] <= 0 else "adds"})
    return pd.DataFrame(out)


def _member_adds(rows: pd.DataFrame, row: pd.Series, member: str) -> bool:
    alone = fusion_members(rows, row).get(member)
    if alone is None:
        return False
    mean, _, p = _paired_delta(row, alone, "dev")
    return p < ALPHA and mean > 0


def _delta_cells(dev: float, dev_ci: float, dev_p: float, test: float, test_ci: float, test_p: float) -> dict:
    return {"dev delta": f"{dev:+.3f} ± {dev_ci:.3f}", "dev p": f"{dev_p:.2g}",
            "test delta": f"{test:+.3f} ± {test_ci:.3f}", "test p": f"{test_p:.2g}"}


# ---------------------------------------------------------------- reference rows (which rows a section compares)

BACKEND_NAMES = list(CATALOG)  # registered backends, in registry order (plot colours)
DENSE, LEXICAL, FUSION = Dense.kind, Lexical.kind, Fusion.kind  # first_stage_kind values, from the stage kinds


def is_reference_encoding(rows: pd.DataFrame) -> pd.Series:
    """fp32 torch on both sides, or no encoding at all (BM25's empty values): the precision and runtime variants
    have their own section."""
    return (rows["query_precision"].isin(["fp32", ""]) & rows["doc_precision"].isin(["fp32", ""])
            & rows["query_runtime"].isin(["torch", ""]) & rows["doc_runtime"].isin(["torch", ""]))


def reference_dense(first: pd.DataFrame) -> pd.DataFrame:
    """Dense encoders' rows over whole documents at the reference encoding (fp32 torch)."""
    return first[(first["first_stage_kind"] == DENSE) & ~first["passages"] & is_reference_encoding(first)]


def baseline_encoder(first: pd.DataFrame) -> str:
    """The pretrained fp32 bi-encoder (the first one by name), else the first dense encoder by name."""
    dense = reference_dense(first)
    pretrained = dense[(dense["encoder_type"] == "bi") & (dense["encoder_mode"] == "pretrained")]
    pool = pretrained if len(pretrained) else dense
    return sorted(pool["encoder"].unique())[0] if len(pool) else ""


def reference_k(rows: pd.DataFrame) -> int:
    return 100 if (rows["k"] == 100).any() else int(rows["k"].max())


def fusion_text(row: pd.Series) -> str:
    """A row's fusion as run ("convex w=0.55 (dev)", "RRF k=60"; "-" for no fusion)."""
    return fusion_label(json.loads(row["search_params"] or "{}"), row.get("fusion_weight_chosen_on", "") or "")
