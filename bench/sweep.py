"""The sweep: encoders x backends x build grid x search grid x K, measured cell by cell into the store."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from tqdm import tqdm

from bench.cache import content_key
from bench.config import EncoderSpec, MeasureSpec, SweepConfig
from bench.datasets import Dataset, load_dataset
from bench.encoders import BiEncoder, Embeddings, Encoder, embed_dataset, model_identity
from bench.env import host_id, run_metadata
from bench.indexes import ParamError, make_index
from bench.indexes.base import cpu_count
from bench.metrics import recall_vs_exact, per_query_quality
from bench.store import ResultStore
from bench.timing import LatencyStats, measure_latency, measure_throughput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cell:
    """One measurement: an encoder, an index built with `build`, searched with `search` for top-`k`."""

    encoder: EncoderSpec
    backend: str
    build: dict
    search: dict
    k: int
    cell_id: str

    @property
    def build_key(self) -> tuple[str, str]:
        return self.backend, json.dumps(self.build, sort_keys=True)


@dataclass
class SweepSummary:
    planned: int = 0
    computed: int = 0
    already_done: int = 0
    skipped_invalid: int = 0  # grid points breaking a cross-parameter rule (ef < K, nprobe > nlist, ...)
    corpora_encoded: int = 0


def load_sweep_dataset(config: SweepConfig, data_root: Path | None = None) -> Dataset:
    dataset = load_dataset(config.dataset, config.split, root=data_root, **config.synthetic)
    return dataset.subset(config.max_queries) if config.max_queries else dataset


def plan_cells(config: SweepConfig, dataset: Dataset, encoder: EncoderSpec) -> tuple[list[Cell], int]:
    """Every valid cell of the grid for one encoder, and how many grid points were skipped as invalid.

    A grid is a cartesian product, so some points break a cross-parameter rule (ef < K, nprobe > nlist);
    those are skipped and counted. A search tuple that no build tuple and no K accepts is an error, as
    are unknown parameter names, bad types and build parameters that cannot work on this corpus.
    """
    if max(config.k) > dataset.n_docs:
        raise ParamError(f"K ({max(config.k)}) exceeds the corpus size ({dataset.n_docs}) of '{dataset.name}'")
    identity = model_identity(encoder.model)
    cells, skipped = [], 0
    for spec in config.backends:
        indexes = [make_index(spec.backend, **build) for build in spec.build_grid()]
        for index in indexes:
            index.check_build(dataset.n_docs)
        for search in spec.search_grid():
            first_error = None
            accepted = 0
            for index, k in itertools.product(indexes, config.k):
                try:
                    index.check_search(k, search)
                except ParamError as err:
                    first_error = first_error or err
                    skipped += 1
                    continue
                accepted += 1
                key = {"dataset": dataset.content_hash, "split": dataset.split, "queries": dataset.query_ids,
                       "encoder": dataclasses.asdict(encoder), "model": identity, "backend": spec.backend,
                       "build": index.build, "search": search, "k": k, "measure": dataclasses.asdict(config.measure)}
                cells.append(Cell(encoder, spec.backend, index.build, search, k, content_key(key)))
            if not accepted:
                raise ParamError(f"{first_error} (search point {search} is invalid for every build point and K)")
    return cells, skipped


def measure_query_encoding(encoder: Encoder, texts: list[str], warmup: int) -> LatencyStats:
    """Latency of encoding one query at a time on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure_latency(lambda text: encoder.encode_queries([text], batch_size=1), texts, warmup, 1)
    finally:
        torch.set_num_threads(threads)


def _threads(requested: int) -> int:
    return requested if requested > 0 else cpu_count()


