"""A latency gate for the user's own pipeline (`python -m bench.series.pipeline_gate configs/pipeline_gate.toml`).

`make check-latency` gates the harness's synthetic workload; this gates the configuration a user chose: the
cells of a sweep config recommended under the given budgets (and any cell ids listed), each served end to end
(bench.series.load.ServedPipeline: encode -> search -> rerank). Each repetition sends the same queries one at a time, timing
every stage and, after each query, the calibration kernel; a stage's figures per repetition are its median
over the queries in ms (raw) and divided by the kernel's median (normalized). A stage - or the whole pipeline -
fails when its raw median is more than `tolerance` x the baseline's AND the host's speed does not explain it:
normalized, it is still past half that margin (1.15x for 1.3); each shift significant in a one-sided
Mann-Whitney test over the repetitions at `alpha`. (Normalized alone is not enough: in one run the kernel read
27% slower while the stages did not, which turned an injected 1.5x into a normalized 1.18x.) The ranked lists must equal the baseline's: the
index is built on one thread, so the same code gives the same lists.

`--update-baseline` records the baseline file (on the host CI runs on). `BENCH_SLOWDOWN=encode=1.5` (or
search, rerank) stretches that stage of every pipeline inside the timed region: the way to check the gate fires.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.analysis import Budget, NothingFits, recommend, with_derived
from bench.core.calibration import kernel
from bench.pipeline.config import ConfigError, SweepConfig, from_table, load_config, read_toml
from bench.series.gate import parse_slowdown, slowdown_test, slowed
from bench.search.indexes import ParamError
from bench.store.results import read_results
from bench.core.timing import online_threads
from bench.run.prepare import sweep_splits
from bench.series.load import build_pipeline

STAGES = ("encode", "search", "rerank")


@dataclass(frozen=True)
class PipelineGateConfig:
    name: str
    sweep: str  # the sweep config whose cells are gated (its results file is read to choose them)
    budgets: list[list[float]] = field(default_factory=lambda: [[50.0, 200.0]])  # [p95 ms, memory MB]: recommendations
    cells: list[str] = field(default_factory=list)  # further cells, by cell id (a unique prefix is enough)
    queries: int = 10  # test queries sent per repetition (the first ones)
    repetitions: int = 7
    warmup: int = 3  # untimed queries per pipeline before the repetitions
    tolerance: float = 1.3  # allowed normalized slowdown
    alpha: float = 0.01  # significance level of the one-sided Mann-Whitney test
    baseline: str = ""  # default: results/pipelines/<name>.baseline.json, beside a pipeline block of that name

    def __post_init__(self):
        if self.queries < 1 or self.repetitions < 3 or self.warmup < 0:
            raise ValueError("queries must be >= 1, repetitions >= 3 (the test needs them), warmup >= 0")
        if self.tolerance <= 1 or not 0 < self.alpha < 1:
            raise ValueError("tolerance must be > 1 and alpha in (0, 1)")
        for budget in self.budgets:
            if len(budget) != 2:
                raise ValueError("budgets: each is [p95 ms, memory MB]")
            Budget(*budget)

    @property
    def baseline_path(self) -> Path:
        return Path(self.baseline or f"results/pipelines/{self.name}.baseline.json")

    def workload(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k in ("sweep", "queries", "repetitions", "warmup")}


def load_gate_config(path: Path | str) -> PipelineGateConfig:
    return from_table(PipelineGateConfig, read_toml(path), str(path))


def gated_rows(config: PipelineGateConfig, frame) -> list:
    """The sweep rows to gate: the recommendation under each budget, then the listed cells."""
    frame = with_derived(frame)
    rows = {}
    for p95, memory in config.budgets:
        try:
            pick = recommend(frame, Budget(p95, memory)).pick
        except NothingFits as err:
            raise ParamError(f"{config.name}: budget [{p95:g} ms, {memory:g} MB]: {err}") from None
        rows[pick["cell_id"]] = pick
    for prefix in config.cells:
        match = frame[frame["cell_id"].str.startswith(prefix)]
        if len(match) != 1:
            raise ParamError(f"{config.name}: cells: '{prefix}' matches {len(match)} rows of {config.sweep}'s results")
        rows[match.iloc[0]["cell_id"]] = match.iloc[0]
    return list(rows.values())


def time_stages(pipeline, texts: list[str], repetitions: int, warmup: int,
                stages: dict | None = None) -> tuple[dict[str, np.ndarray], list]:
    """Every query sent through encode -> search -> rerank in one loop, one at a time, `repetitions` passes after
    `warmup` untimed queries: nanoseconds of each stage, of the whole (`e2e`, measured) and of the calibration kernel
    timed after it, each (repetitions x queries); and the ranked lists of the first pass. `stages` replaces the
    pipeline's own (a slowed one, to check the gate fires)."""
    stages = stages or {stage: getattr(pipeline, stage) for stage in STAGES}
    for text in itertools.islice(itertools.cycle(texts), warmup):
        pipeline(text)
    samples = {name: np.empty((repetitions, len(texts)), dtype=np.int64) for name in (*STAGES, "e2e", "kernel")}
    ranked = []
    for rep in range(repetitions):
        for i, text in enumerate(texts):
            t0 = time.perf_counter_ns()
            item = stages["encode"](text)
            t1 = time.perf_counter_ns()
            first = stages["search"](item)
            t2 = time.perf_counter_ns()
            ids = stages["rerank"](text, first)
            t3 = time.perf_counter_ns()
            kernel()
            t4 = time.perf_counter_ns()
            for name, value in zip((*STAGES, "e2e", "kernel"), (t1 - t0, t2 - t1, t3 - t2, t3 - t0, t4 - t3)):
                samples[name][rep, i] = value
            if rep == 0:
                ranked.append(np.asarray(ids).tolist())
    return samples, ranked


