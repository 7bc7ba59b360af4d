"""The sweep: encoders x backends x build grid x search grid x K, measured cell by cell into the store."""

from __future__ import annotations

import copy
import dataclasses
import functools
import gc
import itertools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import psutil
from tqdm import tqdm

from bench.cache import content_key
from bench.calibration import calibrate, drifted, kernel, time_kernel
from bench.chunking import aggregate, first_documents
from bench.config import EncoderSpec, MeasureSpec, SweepConfig, tower_config
from bench.datasets import Dataset
from bench.encoders import (ENCODER_TYPES, Embeddings, Encoder, SentenceEncoder, embed_dataset, make_encoder,
                            model_identity, precision_suffix)
from bench.env import host_id, measured_now, run_metadata
from bench.indexes import BACKENDS, ParamError, exact_neighbors, make_index
from bench.indexes.base import AnnIndex, Neighbors, cpu_count
from bench.metrics import per_query_quality, recall_vs_exact
from bench.plan import Speeds, corpus_cached, duration, render, work_phases
from bench.rerank import CrossEncoderScorer, ScoreCache, cross_scores, rerank, time_rerank
from bench.splits import QuerySplits, describe, load_splits, restrict
from bench.store import LATENCY_COLUMNS, ResultStore
from bench.executors import Executor, LocalExecutor
from bench.hybrid import HybridEncoder, HybridIndex, choose_weights, exact_hybrid, fused
from bench.towers import TowerTrainConfig, train_towers
from bench.towers import model_dir as tower_model_dir
from bench.timing import LatencyStats, end_to_end, measure_latency, measure_throughput, online_threads
from bench.train_cross import ALPHAS, CrossTrainConfig, read_training, train_cross_encoder
from bench.train_cross import model_dir as cross_model_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankCell:
    """The first stage of its parent cell, then `reranker` re-scoring the top-`r` with fusion weight `alpha`."""

    reranker: str
    alpha: float | str  # a number, or "dev"
    r: int
    cell_id: str


@dataclass(frozen=True)
class Cell:
    """One measurement: an encoder, an index built with `build`, searched with `search` for top-`k`.

    Its rerank children are measured with it (they need its result lists), so a cell counts as done
    only when it and all its children are in the store.
    """

    encoder: EncoderSpec
    backend: str
    build: dict
    search: dict
    k: int
    cell_id: str
    children: tuple[RerankCell, ...] = ()

    @property
    def build_key(self) -> tuple[str, str]:
        return self.backend, json.dumps(self.build, sort_keys=True)

    @property
    def ids(self) -> list[str]:
        return [self.cell_id, *(c.cell_id for c in self.children)]


@dataclass
class SweepSummary:
    planned: int = 0  # first-stage cells (each with its rerank children)
    computed: int = 0  # rows written: first-stage and rerank
    retimed: int = 0  # of those, stored rows whose latencies were re-timed (quality kept)
    already_done: int = 0  # first-stage cells complete with their children
    skipped_invalid: int = 0  # grid points breaking a cross-parameter rule (ef < K, nprobe > nlist, ...)
    corpora_encoded: int = 0


def sweep_splits(config: SweepConfig, data_root: Path | None = None, dataset: str | None = None) -> QuerySplits:
    """The protocol's test, dev and training queries of `dataset` (default: the sweep's); `max_queries` caps
    the test and the dev queries of the sweep's own dataset."""
    name = dataset or config.dataset
    synthetic = config.synthetic if name == config.dataset else {}
    splits = load_splits(name, data_root, config.protocol, **synthetic)
    if not config.max_queries or name != config.dataset:
        return splits
    cap = config.max_queries
    return dataclasses.replace(splits, test=restrict(splits.test, splits.test.query_ids[:cap], splits.test.split),
                               dev=restrict(splits.dev, splits.dev.query_ids[:cap], "dev") if splits.dev else None)


@dataclass(frozen=True)
class ResolvedEncoder:
    """Where an encoder spec's model lives and what identifies it (before any training happens)."""

    spec: EncoderSpec
    model: str  # a name or path; for encoders trained by the harness, their cache folder
    identity: str
    tower: TowerTrainConfig | None = None  # set when the harness trains it ...
    splits: QuerySplits | None = None  # ... on these splits' training queries
    dense: "ResolvedEncoder | None" = None  # a hybrid's dense side

    @property
    def saw_eval_docs(self) -> bool:
        """Trained on queries judging documents that dev/test queries judge relevant (guard off or not applied)."""
        if self.dense is not None:
            return self.dense.saw_eval_docs
        return self.splits is not None and self.splits.guard.saw_eval_docs

    def load(self) -> Encoder:
        """The encoder (a trained one after `prepare_models` trained it)."""
        if self.dense is not None:
            return HybridEncoder(self.dense.load())
        if self.tower is not None:
            return SentenceEncoder(self.model, self.spec.max_seq_length)
        return make_encoder(self.spec.type, self.model, self.spec.max_seq_length, self.spec.device,
                            self.spec.query_precision, self.spec.doc_precision)


