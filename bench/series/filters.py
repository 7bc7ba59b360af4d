"""Metadata filters: ANN search restricted to the documents that pass a query's filter.

Documents get a seeded synthetic attribute (a tenant: with selectivity s there are round(1/s) equally
likely tenants, so about s of the corpus passes a filter); each query filters on one random tenant. The
ground truth is exact search over the passing subset. Strategies:

- `prefilter`: exact scan over the passing subset only (numpy; backend-independent, reported as "exact");
- `native`: the library filters inside its own search (faiss `IDSelectorBatch`, hnswlib's filter
  callback); backends without one (ScaNN's Python API) are skipped;
- `postfilter`: ask the index for K, drop the failing ids (short lists are the known failure);
- `postfilter-inflated`: ask for min(cap, ceil(K / s)) and keep the first K passing.

Every strategy is timed one query at a time on one thread; selectors are built per filter outside the
timed path. Recall@K is against the filtered exact top-K (or all passing documents when fewer than K
pass); `queries_short` counts queries that got fewer results than that, `violations` ids that fail the
filter (always 0 by construction, and checked).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.core.cache import content_key
from bench.pipeline.config import ConfigError, MeasureSpec, SeriesConfig, from_table, read_toml, resolve_dataset_path
from bench.data.datasets import load_dataset
from bench.models.encoders import SentenceEncoder, embed_dataset
from bench.core.env import host_id, measured_now, run_metadata
from bench.search.indexes import make_index
from bench.core.env import cpu_count
from bench.search.indexes.base import AllowedIds, AnnIndex, ParamError
from bench.store.results import FILTER_SCHEMA, ResultStore
from bench.core.timing import measure_latency

log = logging.getLogger(__name__)

STRATEGIES = ("prefilter", "native", "postfilter", "postfilter-inflated")


@dataclass(frozen=True)
class FilterBackend:
    """One backend at fixed build and search parameters."""

    backend: str
    build: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FilterConfig(SeriesConfig):
    backends: list[FilterBackend]
    selectivities: list[float] = field(default_factory=lambda: [0.01, 0.1, 0.5])
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    inflation_cap: int = 1000  # most candidates a post-filter asks for


def load_filter_config(path: Path | str) -> FilterConfig:
    path = Path(path)
    raw = resolve_dataset_path(read_toml(path), Path(path))
    backends = [from_table(FilterBackend, b, f"{path}: backends[{i}]") for i, b in enumerate(raw.pop("backends", []))]
    measure = from_table(MeasureSpec, raw.pop("measure", {}), f"{path}: measure")
    config = from_table(FilterConfig, {**raw, "backends": backends, "measure": measure}, str(path))
    bad = [s for s in config.selectivities if not 0 < s <= 1]
    if bad:
        raise ConfigError(f"{path}: selectivities must be in (0, 1], got {bad}")
    unknown = sorted(set(config.strategies) - set(STRATEGIES))
    if unknown:
        raise ConfigError(f"{path}: unknown strategies {unknown}; expected some of {list(STRATEGIES)}")
    for i, b in enumerate(backends):
        try:
            make_index(b.backend, **b.build).check_search(config.k, b.search)
        except ParamError as err:
            raise ConfigError(f"{path}: backends[{i}]: {err}") from None
    return config


def tenant_filters(n_docs: int, n_queries: int, selectivity: float, seed: int) -> tuple[np.ndarray, list[AllowedIds]]:
    """Each document's tenant, and each query's allowed rows (one random tenant's documents)."""
    rng = np.random.default_rng([seed, round(selectivity * 1e6)])
    tenants = max(1, round(1 / selectivity))
    doc_tenant = rng.integers(tenants, size=n_docs)
    query_tenant = rng.integers(tenants, size=n_queries)
    return doc_tenant, [AllowedIds(doc_tenant == t) for t in query_tenant]


def filtered_exact(docs: np.ndarray, query: np.ndarray, allowed: AllowedIds, k: int) -> np.ndarray:
    """Exact top-k among the allowed rows (padded with -1 when fewer pass): ground truth and `prefilter`."""
    scores = docs[allowed.ids] @ query
    top = np.argsort(-scores, kind="stable")[:k]
    out = np.full(k, -1, dtype=np.int64)
    out[: len(top)] = allowed.ids[top]
    return out


def keep_allowed(ids: np.ndarray, allowed: AllowedIds, k: int) -> np.ndarray:
    """The first k ids that pass the filter, padded with -1."""
    ids = np.asarray(ids, dtype=np.int64)
    ids = ids[ids >= 0]
    kept = ids[allowed.mask[ids]][:k]
    return np.concatenate([kept, np.full(k - len(kept), -1, dtype=np.int64)])


def inflated_k(k: int, selectivity: float, cap: int, n: int) -> int:
    return int(min(max(k, math.ceil(k / selectivity)), cap, n))


def strategy_call(strategy: str, index: AnnIndex, spec: FilterBackend, docs: np.ndarray, k: int,
                  selectivity: float, cap: int) -> tuple[Callable[[np.ndarray, AllowedIds], np.ndarray], int]:
    """The per-query function of a strategy on a built index, and the K it asks the index for."""
    if strategy == "prefilter":
        return (lambda q, allowed: filtered_exact(docs, q, allowed, k)), k
    if strategy == "native":
        if not index.native_filter:
            raise ParamError(f"{spec.backend}: no native filtered search")
        index.set_search(k, **index.search_at_least(k, spec.search))
        return index.filtered_query, k
    asked = k if strategy == "postfilter" else inflated_k(k, selectivity, cap, index.n)
    index.set_search(asked, **index.search_at_least(asked, spec.search))
    return (lambda q, allowed: keep_allowed(index.query(q), allowed, k)), asked


def run_filters(config: FilterConfig, data_root: Path | None = None, store: ResultStore | None = None) -> int:
    """Measure every (backend, selectivity, strategy) not yet stored for this hardware; returns rows written."""
    store = store or ResultStore(config.results_path, FILTER_SCHEMA)
    dataset = load_dataset(config.dataset, config.split, root=data_root)
    embeddings = embed_dataset(SentenceEncoder(config.model, config.max_seq_length), dataset)
    docs, queries = embeddings.docs, embeddings.queries
    frame = store.load()
    done = set(frame.loc[frame["host_id"] == host_id(), "cell_id"])
    metadata = run_metadata(config.config_hash())
    threads = config.measure.build_threads or cpu_count()
    written = 0
    for spec in config.backends:
        cells = []
        for selectivity in config.selectivities:
            for strategy in config.strategies:
                if strategy == "prefilter" and spec.backend != "exact":
                    continue  # backend-independent: measured once, under the exact backend
                key = {"dataset": dataset.content_hash, "model": config.model, "max_seq_length": config.max_seq_length,
                       "backend": dataclasses.asdict(spec), "selectivity": selectivity, "strategy": strategy,
                       "k": config.k, "cap": config.inflation_cap, "seed": config.seed,
                       "measure": config.measure.key()}
                cell_id = content_key(key)
                if cell_id not in done:
                    cells.append((selectivity, strategy, cell_id))
        if not cells:
            continue
        index = make_index(spec.backend, **spec.build)
        try:
            index.fit(docs, threads)
            for selectivity, strategy, cell_id in cells:
                if strategy == "native" and not index.native_filter:
                    log.info("%s has no native filtered search: skipped", spec.backend)
                    continue
                row = _measure(index, spec, docs, queries, selectivity, strategy, config)
                store.add({**metadata, **row, "measured_at": measured_now(), "cell_id": cell_id,
                           "config_name": config.name, "dataset": dataset.name, "n_docs": dataset.n_docs,
                           "n_queries": len(queries), "k": config.k})
                written += 1
        finally:
            index.close()  # a server or folder the engine holds
    return written


def _measure(index: AnnIndex, spec: FilterBackend, docs, queries, selectivity: float, strategy: str,
             config: FilterConfig) -> dict:
    k = config.k
    _, filters = tenant_filters(len(docs), len(queries), selectivity, config.seed)
    truth = [filtered_exact(docs, q, allowed, k) for q, allowed in zip(queries, filters)]
    call, asked = strategy_call(strategy, index, spec, docs, k, selectivity, config.inflation_cap)
    results = [np.asarray(call(q, allowed), dtype=np.int64)[:k] for q, allowed in zip(queries, filters)]
    recalls, short, violations = [], 0, 0
    for result, expected, allowed in zip(results, truth, filters):
        valid = result[result >= 0]
        want = expected[expected >= 0]
        violations += int((~allowed.mask[valid]).sum())
        short += len(valid) < len(want)
        recalls.append(len(set(valid.tolist()) & set(want.tolist())) / len(want) if len(want) else 1.0)
    latency = measure_latency(lambda i: call(queries[i], filters[i]), list(range(len(queries))),
                              config.measure.warmup, config.measure.repeats)
    log.info("%s s=%.2f %s: recall %.3f, short %d, p95 %.3f ms", spec.backend, selectivity, strategy,
             float(np.mean(recalls)), short, latency.p95_ms)
    effective = index.check_search(asked, index.search_at_least(asked, spec.search))
    return {"backend": spec.backend, "build_params": json.dumps(index.build.as_dict(), sort_keys=True),
            "search_params": json.dumps(effective, sort_keys=True),
            "native_filter": index.native_filter if strategy == "native" else "",
            "selectivity": selectivity, "selectivity_realized": float(np.mean([a.mask.mean() for a in filters])),
            "strategy": strategy, "k_requested": asked, "recall_at_k": float(np.mean(recalls)),
            "queries_short": short, "violations": violations, **latency.columns("search"),
            "latency_samples": latency.samples}
