"""Throughput under load, end to end (`python -m bench load configs/load.toml`).

The sweep times one query at a time on an idle machine; a service answers many at once. For chosen cells of a
sweep (each recommendation of the report's budgets, and each listed encoder's fastest cell reaching dev
recall@K >= 0.95), the whole pipeline - encode the query, search, rerank the top R - is served by one process
and driven two ways:

- closed loop: C clients (C in `clients`), each sending its next query as soon as the last one returns, for
  `seconds` (and at least `min_requests` requests): achieved QPS and p50/p95/p99 per concurrency;
- open loop: requests arrive at a target rate (Poisson, seeded) whatever the service does, `workers` threads
  serve them, and a request's latency runs from its scheduled arrival (queueing included, so a saturated
  service shows it: no coordinated omission); p99 and the share of requests over `deadline_ms`. Targets: fractions
  of the best closed-loop QPS, and absolute rates.

Clients are threads of the serving process, not processes: one copy of the model and the index, as in a server
with a thread pool; torch, faiss, hnswlib, bm25s' numpy and the Rust tokenizer release the GIL in their kernels.
Each request runs its network on `threads` torch threads (1: the cores are shared by concurrency, not by one
request). Cost per million queries = cores x price per core-hour / (best QPS x 3600).
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis import DEFAULT_BUDGETS, Budget, fastest_at_recall
from bench.core.cache import content_key
from bench.core.calibration import calibrate, drifted
from bench.pipeline.config import ConfigError, SweepConfig, check_all, from_table, load_config, read_toml
from bench.core.env import host_id, measured_now, run_metadata
from bench.search.indexes import ParamError
from bench.core.env import cpu_count
from bench.search.indexes.base import Neighbors
from bench.series.picks import Chosen, Picks, rows_here
from bench.store.results import LOAD_SCHEMA, ResultStore, read_results
from bench.core.timing import online_threads

MODES = ("closed", "open")


@dataclass(frozen=True)
class LoadConfig:
    name: str
    sweep: str  # the sweep config whose cells are served (its results file is read to choose them)
    encoders: list[str] = field(default_factory=list)  # per encoder: its fastest cell with dev recall@K >= 0.95
    k: int = 100  # the K of those cells
    budgets: list[list[float]] = field(default_factory=lambda: [[b.p95_ms, b.memory_mb] for b in DEFAULT_BUDGETS])
    cells: list[str] = field(default_factory=list)  # further cells, by cell id (a pipeline block names its pick)
    clients: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    seconds: float = 10.0  # per closed-loop level and per open-loop target
    min_requests: int = 20  # a level runs past `seconds` until this many requests completed
    warmup: int = 3  # untimed requests per client before each level
    open_fractions: list[float] = field(default_factory=lambda: [0.5, 0.8, 1.0])  # of the best closed-loop QPS
    open_qps: list[float] = field(default_factory=list)  # absolute open-loop targets
    workers: int = 8  # serving threads in the open loop
    deadline_ms: float = 100.0
    threads: int = 1  # torch threads per request
    price_per_core_hour: float = 0.05  # USD, for the cost per million queries
    seed: int = 0
    calibration_tolerance: float = 0.1
    results: str = ""

    def __post_init__(self):
        check_all([(self.clients and all(c >= 1 for c in self.clients), "clients must be a non-empty list of integers >= 1"),
                   (self.seconds > 0, "seconds must be > 0"), (self.min_requests >= 1, "min_requests must be >= 1"),
                   (self.warmup >= 0, "warmup must be >= 0"), (self.workers >= 1, "workers must be >= 1"),
                   (self.deadline_ms > 0, "deadline_ms must be > 0"), (self.threads >= 1, "threads must be >= 1"),
                   (all(0 < f for f in self.open_fractions), "open_fractions must be > 0"),
                   (all(0 < q for q in self.open_qps), "open_qps must be > 0"),
                   (self.price_per_core_hour >= 0, "price_per_core_hour must be >= 0"),
                   (all(len(b) == 2 for b in self.budgets), "budgets: each is [p95 ms, memory MB]")])
        for p95, memory in self.budgets:
            Budget(p95, memory)

    @property
    def results_path(self) -> Path:
        return Path(self.results or f"results/{self.name}.parquet")

    def settings(self) -> dict:
        """What a row's figures depend on besides the pipeline (its id hashes them)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k in ("seconds", "min_requests", "warmup", "workers", "deadline_ms", "threads", "seed")}


