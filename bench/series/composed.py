"""Composed runs: the pipelines a budget or the dev frontier could pick, timed as deployed
(`python -m bench composed configs/composed-scifact.toml`; rows in results/composed.parquet).

The sweep times each stage on its own and sums per-query medians into an end-to-end figure; a tail taken that
way hides how stages' slow moments add up. Here each chosen pipeline is rebuilt from its sweep cell
(bench.series.load.build_pipeline) and every test query goes through encode -> search -> rerank in one loop, one query
at a time on `threads` threads, `repetitions` times: every stage and the whole are timed per sample, the
calibration kernel after each query. e2e p50/p95/p99 are percentiles of the per-sample totals; the sweep's
sum-of-medians figures sit beside them (`sweep_e2e_*`).

Which pipelines: the dev-chosen pick under each budget, then the dev frontier (dev nDCG@10 against the sweep's
e2e p95, candidates only: no reranker that adds nothing), cheapest first, up to `max_pipelines`. A pipeline
whose trained model is not in this machine's cache is skipped with a message unless `train = true` (training
is the sweep's cost, not this series').
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import DEFAULT_BUDGETS, Budget, candidates, pareto
from bench.core.cache import content_key
from bench.pipeline.config import SweepConfig, check_all, from_table, load_config, read_toml
from bench.core.env import host_id, measured_now, run_metadata
from bench.series.picks import Chosen, Picks, rows_here
from bench.series.pipeline_gate import STAGES, time_stages
from bench.store.results import COMPOSED_SCHEMA, ResultStore, read_results
from bench.core.timing import online_threads
from bench.run.prepare import Rerankers, resolve_encoder, sweep_splits
from bench.series.load import build_pipeline


@dataclass(frozen=True)
class ComposedConfig:
    name: str
    sweep: str  # the sweep config whose results the pipelines are chosen from and rebuilt by
    budgets: list[list[float]] = field(default_factory=lambda: [[b.p95_ms, b.memory_mb] for b in DEFAULT_BUDGETS])
    frontier: bool = True  # also the dev nDCG@10 / e2e p95 frontier
    max_pipelines: int = 30
    queries: int = 0  # the first N test queries (0: all)
    repetitions: int = 3  # passes over the queries
    warmup: int = 10  # untimed queries per pipeline
    threads: int = 1  # torch / BLAS threads per query
    train: bool = False  # train missing models (else such pipelines are skipped)
    results: str = ""

    def __post_init__(self):
        check_all([(self.max_pipelines >= 1, "max_pipelines must be >= 1"), (self.queries >= 0, "queries must be >= 0"),
                   (self.repetitions >= 1, "repetitions must be >= 1"), (self.warmup >= 0, "warmup must be >= 0"),
                   (self.threads >= 1, "threads must be >= 1"),
                   (all(len(b) == 2 for b in self.budgets), "budgets: each is [p95 ms, memory MB]")])
        for p95, memory in self.budgets:
            Budget(p95, memory)

    @property
    def results_path(self) -> Path:
        return Path(self.results or "results/composed.parquet")

    def settings(self) -> dict:
        """What a row's figures depend on besides the pipeline (its id hashes them)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k in ("queries", "repetitions", "warmup", "threads")}


def load_composed_config(path: Path | str) -> ComposedConfig:
    config = from_table(ComposedConfig, read_toml(path), str(path))
    load_config(config.sweep)  # a bad sweep config is named now
    return config


def choose_pipelines(config: ComposedConfig, frame: pd.DataFrame) -> list[Chosen]:
    """Each budget's pick, then the dev frontier cheapest first; a pipeline chosen twice once, with both reasons."""
    rows = rows_here(frame)
    picks = Picks(config.max_pipelines)
    picks.add_budget_picks(rows, config.budgets, lambda p95, memory: f"budget {p95:g} ms / {memory:g} MB")
    if config.frontier:
        for _, row in pareto(candidates(rows), "dev_ndcg_at_10", "e2e_p95_ms").iterrows():
            picks.add(row, "dev frontier")
    return picks.list()