def resolve_encoder(spec: EncoderSpec, config: SweepConfig, data_root: Path | None = None) -> ResolvedEncoder:
    if ENCODER_TYPES[spec.type] == "text":
        return ResolvedEncoder(spec, spec.model, spec.type)
    if spec.type == "hybrid":  # identified by its dense side (the cell key holds the fusion settings)
        dense = resolve_encoder(next(e for e in config.encoders if e.name == spec.hybrid_spec.dense), config, data_root)
        return ResolvedEncoder(spec, dense.model, dense.identity, dense=dense)
    if not spec.train:  # identified by what its corpus vectors depend on
        return ResolvedEncoder(spec, spec.model, model_identity(spec.model) + precision_suffix(spec.doc_precision, spec.device))
    tower = tower_config(spec, config.dataset)
    splits = sweep_splits(config, data_root, tower.dataset)
    if splits.train is None:
        raise ParamError(f"encoder '{spec.name}': dataset '{tower.dataset}' has no train queries to train on")
    folder = tower_model_dir(tower, splits)
    return ResolvedEncoder(spec, str(folder), f"trained:{folder.name}", tower, splits)


def plan_cells(config: SweepConfig, dataset: Dataset, encoder: EncoderSpec,
               identity: str | None = None) -> tuple[list[Cell], int]:
    """Every valid cell of the grid for one encoder, and how many grid points were skipped as invalid.

    A grid is a cartesian product, so some points break a cross-parameter rule (ef < K, nprobe > nlist);
    those are skipped and counted. A search tuple that no build tuple and no K accepts is an error, as
    are unknown parameter names, bad types and build parameters that cannot work on this corpus.
    """
    if encoder.device == "cuda" and not _cuda_available():
        raise ParamError(f"encoder '{encoder.name}': device 'cuda' but torch sees no CUDA device on this host")
    if max(config.k) > dataset.n_docs:
        raise ParamError(f"K ({max(config.k)}) exceeds the corpus size ({dataset.n_docs}) of '{dataset.name}'")
    output = ENCODER_TYPES[encoder.type]
    searched = "vectors" if output == "hybrid" else output  # a hybrid's dense side runs on the vector backends
    identity = identity or resolve_encoder(encoder, config).identity
    cells, skipped = [], 0
    for spec in config.backends:
        if spec.backend in BACKENDS and BACKENDS[spec.backend].input != searched:
            continue  # e.g. bm25s takes text, HNSW takes vectors
        if (encoder.backends and spec.backend not in encoder.backends) or (spec.encoders and encoder.name not in spec.encoders):
            continue
        # (the config's build table, its index): cell ids hash the table as written, not the defaults filled in
        indexes = [(build, first_stage_index(encoder, spec.backend, build)) for build in spec.build_grid()]
        for _, index in indexes:
            index.check_build(dataset.n_docs)
        depths = encoder.hybrid_spec.depth if output == "hybrid" else [None]
        for point in spec.search_grid():
            first_error = None
            accepted = 0
            for (build, index), depth, k in itertools.product(indexes, depths, config.k):
                search = point if depth is None else {**point, "depth": depth}
                try:
                    index.check_search(k, search)
                except ParamError as err:
                    first_error = first_error or err
                    skipped += 1
                    continue
                accepted += 1
                key = {"dataset": dataset.content_hash, "split": dataset.split, "queries": dataset.query_ids,
                       "encoder": _spec_key(encoder), "model": identity, "backend": spec.backend,
                       "build": build, "search": search, "k": k,
                       "measure": _measure_key(config)}
                children, too_deep = _plan_children(config, encoder.name, spec.backend, k, key)
                skipped += too_deep
                cells.append(Cell(encoder, spec.backend, build, search, k, content_key(key), children))
            if not accepted and output != "hybrid":  # a hybrid shares the grid: shallow points miss its depths
                raise ParamError(f"{first_error} (search point {point} is invalid for every build point and K)")
    return cells, skipped


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def first_stage_index(encoder: EncoderSpec, backend: str, build: dict, weights: dict[int, float] | None = None) -> AnnIndex:
    """An unbuilt index of `backend`; for a hybrid encoder, wrapped with its BM25 side and fusion."""
    index = make_index(backend, **build)
    return HybridIndex(index, encoder.hybrid_spec, weights) if encoder.type == "hybrid" else index


def _measure_key(config: SweepConfig) -> dict:
    """What of the measure settings a cell id hashes: only what can change quality (the build's threads).
    Settings that change how latency is timed are stored per row (`latency_settings`) instead: a change
    re-measures latency and keeps quality."""
    return {"build_threads": config.measure.build_threads}


def _child_key_extra(config: SweepConfig) -> dict:
    """What a rerank child's id hashes beyond its parent's and its own (reranker, alpha, R): nothing today."""
    return {}