def load_load_config(path: Path | str) -> LoadConfig:
    config = from_table(LoadConfig, read_toml(path), str(path))
    sweep = load_config(config.sweep)
    unknown = sorted(set(config.encoders) - {e.name for e in sweep.encoders})
    if unknown:
        raise ConfigError(f"{path}: encoders {unknown} are not encoders of {config.sweep}")
    if config.encoders and config.k not in sweep.k:
        raise ConfigError(f"{path}: k = {config.k} is not a K of {config.sweep} ({sweep.k})")
    return config


# ---------------------------------------------------------------- which cells


def choose_cells(config: LoadConfig, frame: pd.DataFrame) -> list[Chosen]:
    """The recommendations under each budget, then the listed cells, then each listed encoder's fastest cell; a cell
    chosen twice once. Chosen from this host's rows (the latencies budgets are checked against), else from all rows."""
    frame = rows_here(frame)
    picks = Picks()
    picks.add_budget_picks(frame, config.budgets, lambda p95, memory: f"budget p95 <= {p95:g} ms, memory <= {memory:g} MB")
    for cell in config.cells:
        match = frame[frame["cell_id"].str.startswith(cell)]
        if len(match) != 1:
            raise ParamError(f"{config.name}: cells: '{cell}' matches {len(match)} rows of {config.sweep}'s results")
        picks.add(match.iloc[0], "listed")
    first = frame[(frame["stage"] == "first") & (frame["k"] == config.k)]
    for encoder in config.encoders:
        pick = fastest_at_recall(first[first["encoder"] == encoder])
        if pick is not None:
            picks.add(pick, f"{encoder}: fastest at dev recall@{config.k} >= 0.95")
    return picks.list()


# ---------------------------------------------------------------- the served pipeline


class ServedPipeline:
    """A pipeline as served (bench.pipeline.ids.Pipeline is its description): one query in, its ranked document ids
    out, in three stages: `encode` the query, `search` the first stage (one thread), `rerank` its top R (the identity
    without a reranker)."""

    def __init__(self, encoder, index, doc_texts: list[str], scorer=None, r: int = 0, alpha: float = 1.0):
        self.encoder, self.index, self.doc_texts = encoder, index, doc_texts
        self.scorer, self.r, self.alpha = scorer, r, alpha

    def encode(self, text: str):
        """What the index is queried with: the text, its vector, or both (a hybrid): the encoder's query item."""
        return self.encoder.query_item(text)

    def search(self, item) -> Neighbors:
        return self.index.batch_query(item, 1)

    def rerank(self, text: str, first: Neighbors) -> np.ndarray:
        from bench.models.rerankers import rerank

        if self.scorer is None:
            return first.ids[0]
        top = first.ids[0, : self.r]
        valid = top[top >= 0]
        scores = np.full(len(top), np.nan)
        scores[: len(valid)] = self.scorer.score([text] * len(valid), [self.doc_texts[j] for j in valid])
        return rerank(first, self.r, [scores], self.alpha)[0]

    def __call__(self, text: str) -> np.ndarray:
        return self.rerank(text, self.search(self.encode(text)))


def build_pipeline(sweep: SweepConfig, row: pd.Series, data_root: Path | None, build_threads: int) -> ServedPipeline:
    """The cell of `row` rebuilt from the sweep config: its encoder, its index (built now), its reranker."""
    from bench.models.encoders import embed_dataset
    from bench.run.plan import first_stage_index, plan_cells
    from bench.run.prepare import Rerankers, hybrid_weights, resolve_encoder, sweep_splits

    splits = sweep_splits(sweep, data_root)
    dataset = splits.evaluation
    spec = next(e for e in sweep.encoders if e.name == row["encoder"])
    if spec.chunking is not None:
        raise ParamError(f"load: encoder '{spec.name}' indexes passages; serving chunked corpora is not supported yet")
    resolved = resolve_encoder(spec, sweep, data_root)
    cells, _ = plan_cells(sweep, dataset, spec, resolved.identity)
    found = [(cell, child) for cell in cells for child in (None, *cell.children)
             if (child.cell_id if child else cell.cell_id) == row["cell_id"]]
    if not found:
        raise ParamError(f"load: cell {row['cell_id'][:12]} ({row['encoder']} {row['backend']}) is not planned by "
                         f"{sweep.name}'s config any more")
    cell, child = found[0]
    encoder = resolved.load()
    embeddings = embed_dataset(encoder, dataset, spec.batch_size)
    weights = hybrid_weights(resolved, splits) if resolved.dense is not None else {}
    index = first_stage_index(spec, cell.backend, cell.build, weights)
    index.fit(embeddings.docs, build_threads)
    index.set_search(cell.k, **cell.search)
    if child is None:
        return ServedPipeline(encoder, index, dataset.doc_texts)
    scorer, _ = Rerankers(sweep, data_root).get(child.reranker)
    return ServedPipeline(encoder, index, dataset.doc_texts, scorer, child.r, float(row["fusion_alpha"]))