def missing_models(sweep: SweepConfig, row: pd.Series, data_root: Path | None) -> list[str]:
    """Models of the row's pipeline that would have to be trained first (not in this machine's cache)."""
    spec = next(e for e in sweep.encoders if e.name == row["encoder"])
    resolved = resolve_encoder(spec, sweep, data_root)
    resolved = resolved.dense or resolved
    missing = [f"encoder '{spec.name}'"] if resolved.tower is not None and not Path(resolved.model).exists() else []
    if row["stage"] == "rerank":
        trained = Rerankers(sweep, data_root).training(row["reranker"])
        if trained is not None and not trained[2].exists():
            missing.append(f"reranker '{row['reranker']}'")
    return missing


def time_composed(pipeline, texts: list[str], repetitions: int, warmup: int) -> dict[str, np.ndarray]:
    """Per-sample milliseconds of each stage, of the whole (`e2e`, measured, not summed) and of the kernel:
    (repetitions x queries) each (the pipeline gate's loop, bench.series.pipeline_gate.time_stages)."""
    samples, _ = time_stages(pipeline, texts, repetitions, warmup)
    return {name: values / 1e6 for name, values in samples.items()}


def composed_columns(samples: dict[str, np.ndarray]) -> dict:
    """Percentiles of every stage and of the measured totals; the same run summarized the way the sweep's e2e was
    before per-sample sums (each stage's per-query median over the passes, summed per query: `medians_e2e_*`), so
    the method's effect is read on the same samples; the kernel's median."""
    out = {}
    medians = sum(np.median(samples[name], axis=0) for name in STAGES)
    for name, values in (*((name, samples[name]) for name in (*STAGES, "e2e")), ("medians_e2e", medians)):
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        out.update({f"{name}_p50_ms": float(p50), f"{name}_p95_ms": float(p95), f"{name}_p99_ms": float(p99)})
    out["e2e_mean_ms"] = float(samples["e2e"].mean())
    out["calibration_ms"] = float(np.median(samples["kernel"]))
    return out


def run_composed(config: ComposedConfig, data_root: Path | None = None, store: ResultStore | None = None,
                 announce=None) -> int:
    """Time every chosen pipeline not yet stored for this host with these settings; returns rows written."""
    announce = announce or (lambda text: print(text, file=sys.stderr, flush=True))
    store = store or ResultStore(config.results_path, COMPOSED_SCHEMA)
    sweep = load_config(config.sweep)
    chosen = choose_pipelines(config, read_results(sweep.results_path))
    texts = list(sweep_splits(sweep, data_root).test.query_texts)
    texts = texts[: config.queries or None]
    done = store.done(host_id())
    metadata = run_metadata(content_key(dataclasses.asdict(config)))
    written = 0
    for item in chosen:
        row = item.row
        cell_id = content_key({"sweep_cell_id": row["cell_id"], **config.settings()})
        if cell_id in done:
            continue
        missing = missing_models(sweep, row, data_root)
        if missing and not config.train:
            announce(f"{config.name}: skipped {row['pipeline']} ({item.why}): {', '.join(missing)} not trained on this "
                     "machine (train = true trains it first)")
            continue
        announce(f"{config.name}: timing {row['pipeline']} ({item.why}), {len(texts)} queries x {config.repetitions}")
        with online_threads(config.threads):
            pipeline = build_pipeline(sweep, row, data_root, build_threads=config.threads)
            samples = time_composed(pipeline, texts, config.repetitions, config.warmup)
        store.add({
            **metadata, "cell_id": cell_id, "config_name": config.name, "sweep_cell_id": row["cell_id"],
            "pipeline_id": row["pipeline_id"], "pipeline": row["pipeline"], "dataset": row["dataset"],
            "chosen_as": item.why, "queries": len(texts), "repetitions": config.repetitions,
            "samples": int(samples["e2e"].size), "threads": config.threads, **composed_columns(samples),
            "sweep_e2e_p50_ms": row["e2e_p50_ms"], "sweep_e2e_p95_ms": row["e2e_p95_ms"],
            "sweep_e2e_p99_ms": row["e2e_p99_ms"], "sweep_calibration_ms": row["calibration_ms"],
            "measured_at": measured_now()})
        written += 1
        del pipeline
    return written