def time_pipeline(pipeline, texts: list[str], repetitions: int, warmup: int,
                  slowdown: dict[str, float]) -> tuple[dict[str, list[float]], dict[str, list[float]], str]:
    """Per stage and end to end: the normalized median of each repetition; its median in ms; and a hash of
    the ranked lists (the gate's quality check)."""
    stages = {stage: slowed(getattr(pipeline, stage), slowdown.get(stage, 1.0)) for stage in STAGES}
    samples, ranked = time_stages(pipeline, texts, repetitions, warmup, stages)
    calibration = np.median(samples["kernel"], axis=1)  # per repetition
    medians = {name: np.median(samples[name], axis=1) for name in (*STAGES, "e2e")}
    normalized = {name: (values / calibration).tolist() for name, values in medians.items()}
    ms = {name: (values / 1e6).tolist() for name, values in medians.items()}
    digest = hashlib.sha256(json.dumps(ranked).encode()).hexdigest()[:16]
    return normalized, ms, digest


def run_gate(config: PipelineGateConfig, slowdown: dict[str, float], data_root: Path | None = None,
             cells: list[str] | None = None, sweep: SweepConfig | None = None) -> dict:
    """Every gated pipeline timed per stage: {"workload": ..., "pipelines": {cell_id: {...}}}. `cells`: the
    baseline's cells (a check gates what the baseline recorded); None: choose them from the config."""
    sweep = sweep or load_config(config.sweep)
    frame = read_results(sweep.results_path)
    if cells is None:
        rows = gated_rows(config, frame)
    else:
        rows = [with_derived(frame[frame["cell_id"] == cell]).iloc[0] for cell in cells if (frame["cell_id"] == cell).any()]
    texts = list(sweep_splits(sweep, data_root).test.query_texts[: config.queries])
    pipelines = {}
    for row in rows:
        pipeline = build_pipeline(sweep, row, data_root, build_threads=1)  # one thread: the same index every time
        with online_threads(1):
            normalized, ms, digest = time_pipeline(pipeline, texts, config.repetitions, config.warmup, slowdown)
        pipelines[row["cell_id"]] = {"pipeline": row["pipeline"], "normalized_medians": normalized,
                                     "ms_medians": ms, "median_ms": {k: float(np.median(v)) for k, v in ms.items()},
                                     "ranked_lists": digest}
    return {"workload": config.workload(), "pipelines": pipelines}


@dataclass(frozen=True)
class StageVerdict:
    pipeline: str
    stage: str  # a stage, or "e2e"
    ratio: float  # raw median now / baseline
    normalized_ratio: float  # the same over the calibration kernel
    p_value: float  # the larger of the two one-sided tests' p-values
    share: float  # of the baseline's end-to-end time
    judged: bool  # stages under MIN_SHARE of the pipeline are shown, not judged
    slower: bool
    same_lists: bool

    @property
    def ok(self) -> bool:
        return self.same_lists and not (self.judged and self.slower)