def latency_settings(config: SweepConfig) -> str:
    """The settings a row's latencies were timed with (JSON): a stored row with other settings is re-timed."""
    return json.dumps({**config.measure.latency_settings(), "rerank_latency_queries": config.rerank.latency_queries},
                      sort_keys=True)


SPEC_FIELDS_ADDED = {"train": {}, "chunk_tokens": 0, "chunk_stride": 0, "aggregate": "max", "hybrid": {}, "backends": [],
                     "query_precision": "fp32", "doc_precision": "fp32", "device": "cpu"}


def _spec_key(encoder: EncoderSpec) -> dict:
    """The encoder spec as it enters cell ids; fields added later are left out at their defaults, so cell ids
    predating them still match."""
    key = dataclasses.asdict(encoder)
    for name, default in SPEC_FIELDS_ADDED.items():
        if key[name] == default:
            del key[name]
    return key


def check_rerank(config: SweepConfig, data_root: Path | None) -> None:
    """Before anything is measured: R values that no reranked K admits, and trained rerankers whose dataset
    has no train or dev queries, are errors."""
    spec = config.rerank
    if not spec.rerankers:
        return
    ks = [k for k in config.k if not spec.k or k in spec.k]
    too_deep = [r for r in spec.r if not any(r <= k for k in ks)]
    if not ks or too_deep:
        raise ParamError(f"rerank.r: R {too_deep or spec.r} exceeds every reranked K {ks} (R <= K is needed)")
    for reranker in spec.rerankers:
        if reranker.train:
            name = reranker.train.get("dataset", config.dataset)
            splits = sweep_splits(config, data_root, name)
            if splits.train is None or splits.dev is None:
                raise ParamError(f"rerank.rerankers '{reranker.name}': dataset '{name}' has no "
                                 f"{'train' if splits.train is None else 'dev'} queries to train the model on "
                                 "(give `model = ...` instead, or train on another dataset)")


def _plan_children(config: SweepConfig, encoder: str, backend: str, k: int,
                   parent_key: dict) -> tuple[tuple[RerankCell, ...], int]:
    """The rerank cells of a first-stage cell, and how many (reranker, alpha, R) points were skipped for R > K
    (check_rerank refuses an R that no K admits)."""
    spec = config.rerank
    if (spec.k and k not in spec.k) or (spec.encoders and encoder not in spec.encoders) or (
            spec.backends and backend not in spec.backends):
        return (), 0
    children, skipped = [], 0
    for reranker in spec.rerankers:
        for alpha in reranker.alpha:
            for r in spec.r:
                if r > k:
                    skipped += 1
                    continue
                key = {**parent_key, "reranker": dataclasses.asdict(reranker), "alpha": alpha, "r": r,
                       **_child_key_extra(config)}
                if alpha == "dev":
                    key["alpha_chosen_on"] = "the cell's dev queries at its R"
                children.append(RerankCell(reranker.name, alpha, r, content_key(key)))
    return tuple(children), skipped