# ---------------------------------------------------------------- load generators


@dataclass(frozen=True)
class LoadResult:
    latencies_ms: np.ndarray  # completed requests
    seconds: float  # wall time from the first request to the last completion
    dropped: int = 0  # open loop: requests not served within the run's time cap

    @property
    def qps(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds > 0 else float("nan")

    def percentiles(self) -> dict[str, float]:
        """p50/p95/p99/mean. Unknown (NaN): a percentile that dropped requests could reach, and one that fewer
        samples than 1 / (1 - q) cannot locate (a p99 needs 100 requests)."""
        n = len(self.latencies_ms)
        out = {}
        for name, q in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99)):
            known = n >= 1 / (1 - q / 100) - 1e-9 and n >= (n + self.dropped) * q / 100
            out[name] = float(np.percentile(self.latencies_ms, q)) if known else float("nan")
        out["mean_ms"] = float(self.latencies_ms.mean()) if len(self.latencies_ms) and not self.dropped else float("nan")
        return out


def closed_loop(serve, texts: list[str], clients: int, seconds: float, min_requests: int, warmup: int) -> LoadResult:
    """`clients` threads each sending the next query as soon as the last returns, for `seconds` (and until
    `min_requests` completed in all); queries taken round-robin from `texts`."""
    counter = itertools.count()
    latencies: list[list[int]] = [[] for _ in range(clients)]
    ready = threading.Barrier(clients + 1)
    clock: dict[str, float] = {}

    def client(i: int) -> None:
        for _ in range(warmup):
            serve(texts[next(counter) % len(texts)])
        ready.wait()
        mine = latencies[i]
        while True:
            if time.perf_counter() >= clock["stop"] and sum(map(len, latencies)) >= min_requests:
                return
            text = texts[next(counter) % len(texts)]
            start = time.perf_counter_ns()
            serve(text)
            mine.append(time.perf_counter_ns() - start)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    clock["stop"] = float("inf")
    ready.wait()
    started = time.perf_counter()
    clock["stop"] = started + seconds
    for thread in threads:
        thread.join()
    return LoadResult(np.concatenate([np.asarray(x, dtype=np.float64) for x in latencies]) / 1e6,
                      time.perf_counter() - started)