MIN_SHARE = 0.05  # a stage below this share of the pipeline's time cannot make a real end-to-end slowdown


def judge(now: dict, baseline: dict, config: PipelineGateConfig) -> list[StageVerdict]:
    """Every stage and the end-to-end time of every baseline pipeline, against the baseline."""
    verdicts = []
    for cell, reference in baseline["pipelines"].items():
        mine = now["pipelines"].get(cell)
        if mine is None:
            # the cell left the sweep's results: nothing to serve, so the check cannot pass
            verdicts.append(StageVerdict(reference["pipeline"] + " (cell missing from the sweep's results)", "e2e",
                                         float("nan"), float("nan"), float("nan"), 1.0, True, True, False))
            continue
        same = mine["ranked_lists"] == reference["ranked_lists"]
        total = reference["median_ms"]["e2e"]
        for stage in (*STAGES, "e2e"):
            ratio, p_raw, raw_slower = slowdown_test(mine["ms_medians"][stage], reference["ms_medians"][stage],
                                                     config.tolerance, config.alpha)
            normalized, p_norm, norm_slower = slowdown_test(mine["normalized_medians"][stage],
                                                            reference["normalized_medians"][stage],
                                                            1 + (config.tolerance - 1) / 2, config.alpha)
            share = reference["median_ms"][stage] / total
            verdicts.append(StageVerdict(reference["pipeline"], stage, ratio, normalized, max(p_raw, p_norm), share,
                                         share >= MIN_SHARE, raw_slower and norm_slower, same))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench check-pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="pipeline gate config (TOML), e.g. configs/pipeline_gate.toml, or a "
                                                  "pipeline block written by the report (results/pipelines/*.toml)")
    parser.add_argument("--update-baseline", action="store_true", help="accept this run as the baseline")
    parser.add_argument("--data-dir", type=Path, help="folder holding BEIR datasets")
    args = parser.parse_args(argv)
    try:
        config = load_gate_config(args.config)
        slowdown = parse_slowdown(os.environ.get("BENCH_SLOWDOWN", ""))
        unknown = sorted(set(slowdown) - set(STAGES))
        if unknown:
            raise ConfigError(f"BENCH_SLOWDOWN: {unknown} are not stages; the stages are {list(STAGES)}")
        baseline_path = config.baseline_path
        baseline = None
        if not args.update_baseline:
            if not baseline_path.exists():
                raise ConfigError(f"{baseline_path}: no pipeline baseline; record one with --update-baseline")
            baseline = json.loads(baseline_path.read_text())
            if baseline["workload"] != config.workload():
                raise ConfigError(f"{baseline_path}: recorded for workload {baseline['workload']}, the config asks "
                                  f"{config.workload()}; record a new baseline")
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    now = run_gate(config, slowdown, args.data_dir, None if baseline is None else list(baseline["pipelines"]))
    if args.update_baseline:
        from bench.core.cache import atomic_write_bytes
        from bench.core.env import cpu_model, versions

        payload = {**now, "cpu_model": cpu_model(), "versions": versions()}
        atomic_write_bytes(baseline_path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1) + "\n"))
        for cell, p in now["pipelines"].items():
            print(f"baseline {cell[:12]} {p['pipeline']}: " + ", ".join(f"{s} {p['median_ms'][s]:.3g} ms" for s in (*STAGES, "e2e")))
        print(f"written to {baseline_path} in {time.perf_counter() - started:.0f}s")
        return 0
    verdicts = judge(now, baseline, config)
    print(f"pipeline gate: {len(baseline['pipelines'])} pipelines, tolerance {config.tolerance}x, alpha {config.alpha}, "
          f"{config.repetitions} repetitions x {config.queries} queries")
    for v in verdicts:
        status = ("ok" if v.ok else "RANKING CHANGED" if not v.same_lists else "SLOWER") + (
            "" if v.judged else f" (not judged: {v.share:.0%} of the pipeline)")
        print(f"  {v.pipeline[:70]:70s} {v.stage:6s} ratio {v.ratio:5.2f} (/kernel {v.normalized_ratio:5.2f})  "
              f"p={v.p_value:<8.2g} {status}")
    passed = all(v.ok for v in verdicts)
    print(f"pipeline gate {'passed' if passed else 'FAILED'} in {time.perf_counter() - started:.0f}s")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