def measure_query_encoding(encoder: Encoder, texts: list[str], settings: MeasureSpec) -> LatencyStats:
    """Latency of encoding one query at a time on `settings.threads` threads: one untimed pass over `texts`
    (at least `warmup` queries; a 20-query warmup left the first timed pass ~5% slower), then
    `encode_repeats` passes, each query followed by the calibration kernel (its median is the stats'
    `calibration_ms`)."""
    warmup = list(texts) * max(1, -(-settings.warmup // max(len(texts), 1)))
    with online_threads(settings.threads):
        for text in warmup:
            encoder.encode_queries([text], batch_size=1)
        return measure_latency(lambda text: encoder.encode_queries([text], batch_size=1), texts, 0,
                               settings.encode_repeats, calibration=kernel)


def _threads(requested: int) -> int:
    return requested if requested > 0 else cpu_count()


def _is_done(cell: Cell, recall_by_id: dict[str, float], min_recall: float, stale: set[str] = frozenset()) -> bool:
    """Measured on this host (latencies not stale), with its rerank children unless its dev recall is below the
    rerank threshold."""
    if cell.cell_id not in recall_by_id or cell.cell_id in stale:
        return False
    if recall_by_id[cell.cell_id] < min_recall:
        return True
    return all(child.cell_id in recall_by_id and child.cell_id not in stale for child in cell.children)


def stale_latencies(mine: pd.DataFrame, config: SweepConfig, calibration_ms: float) -> pd.DataFrame:
    """This host's stored rows whose latencies must be re-timed: measured with other latency settings, or in a
    run whose calibration figure (the median over its rows: one row's 100 kernel calls carry a few % of noise)
    is off the current one by more than the configured tolerance, or without one."""
    settings = latency_settings(config)
    per_run = mine.groupby("timestamp")["calibration_ms"].transform("median")
    drift = [drifted(c, calibration_ms, config.measure.calibration_tolerance) for c in per_run]
    return mine[np.asarray(drift, dtype=bool) | (mine["latency_settings"] != settings).to_numpy()]


def run_sweep(config: SweepConfig, redo: bool = False, data_root: Path | None = None,
              store: ResultStore | None = None, executor: Executor | None = None,
              announce: Callable[[str], None] | None = None, prune: bool = False) -> SweepSummary:
    """Measure every cell of `config` not already in the store for this hardware (all of them if `redo`).

    Build groups (one index, its cells) run on `executor`: in this process by default, or on Ray.
    `announce` receives the plan with its time estimate before any work, and the estimate left after each encoder.
    `prune` drops this host's stored rows of this config's cells that the config no longer plans.
    """
    store = store or ResultStore(config.results_path)
    executor = executor or LocalExecutor()
    splits = sweep_splits(config, data_root)
    dataset = splits.evaluation  # test queries first, then dev: every cell is evaluated on both
    resolved = {spec.name: resolve_encoder(spec, config, data_root) for spec in config.encoders}
    plans = {spec.name: plan_cells(config, dataset, spec, resolved[spec.name].identity)
             for spec in config.encoders}  # validate all first
    check_rerank(config, data_root)
    frame = store.load()
    planned_ids = {i for cells, _ in plans.values() for c in cells for i in c.ids}
    stale = set(frame.loc[(frame["host_id"] == host_id()) & (frame["config_name"] == config.name), "cell_id"]) - planned_ids
    if stale and prune:
        log.warning("%s: dropped %d rows of cells no longer in the config", config.name, store.drop(stale, host_id()))
        frame = store.load()
    elif stale and announce:
        announce(f"{config.name}: {len(stale)} stored rows are of cells no longer in the config (kept; --prune drops them)")
    mine = frame[frame["host_id"] == host_id()]
    recall_by_id = {} if redo else dict(zip(mine["cell_id"], mine["dev_recall_at_k"]))
    summary = SweepSummary()
    calibration = calibrate()
    stale = {} if redo else {row["cell_id"]: row for row in stale_latencies(mine, config, calibration).to_dict("records")}
    if stale and announce:
        announce(f"{config.name}: {len(stale)} stored rows get their latencies re-timed (other latency settings, or "
                 f"calibration off the current {calibration:.3f} ms by more than "
                 f"{config.measure.calibration_tolerance:.0%}); their quality is kept")
    metadata = {**run_metadata(config.config_hash()), "latency_settings": latency_settings(config)}

    def sink(row: dict) -> None:
        stored = stale.get(row["cell_id"])
        if stored is not None:
            row = {**stored, **{name: row[name] for name in LATENCY_COLUMNS}}
            summary.retimed += 1
        store.add(row)

    rerankers = Rerankers(config, data_root)
    protocol = describe(splits)
    todo = {spec.name: [c for c in plans[spec.name][0]
                        if not _is_done(c, recall_by_id, config.rerank.min_recall_at_k, set(stale))]
            for spec in config.encoders}
    speeds = Speeds()
    if announce:
        announce(render(work_phases(config, splits, resolved, todo, speeds, rerankers), f"{config.name}: plan"))
    weights = prepare_models(resolved, todo, rerankers, data_root, splits)
    for index, spec in enumerate(config.encoders):
        cells, skipped = plans[spec.name]
        summary.planned += len(cells)
        summary.skipped_invalid += skipped
        pending = todo[spec.name]
        summary.already_done += len(cells) - len(pending)
        if skipped:
            log.info("%s: %d grid points skipped (ef < K, nprobe > nlist, ...)", spec.name, skipped)
        if not pending:
            log.info("%s: all %d cells already measured on this host", spec.name, len(cells))
            continue
        encoder = resolved[spec.name].load()
        passages = [spec.chunking.tokens, spec.chunking.stride] if spec.chunking else None
        backbone = encoder.frozen_backbone
        if announce and encoder.output == "vectors" and not corpus_cached(
                model_identity(backbone.model) if backbone else encoder.doc_identity, dataset.corpus_hash, passages):
            announce(f"{config.name}: encoding the corpus for {spec.name}" + (" (passages)" if passages else ""))
        embeddings = embed_dataset(encoder, dataset, spec.batch_size, spec.chunking)
        summary.corpora_encoded += not embeddings.cached
        if not embeddings.cached and encoder.frozen_backbone is None:
            speeds.record("encode_docs_per_s", len(embeddings.docs) / embeddings.encode_seconds)
        encode_latency = measure_query_encoding(  # on test queries (they come first)
            encoder, splits.test.query_texts[: config.measure.encode_sample], config.measure)
        shared = {**metadata, "config_name": config.name, "dataset": dataset.name, "dataset_hash": dataset.content_hash,
                  "split": splits.test.split, "n_docs": dataset.n_docs, "n_queries": len(splits.test.query_ids),
                  "protocol": protocol, "dev_source": splits.dev_source,
                  "n_dev_queries": len(splits.dev.query_ids) if splits.dev else 0,
                  "encoder_saw_eval_docs": resolved[spec.name].saw_eval_docs,
                  "encoder": spec.name, "encoder_type": spec.type, "model": resolved[spec.name].model,
                  "model_identity": encoder.identity, "max_seq_length": encoder.max_seq_length, "dim": encoder.dim,
                  "query_precision": encoder.query_precision, "doc_precision": encoder.doc_precision,
                  "encoder_device": encoder.device, "encode_batch_size": spec.batch_size,
                  "encoder_params": encoder.n_parameters(), "encoder_bytes": encoder.online_bytes(),
                  "encoder_mode": encoder.mode,
                  "encoder_train_s": encoder.train_seconds,
                  "chunking": json.dumps(dataclasses.asdict(spec.chunking), sort_keys=True) if spec.chunking else "",
                  "n_chunks": len(embeddings.passages.texts) if embeddings.passages else 0,
                  "corpus_encode_s": embeddings.encode_seconds, **encode_latency.columns("query_encode"),
                  "query_encode_calibration_ms": encode_latency.calibration_ms}
        measurer = CellMeasurer(embeddings, dataset, len(splits.test.query_ids), config, shared, sink,
                                encode_latency, rerankers, spec, weights.get(spec.name))
        groups = measurer.prepare(pending)
        started = time.perf_counter()
        written = executor.run(measurer, groups, f"cells ({spec.name})", len(pending))
        summary.computed += written
        speeds.record("cell_s", (time.perf_counter() - started - measurer.scoring_seconds) / max(written, 1))
        _record_training_speeds(speeds, resolved[spec.name], rerankers)
        del encoder, measurer
        gc.collect()
        left = {e.name: todo[e.name] for e in config.encoders[index + 1:]}
        if announce and any(left.values()):
            phases = work_phases(config, splits, {n: resolved[n] for n in left}, left, speeds, rerankers)
            announce(f"{config.name}: {spec.name} done; about {duration(sum(p.seconds for p in phases))} left")
    return summary


def prepare_models(resolved: dict[str, ResolvedEncoder], todo: dict[str, list[Cell]], rerankers: "Rerankers",
                   data_root: Path | None, splits: QuerySplits) -> dict[str, dict[int, float]]:
    """Train (once, cached) every model that pending cells need, and choose the hybrids' fusion weights on the
    dev queries, before any cell is measured: no measurement waits on training, and executors never race to
    train the same model. Returns the dev-chosen convex weight per hybrid encoder and depth."""
    for name, cells in todo.items():
        for model in (resolved[name], resolved[name].dense):
            if cells and model is not None and model.tower is not None:
                train_towers(model.tower, data_root, splits=model.splits)
    for reranker in dict.fromkeys(ch.reranker for cells in todo.values() for c in cells for ch in c.children):
        rerankers.get(reranker)
    return {name: hybrid_weights(resolved[name], splits) for name, cells in todo.items()
            if cells and resolved[name].dense is not None}


def hybrid_weights(encoder: ResolvedEncoder, splits: QuerySplits) -> dict[int, float]:
    """A hybrid's convex weight per depth, chosen on the dev queries (the test queries where there are none)."""
    spec = encoder.spec.hybrid_spec
    if spec.fusion != "convex" or spec.weight != "dev":
        return {}
    embeddings = embed_dataset(encoder.load(), splits.evaluation, encoder.spec.batch_size)
    n_test = len(splits.test.query_ids)
    dev, queries = ((splits.dev, embeddings.queries[n_test:]) if splits.dev is not None
                    else (splits.test, embeddings.queries[:n_test]))
    chosen = choose_weights(spec, embeddings.docs, queries, dev, cpu_count())
    log.info("%s: convex weights chosen on %d dev queries: %s", encoder.spec.name, len(dev.query_ids), chosen)
    return chosen


def _record_training_speeds(speeds: Speeds, encoder: ResolvedEncoder, rerankers: "Rerankers") -> None:
    """Per-step training rates of the models this encoder's cells used, for the next estimate."""
    if encoder.tower is not None and encoder.tower.mode == "full":
        report = read_training(encoder.model)
        speeds.record("tower_full_step_s", report.get("train_seconds", 0) / max(report.get("steps", 0), 1))
    elif encoder.tower is not None:
        speeds.record("tower_heads_s", read_training(encoder.model).get("train_seconds", 0))
    for _, report in rerankers.loaded():
        speeds.record("cross_train_step_s", report.get("train_seconds", 0) / max(report.get("steps", 0), 1))


FIRST_STAGE_ONLY = {"reranker": "", "reranker_identity": "", "reranker_saw_eval_docs": False, "r": 0, "fusion_alpha": float("nan"),
                    "fusion_alpha_chosen_on": "",
                    "rerank_max_length": 0, "cross_pairs_scored": 0, "reranker_params": 0,
                    "reranker_train_s": float("nan"), "rerank_p50_ms": float("nan"),
                    "rerank_p95_ms": float("nan"), "rerank_p99_ms": float("nan"), "rerank_mean_ms": float("nan"),
                    "rerank_latency_queries": 0, "rerank_threads": 0}


class Rerankers:
    """The configured cross-encoders, loaded (and trained, once, if asked) on first use."""

    def __init__(self, config: SweepConfig, data_root: Path | None):
        self.specs = {r.name: r for r in config.rerank.rerankers}
        self.config, self.data_root = config, data_root
        self._scorers: dict[str, tuple[CrossEncoderScorer, dict]] = {}
        self._cache: ScoreCache | None = None
        self._latency: dict[tuple[str, int], LatencyStats] = {}

    @property
    def cache(self) -> ScoreCache:
        self._cache = self._cache or ScoreCache()
        return self._cache

    def training(self, name: str) -> tuple[CrossTrainConfig, QuerySplits, Path] | None:
        """For a reranker the harness trains: its settings, the splits it trains on and its model folder (which
        exists once trained); None for a given model."""
        spec = self.specs[name]
        if not spec.train:
            return None
        options = {"dataset": self.config.dataset, **spec.train}
        try:
            train_config = CrossTrainConfig(**options)
        except (TypeError, ValueError) as err:
            raise ParamError(f"reranker '{name}': train options {options}: {err}") from None
        splits = sweep_splits(self.config, self.data_root, train_config.dataset)
        return train_config, splits, cross_model_dir(train_config, splits)

    def get(self, name: str) -> tuple[CrossEncoderScorer, dict]:
        """(scorer, training report; empty for models not trained by the harness)."""
        if name not in self._scorers:
            spec = self.specs[name]
            model, report = spec.model, {}
            trained = self.training(name)
            if trained is not None:
                train_config, splits, _ = trained
                model = str(train_cross_encoder(train_config, data_root=self.data_root, splits=splits))
                report = read_training(model)
            self._scorers[name] = (CrossEncoderScorer(model, spec.max_length, spec.batch_size), report)
        return self._scorers[name]

    def loaded(self) -> list[tuple[CrossEncoderScorer, dict]]:
        return list(self._scorers.values())

    def latency(self, name: str, r: int, dataset: Dataset, top: np.ndarray, sample: list[int],
                threads: int) -> LatencyStats:
        """Per-query time to score R pairs uncached, over the `sample` queries' lists in `top`; timed once per run
        and reranker and R, on the first encoder's exact top-R that asks. Not per cell: 50 queries x R pairs
        cost ~R seconds here, and a pair's cost is set by its token count, which `max_length` caps (SciFact
        abstracts mostly exceed it), not by which candidates a cell found."""
        if (name, r) not in self._latency:
            scorer, _ = self.get(name)
            self._latency[(name, r)] = LatencyStats.from_ms(time_rerank(scorer, dataset, top, r, sample, threads))
        return self._latency[(name, r)]


class CellMeasurer:
    """Measures first-stage cells of one encoder, and their rerank children, handing each row to `sink`
    as it is measured (the store, or a list an executor ships back)."""

    def __init__(self, embeddings: Embeddings, dataset: Dataset, n_test: int, config: SweepConfig, shared: dict,
                 sink: Callable[[dict], None], encode_latency: LatencyStats, rerankers: Rerankers,
                 encoder: EncoderSpec, weights: dict[int, float] | None = None):
        """`dataset` holds the test queries, then the dev queries: the first `n_test` are test. `weights`: a
        hybrid encoder's dev-chosen convex weight per depth."""
        self.embeddings, self.dataset, self.config, self.settings = embeddings, dataset, config, config.measure
        self.n_test = n_test
        self.shared, self.sink, self.encode_latency, self.rerankers = shared, sink, encode_latency, rerankers
        self.build_threads = _threads(self.settings.build_threads)
        self.batch_threads = _threads(self.settings.throughput_threads)
        self.online_threads = self.settings.threads
        self.scoring_seconds = 0.0  # spent scoring cross-encoder pairs (not a per-cell cost)
        self.truth = np.empty((0, 0), dtype=np.int64)  # exact top documents at the deepest K or R needed
        self.truth_at: dict[int, np.ndarray] = {}  # K -> exact top-K, aggregated to documents when chunked
        self.hybrid_truth: dict[int, np.ndarray] = {}  # hybrids: depth -> fused top-depth over exact dense search
        self.encoder, self.weights = encoder, weights or {}
        self.chunking = encoder.chunking

    def portable(self) -> "CellMeasurer":
        """A copy to ship to another process: no sink, rerankers not yet loaded (no open score cache)."""
        clone = copy.copy(self)
        clone.sink = None
        clone.rerankers = Rerankers(self.config, self.rerankers.data_root)
        return clone

    def prepare(self, cells: list[Cell]) -> list[list[Cell]]:
        """Compute the ground truth these cells need; returns them grouped by build tuple (one index each)."""
        depth = max([c.k for c in cells] + [r for c in cells for r in (ch.r for ch in c.children)])
        if self.encoder.type == "hybrid":
            self._prepare_hybrid(cells, depth)
        else:
            # ground truth: exact inner-product search, or for text backends BM25 with default parameters
            exact = exact_neighbors(self.embeddings.docs, self.embeddings.queries, depth, self.build_threads,
                                    EXACT_BACKEND[cells[0].backend])
            self.truth = self._to_documents(exact, depth).ids
            self.truth_at = {k: self._to_documents(Neighbors(exact.ids[:, :k], exact.scores[:, :k]), k).ids
                             for k in {c.k for c in cells}}
        ordered = sorted(cells, key=lambda c: c.build_key)
        return [list(group) for _, group in itertools.groupby(ordered, key=lambda c: c.build_key)]

    def _prepare_hybrid(self, cells: list[Cell], depth: int) -> None:
        """Ground truth of a hybrid cell: the same fusion of BM25 and exact dense search, at the cell's depth."""
        spec = self.encoder.hybrid_spec
        depths = sorted({c.search["depth"] for c in cells})
        dense, sparse = exact_hybrid(spec, self.embeddings.docs, self.embeddings.queries, max(depths), self.build_threads)
        self.hybrid_truth = {d: fused(spec, self.weights, dense, sparse, d, d).ids for d in depths}
        self.truth = self.hybrid_truth[max(depths)][:, :depth]

    def _truth(self, cell: Cell) -> np.ndarray:
        """The exact counterpart's top-K of a cell (recall@K is measured against it)."""
        if self.encoder.type == "hybrid":
            return self.hybrid_truth[cell.search["depth"]][:, :cell.k]
        return self.truth_at[cell.k]

    def _to_documents(self, hits: Neighbors, k: int) -> Neighbors:
        """Passage hits aggregated to documents when the corpus is chunked; document hits unchanged."""
        if self.chunking is None:
            return hits
        return aggregate(hits, self.embeddings.passages, self.chunking.aggregate, k)

    def measure_group(self, group: list[Cell], progress: tqdm | None = None) -> int:
        """Build the group's index once, then measure its cells (and their rerank children). Returns rows written."""
        backend = group[0].backend
        index = first_stage_index(self.encoder, backend, group[0].build, self.weights)
        started = time.perf_counter()
        index.fit(self.embeddings.docs, self.build_threads)
        build = {"build_s": time.perf_counter() - started, "build_threads": self.build_threads,
                 "index_bytes": index.size_bytes(), "index_bytes_method": "serialized",
                 "rss_after_build_bytes": psutil.Process().memory_info().rss}
        written = 0
        for cell in group:
            row, result, latency = self._first_stage(index, cell, build)
            written += 1 + self._rerank_children(cell, row, result, latency)
            if progress is not None:
                progress.update()
                progress.set_postfix_str(f"{backend} k={cell.k} recall={row['recall_at_k']:.3f} "
                                         f"p50={row['search_p50_ms']:.3f}ms")
        del index
        gc.collect()
        return written

    def _first_stage(self, index, cell: Cell, build: dict) -> tuple[dict, Neighbors, LatencyStats]:
        """Measure and store one first-stage cell; returns its row, result lists and search latency."""
        test = self.embeddings.queries[: self.n_test]  # latency is timed on the test queries
        sample = list(test[: self.settings.query_sample or None])  # rows, shape (d,)
        index.set_search(cell.k, **cell.search)
        search = index.query
        if self.chunking is not None:  # the timed path includes mapping passages to distinct documents
            passages = self.embeddings.passages
            search = lambda vector: first_documents(index.query(vector), passages)  # noqa: E731
        calibration_ms = time_kernel()  # the host's speed right now, next to this cell's timing
        latency = measure_latency(search, sample, self.settings.warmup, self.settings.repeats)
        qps = measure_throughput(lambda: index.batch_query(self.embeddings.queries, self.batch_threads),
                                 len(self.embeddings.queries), self.settings.throughput_repeats)
        result = self._to_documents(index.batch_query(self.embeddings.queries, self.batch_threads), cell.k)
        e2e = end_to_end(self.encode_latency, latency)
        row = {
            **self.shared, **FIRST_STAGE_ONLY, **build, "cell_id": cell.cell_id, "backend": cell.backend, "stage": "first",
            "build_params": json.dumps(index.build.as_dict(), sort_keys=True),  # as run: defaults filled in
            "search_params": json.dumps(index.search_description(index.check_search(cell.k, cell.search)),
                                        sort_keys=True), "k": cell.k,
            **latency.columns("search"), "latency_samples": latency.samples, "latency_threads": 1,  # each backend's one-query path
            "calibration_ms": calibration_ms,
            "throughput_qps": qps, "throughput_threads": self.batch_threads,
            **self._recall(result.ids, self._truth(cell)),
            "queries_short": int((result.ids[: self.n_test] < 0).any(axis=1).sum()),
            **e2e.columns("e2e"), "e2e_queries": len(e2e.per_input_ms),
            **self._quality(result.ids), "measured_at": measured_now(),
        }
        self.sink(row)
        return row, result, latency

    def _recall(self, ids: np.ndarray, truth: np.ndarray) -> dict:
        """recall@K against exact search on the test queries, and on the dev queries (= test when there are none)."""
        test = recall_vs_exact(ids[: self.n_test], truth[: self.n_test])
        dev = recall_vs_exact(ids[self.n_test:], truth[self.n_test:]) if len(ids) > self.n_test else test
        return {"recall_at_k": test, "dev_recall_at_k": dev}

    def _quality(self, ids: np.ndarray) -> dict:
        """Means and per-query lists on the test queries (`ndcg_at_10`, ...) and the dev queries (`dev_...`);
        without dev queries the dev columns repeat the test ones (the rows' `dev_source` says so)."""
        quality = per_query_quality(ids, self.dataset)
        columns = {}
        parts = [("", quality.iloc[: self.n_test]), ("dev_", quality.iloc[self.n_test:] if len(quality) > self.n_test
                                                     else quality.iloc[: self.n_test])]
        for prefix, part in parts:
            columns.update({f"{prefix}{name}": float(part[name].mean()) for name in part.columns})
            columns[f"{prefix}query_ids"] = list(part.index)
            columns.update({f"{prefix}q_{name}": part[name].tolist() for name in part.columns})
        return columns

    @functools.cached_property
    def _choice_queries(self) -> tuple[slice, Dataset]:
        """The rows settings are chosen on, and those queries: dev, or test where there are none."""
        rows = slice(self.n_test, None) if len(self.dataset.query_ids) > self.n_test else slice(0, self.n_test)
        return rows, restrict(self.dataset, self.dataset.query_ids[rows], "dev")

    def _dev_alpha(self, result: Neighbors, r: int, cross: list[np.ndarray]) -> float:
        """The fusion weight (of ALPHAS) with the best mean nDCG@10 on the dev queries for this first-stage list
        and R (on the test queries where there are none: the rows' dev_source says so); ties go to the larger."""
        rows, queries = self._choice_queries
        first = Neighbors(result.ids[rows], result.scores[rows])

        def quality(alpha: float) -> float:
            ids = rerank(first, r, cross[rows], alpha)[:, :10]
            return round(float(per_query_quality(ids, queries)["ndcg_at_10"].mean()), 10)

        return max(ALPHAS, key=lambda alpha: (quality(alpha), alpha))

    def _rerank_latency_of(self, name: str, r: int) -> LatencyStats:
        """Per-query time to score R pairs (see Rerankers.latency), on this encoder's exact top-R."""
        sample = list(range(min(self.config.rerank.latency_queries, self.n_test)))
        return self.rerankers.latency(name, r, self.dataset, self.truth, sample, self.online_threads)

    def _rerank_children(self, cell: Cell, first_row: dict, result: Neighbors, search_latency: LatencyStats) -> int:
        if not cell.children or first_row["dev_recall_at_k"] < self.config.rerank.min_recall_at_k:
            return 0
        written = 0
        for name in dict.fromkeys(ch.reranker for ch in cell.children):
            children = [ch for ch in cell.children if ch.reranker == name]
            scorer, report = self.rerankers.get(name)
            started = time.perf_counter()
            cross, scored = cross_scores(scorer, self.rerankers.cache, self.dataset, result.ids,
                                         max(ch.r for ch in children))
            if scored:
                seconds = time.perf_counter() - started
                self.scoring_seconds += seconds
                Speeds().record("score_pairs_per_s", scored / seconds)
            for child in children:
                alpha = self._dev_alpha(result, child.r, cross) if child.alpha == "dev" else float(child.alpha)
                ids = rerank(result, child.r, [c[: child.r] for c in cross], alpha)
                latency = self._rerank_latency_of(name, child.r)
                e2e = end_to_end(self.encode_latency, search_latency, latency)
                self.sink({
                    **first_row, **self._quality(ids), "measured_at": measured_now(), "cell_id": child.cell_id,
                    "stage": "rerank",
                    "reranker": name,
                    "reranker_identity": scorer.identity, "reranker_saw_eval_docs": bool(report.get("saw_eval_docs")), "r": child.r, "fusion_alpha": alpha,
                    "fusion_alpha_chosen_on": "dev" if child.alpha == "dev" else "",
                    "rerank_max_length": scorer.max_length, "cross_pairs_scored": scored,
                    "reranker_params": scorer.n_parameters(), "reranker_train_s": report.get("train_seconds", float("nan")),
                    **latency.columns("rerank"), "rerank_latency_queries": latency.samples,
                    "rerank_threads": self.online_threads,
                    **e2e.columns("e2e"), "e2e_queries": len(e2e.per_input_ms),
                })
                scored = 0
                written += 1
        return written


EXACT_BACKEND = {name: ("bm25s" if cls.input == "text" else "exact") for name, cls in BACKENDS.items()}