def run_sweep(config: SweepConfig, redo: bool = False, data_root: Path | None = None,
              store: ResultStore | None = None) -> SweepSummary:
    """Measure every cell of `config` not already in the store for this hardware (all of them if `redo`)."""
    store = store or ResultStore(config.results_path)
    dataset = load_sweep_dataset(config, data_root)
    plans = {spec.name: plan_cells(config, dataset, spec) for spec in config.encoders}  # validate all first
    done = set() if redo else store.done(host_id())
    summary = SweepSummary()
    metadata = run_metadata(config.config_hash())
    for spec in config.encoders:
        cells, skipped = plans[spec.name]
        summary.planned += len(cells)
        summary.skipped_invalid += skipped
        pending = [c for c in cells if c.cell_id not in done]
        summary.already_done += len(cells) - len(pending)
        if skipped:
            log.info("%s: %d grid points skipped (ef < K, nprobe > nlist, ...)", spec.name, skipped)
        if not pending:
            log.info("%s: all %d cells already measured on this host", spec.name, len(cells))
            continue
        encoder = BiEncoder(spec.model, spec.max_seq_length)
        embeddings = embed_dataset(encoder, dataset, spec.batch_size)
        summary.corpora_encoded += not embeddings.cached
        encode_latency = measure_query_encoding(
            encoder, dataset.query_texts[: config.measure.encode_sample], config.measure.warmup)
        shared = {**metadata, "config_name": config.name, "dataset": dataset.name, "dataset_hash": dataset.content_hash,
                  "split": dataset.split, "n_docs": dataset.n_docs, "n_queries": len(dataset.query_ids),
                  "encoder": spec.name, "encoder_type": spec.type, "model": spec.model,
                  "model_identity": encoder.identity, "max_seq_length": encoder.max_seq_length, "dim": encoder.dim,
                  "corpus_encode_s": embeddings.encode_seconds,
                  **{f"query_encode_{k}": v for k, v in _latency_columns(encode_latency).items()}}
        summary.computed += _measure_cells(pending, embeddings, dataset, config.measure, shared, store)
        del encoder
        gc.collect()
    return summary


def _latency_columns(stats: LatencyStats) -> dict[str, float]:
    return {"p50_ms": stats.p50_ms, "p95_ms": stats.p95_ms, "p99_ms": stats.p99_ms, "mean_ms": stats.mean_ms}


def _exact_top(embeddings: Embeddings, k: int, threads: int) -> np.ndarray:
    exact = make_index("exact")
    exact.fit(embeddings.docs, threads)
    exact.set_search(k)
    return exact.batch_query(embeddings.queries, threads).ids


def _measure_cells(cells: list[Cell], embeddings: Embeddings, dataset: Dataset, measure: MeasureSpec,
                   shared: dict, store: ResultStore) -> int:
    """Build each index once per build tuple, then measure each of its pending cells and store the row."""
    build_threads, batch_threads = _threads(measure.build_threads), _threads(measure.throughput_threads)
    truth = _exact_top(embeddings, max(c.k for c in cells), build_threads)
    sample = list(embeddings.queries[: measure.query_sample or None])  # rows, shape (d,)
    computed = 0
    progress = tqdm(total=len(cells), desc=f"cells ({shared['encoder']})", unit="cell")
    for (backend, _), group in itertools.groupby(sorted(cells, key=lambda c: c.build_key), key=lambda c: c.build_key):
        group = list(group)
        index = make_index(backend, **group[0].build)
        started = time.perf_counter()
        index.fit(embeddings.docs, build_threads)
        build_s = time.perf_counter() - started
        index_bytes, rss = index.size_bytes(), psutil.Process().memory_info().rss
        for cell in group:
            index.set_search(cell.k, **cell.search)
            latency = measure_latency(index.query, sample, measure.warmup, measure.repeats)
            qps = measure_throughput(lambda: index.batch_query(embeddings.queries, batch_threads),
                                     len(embeddings.queries), measure.throughput_repeats)
            result = index.batch_query(embeddings.queries, batch_threads)
            quality = per_query_quality(result.ids, dataset)
            row = {
                **shared, "cell_id": cell.cell_id, "backend": backend,
                "build_params": json.dumps(cell.build, sort_keys=True),
                "search_params": json.dumps(cell.search, sort_keys=True), "k": cell.k,
                "build_s": build_s, "build_threads": build_threads, "index_bytes": index_bytes,
                "index_bytes_method": "serialized", "rss_after_build_bytes": rss,
                **{f"search_{k}": v for k, v in _latency_columns(latency).items()},
                "latency_samples": latency.samples, "latency_threads": 1,
                "throughput_qps": qps, "throughput_threads": batch_threads,
                "recall_at_k": recall_vs_exact(result.ids, truth[:, : cell.k]),
                **{name: float(quality[name].mean()) for name in quality.columns},
                "queries_short": int((result.ids < 0).any(axis=1).sum()),
                "query_ids": list(quality.index), **{f"q_{name}": quality[name].tolist() for name in quality.columns},
            }
            store.add(row)
            computed += 1
            progress.update()
            progress.set_postfix_str(f"{backend} k={cell.k} recall={row['recall_at_k']:.3f} "
                                     f"p50={latency.p50_ms:.3f}ms")
        del index
        gc.collect()
    progress.close()
    return computed