def open_loop(serve, texts: list[str], qps: float, seconds: float, workers: int, seed: int,
              cap_factor: float = 3.0) -> LoadResult:
    """Poisson arrivals at `qps` for `seconds`, served by `workers` threads; latency from the scheduled arrival.
    Requests still queued `cap_factor` x `seconds` after the start are dropped (counted, not timed)."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(qps * seconds)))
    offsets = np.cumsum(rng.exponential(1.0 / qps, size=n))
    pending: queue.Queue = queue.Queue()
    latencies: list[float] = []
    dropped = [0]
    lock = threading.Lock()
    started = time.perf_counter() + 0.05
    cap = started + cap_factor * seconds

    def worker() -> None:
        while True:
            item = pending.get()
            if item is None:
                return
            i, arrival = item
            if time.perf_counter() > cap:
                with lock:
                    dropped[0] += 1
                continue
            serve(texts[i % len(texts)])
            done = time.perf_counter()
            with lock:
                latencies.append((done - arrival) * 1e3)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in pool:
        thread.start()
    for i, offset in enumerate(offsets):
        arrival = started + offset
        delay = arrival - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pending.put((i, arrival))
    for _ in pool:
        pending.put(None)
    for thread in pool:
        thread.join()
    return LoadResult(np.asarray(latencies), max(time.perf_counter() - started, 1e-9), dropped[0])


# ---------------------------------------------------------------- the series


def run_load(config: LoadConfig, data_root: Path | None = None, store: ResultStore | None = None,
             announce=None, sweep: SweepConfig | None = None) -> int:
    """Serve every chosen cell at every load level not yet stored for this host (or stored at another host
    speed); returns rows written. This host's rows of cells no longer chosen, or chosen for another reason, are
    dropped first. `sweep`: the sweep config (default: read from `config.sweep`)."""
    from bench.run.prepare import sweep_splits

    store = store or ResultStore(config.results_path, LOAD_SCHEMA)
    sweep = sweep or load_config(config.sweep)
    chosen = choose_cells(config, read_results(sweep.results_path))
    if not chosen:
        raise ParamError(f"load: nothing chosen from {sweep.results_path} (no budget fits and no listed encoder "
                         f"reaches dev recall@{config.k} >= 0.95)")
    texts = list(sweep_splits(sweep, data_root).test.query_texts)
    calibration = calibrate()
    frame = store.load()
    mine = frame[frame["host_id"] == host_id()]
    why = {item.row["cell_id"]: item.why for item in chosen}
    outdated = mine[(mine["config_name"] == config.name)
                    & (mine["sweep_cell_id"].map(why).fillna("") != mine["chosen_as"])]
    if len(outdated):  # a pipeline no longer chosen, or chosen for another reason: its rows would say otherwise
        store.drop(set(outdated["cell_id"]), host_id())
        if announce:
            announce(f"{config.name}: dropped {len(outdated)} rows of pipelines no longer chosen as they say")
        mine = mine.drop(outdated.index)
    fresh = {cid for cid, c in zip(mine["cell_id"], mine["calibration_ms"])
             if not drifted(c, calibration, config.calibration_tolerance)}
    metadata = run_metadata(content_key(dataclasses.asdict(config))[:12])
    written = 0
    for item in chosen:
        row = item.row
        key = {"sweep_cell": row["cell_id"], **config.settings()}
        ids = {clients: content_key({**key, "mode": "closed", "level": clients}) for clients in config.clients}
        if all(i in fresh for i in ids.values()) and _open_done(config, row, key, mine, fresh):
            continue
        if announce:
            announce(f"{config.name}: serving {row['pipeline']} ({item.why})")
        pipeline = build_pipeline(sweep, row, data_root, cpu_count())
        shared = {**metadata, "config_name": config.name, "sweep_cell_id": row["cell_id"],
                  "dataset": row["dataset"], "pipeline": row["pipeline"], "chosen_as": item.why,
                  "serial_e2e_p50_ms": row["e2e_p50_ms"], "serial_e2e_p95_ms": row["e2e_p95_ms"],
                  "threads_per_request": config.threads, "deadline_ms": config.deadline_ms,
                  "price_per_core_hour": config.price_per_core_hour, "calibration_ms": calibration}
        best = 0.0
        with online_threads(config.threads):
            for clients, cid in ids.items():
                result = closed_loop(pipeline, texts, clients, config.seconds, config.min_requests, config.warmup)
                best = max(best, result.qps)
                store.add(_row(shared, cid, "closed", clients, float("nan"), result, config))
                written += 1
            for qps in _open_targets(config, best):
                result = open_loop(pipeline, texts, qps, config.seconds, config.workers, config.seed)
                cid = content_key({**key, "mode": "open", "level": round(qps, 6)})
                store.add(_row(shared, cid, "open", config.workers, qps, result, config))
                written += 1
        del pipeline
    return written


def _open_targets(config: LoadConfig, best_qps: float) -> list[float]:
    return [round(best_qps * f, 3) for f in config.open_fractions] + list(config.open_qps)


def _open_done(config: LoadConfig, row: pd.Series, key: dict, mine: pd.DataFrame, fresh: set[str]) -> bool:
    """Open-loop rows exist (fresh) for this cell: their targets derive from the stored closed-loop QPS."""
    closed = mine[(mine["sweep_cell_id"] == row["cell_id"]) & (mine["mode"] == "closed")]
    if closed.empty:
        return False
    targets = _open_targets(config, float(closed["achieved_qps"].max()))
    return all(content_key({**key, "mode": "open", "level": round(q, 6)}) in fresh for q in targets)


def _row(shared: dict, cell_id: str, mode: str, concurrency: int, target_qps: float, result: LoadResult,
         config: LoadConfig) -> dict:
    over = (np.count_nonzero(result.latencies_ms > config.deadline_ms) + result.dropped) / max(
        len(result.latencies_ms) + result.dropped, 1)
    cores = cpu_count()
    cost = cores * config.price_per_core_hour * 1e6 / (result.qps * 3600) if result.qps > 0 else float("nan")
    return {**shared, "cell_id": cell_id, "mode": mode, "concurrency": concurrency, "target_qps": target_qps,
            "achieved_qps": result.qps, "requests": len(result.latencies_ms), "dropped": result.dropped,
            "duration_s": result.seconds, **{f"latency_{k}": v for k, v in result.percentiles().items()},
            "over_deadline_share": float(over), "cores": cores, "cost_per_million_usd": cost,
            "measured_at": measured_now()}
