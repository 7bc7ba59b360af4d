"""The scale series: how build time, index bytes, RSS and latency at a fixed recall grow with N.

Vectors: the encoder's real embeddings of the dataset's corpus (the small end), and beyond that samples
from a generator fitted to them: a Gaussian mixture (scikit-learn, diagonal covariances) in the real
embeddings' PCA basis, rotated back and L2-normalized, so the samples keep the corpus' cluster structure
and its decaying spectrum. The generator is also sampled at the real corpus size, so the two can be
compared cell by cell. Queries are the dataset's real queries, encoded by the same model.

For each source, N and backend: build once (threads as configured), try the search grid in order and
keep the first point whose recall@k against exact search reaches the target, then time single queries
there. Memory is measured (serialized bytes, RSS growth over the build) and predicted from each
backend's layout (its `memory_bytes`); `growth` fits log-log slopes over N.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.analysis import HIDDEN_PARAMS
from bench.core.cache import cached_array, content_key
from bench.data.chunking import Chunking
from bench.pipeline.config import ConfigError, MeasureSpec, SeriesConfig, as_lists, from_table, grid, read_toml, resolve_dataset_path
from bench.data.datasets import DatasetError, load_dataset
from bench.models.encoders import SentenceEncoder, embed_dataset
from bench.core.env import cpu_count, host_id, measured_now, run_metadata
from bench.search.indexes import exact_neighbors, make_index
from bench.search.indexes.base import ParamError
from bench.data.metrics import recall_vs_exact
from bench.store.results import SCALE_SCHEMA, ResultStore
from bench.core.timing import measure_latency
from bench.series.vectorsets import METRICS, REGISTRY as SETS, load_set

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScaleBackend:
    """A backend's build parameters (numbers, or "sqrt(N)" / "<c>*sqrt(N)", resolved per N) and its search
    grid, tried in order (list cheapest first). A backend may appear several times with different builds
    (a build grid); `max_n` leaves it out above that size (builds too slow to repeat at 1M)."""

    backend: str
    build: dict[str, Any] = field(default_factory=dict)
    search: dict[str, list] = field(default_factory=dict)
    max_n: int | None = None
    sets: list[str] = field(default_factory=list)  # the vector sets it runs on (empty: all; e.g. PQ's m divides d)

    def build_at(self, n: int) -> dict[str, Any]:
        return {name: resolve_size_rule(value, n, f"{self.backend}.build.{name}") for name, value in self.build.items()}

    @property
    def variant(self) -> str:
        """The backend and its build as configured, e.g. "hnsw M=32 ef_construction=100": a row's series."""
        return " ".join([self.backend, *(f"{name}={value}" for name, value in sorted(self.build.items())
                                          if name not in HIDDEN_PARAMS)])


@dataclass(frozen=True)
class PooledSource:
    """Real vectors for the pooled point: a dataset's documents (or their passages) or its queries."""

    dataset: str
    split: str = "test"
    side: str = "docs"  # "docs" or "queries"
    chunk_tokens: int = 0
    chunk_stride: int = 0


@dataclass(frozen=True)
class VectorSetSpec:
    """A real vector set with its own held-out queries (bench.series.vectorsets), measured at each of `sizes` (seeded
    prefixes of its index; empty: the whole set), each beside the mixture fitted to the set at the same N."""

    name: str
    sizes: list[int] = field(default_factory=list)
    queries: int = 10_000
    mixture: bool = True  # the control: a mixture fitted to the set, sampled at the set's largest size
    path: str = ""  # your own vectors: .npy, .fvecs or ann-benchmarks .hdf5 (bench.series.vectorsets.from_file)
    metric: str = "angular"  # angular, ip or euclidean (a file's vectors)
    queries_path: str = ""  # a .npy / .fvecs of queries for a matrix file (else `queries` withheld from it)


@dataclass(frozen=True)
class ScaleConfig(SeriesConfig):
    backends: list[ScaleBackend]
    sizes: list[int] = field(default_factory=lambda: [10_000, 100_000, 1_000_000])
    real: bool = True  # also measure the real embeddings (N = corpus size) and the generator at that N
    target_recall: float = 0.95
    components: int = 64  # Gaussian mixture components
    # The largest real point the shared data allows: every listed source's real vectors pooled (exact
    # duplicates dropped; the series' queries are never in it), measured next to the generator fitted to it.
    pooled: list[PooledSource] = field(default_factory=list)
    # Real vector sets with their own queries (`[[sets]]`); `latency_queries` > 0 times single queries on that many
    # of a set's queries (recall is always over all of them).
    sets: list[VectorSetSpec] = field(default_factory=list)
    latency_queries: int = 0

    @property
    def dataset_points(self) -> bool:
        """Whether the series measures the dataset's embeddings and samples fitted to them (scale.toml's points)."""
        return self.real or bool(self.sizes) or bool(self.pooled)


_SIZE_RULE = re.compile(r"^\s*(?:([0-9.]+)\s*\*\s*)?sqrt\(N\)\s*$")


def resolve_size_rule(value: Any, n: int, where: str) -> Any:
    """A build parameter: a fixed value, or "sqrt(N)" / "<c>*sqrt(N)" (rounded to an integer)."""
    if not isinstance(value, str) or "N" not in value:
        return value  # a number, or a string parameter ("sq8"); the backend checks its type
    match = _SIZE_RULE.match(value)
    if not match:
        raise ParamError(f"{where}: '{value}' is neither a value nor 'sqrt(N)' / '<c>*sqrt(N)'")
    return max(1, round(float(match.group(1) or 1.0) * math.sqrt(n)))


def load_scale_config(path: Path | str) -> ScaleConfig:
    path = Path(path)
    raw = resolve_dataset_path(read_toml(path), Path(path))
    backends = []
    for i, b in enumerate(raw.pop("backends", [])):
        spec = from_table(ScaleBackend, b, f"{path}: backends[{i}]")
        backends.append(dataclasses.replace(spec, search=as_lists(spec.search, f"{path}: backends[{i}].search")))
    pooled = [from_table(PooledSource, p, f"{path}: pooled[{i}]") for i, p in enumerate(raw.pop("pooled", []))]
    sets = [from_table(VectorSetSpec, v, f"{path}: sets[{i}]") for i, v in enumerate(raw.pop("sets", []))]
    for i, spec in enumerate(sets):
        if spec.path:
            for field_name in ("path", "queries_path"):
                value = getattr(spec, field_name)
                if value and not Path(value).exists():
                    raise ConfigError(f"{path}: sets[{i}].{field_name}: {value} does not exist")
            if spec.metric not in METRICS:
                raise ConfigError(f"{path}: sets[{i}].metric must be one of {list(METRICS)}, got '{spec.metric}'")
        elif spec.name not in SETS:
            raise ConfigError(f"{path}: sets[{i}].name: unknown vector set '{spec.name}' (known: {', '.join(sorted(SETS))})")
        if not isinstance(spec.queries, int) or spec.queries < 1:
            raise ConfigError(f"{path}: sets[{i}].queries must be a positive integer, got {spec.queries!r}")
    for i, source in enumerate(pooled):
        if source.side not in ("docs", "queries"):
            raise ConfigError(f"{path}: pooled[{i}].side must be 'docs' or 'queries', got '{source.side}'")
        if source.side == "queries" and source.dataset == raw.get("dataset") and source.split == raw.get("split", "test"):
            raise ConfigError(f"{path}: pooled[{i}]: the series' own queries cannot be in the pooled vectors")
    measure = from_table(MeasureSpec, raw.pop("measure", {}), f"{path}: measure")
    config = from_table(ScaleConfig, {**raw, "backends": backends, "measure": measure, "pooled": pooled, "sets": sets},
                        str(path))
    if not backends:
        raise ConfigError(f"{path}: no backends")
    if not 0 < config.target_recall <= 1:
        raise ConfigError(f"{path}: target_recall must be in (0, 1], got {config.target_recall}")
    for where, sizes in [("sizes", config.sizes), *((f"sets[{i}].sizes", v.sizes) for i, v in enumerate(sets))]:
        if any(not isinstance(n, int) or n < config.k for n in sizes):
            raise ConfigError(f"{path}: {where} must be integers >= k ({config.k}), got {sizes}")
    for spec in backends:
        for n in config.sizes:
            make_index(spec.backend, **spec.build_at(n)).check_build(n)
    return config


# ---------------------------------------------------------------- the generator


@dataclass
class MixtureGenerator:
    """A diagonal Gaussian mixture fitted in the PCA basis of real embeddings."""

    mean: np.ndarray  # (d,)
    basis: np.ndarray  # (d, d): rows are principal directions
    weights: np.ndarray  # (c,)
    means: np.ndarray  # (c, d) in the PCA basis
    variances: np.ndarray  # (c, d)

    @classmethod
    def fit(cls, vectors: np.ndarray, components: int, seed: int) -> "MixtureGenerator":
        from sklearn.decomposition import PCA
        from sklearn.mixture import GaussianMixture

        pca = PCA(random_state=seed).fit(vectors)
        gmm = GaussianMixture(components, covariance_type="diag", random_state=seed, reg_covar=1e-6, max_iter=200)
        gmm.fit(pca.transform(vectors))
        return cls(pca.mean_, pca.components_, gmm.weights_, gmm.means_, gmm.covariances_)

    def sample(self, n: int, seed: int, chunk: int = 100_000) -> np.ndarray:
        """`n` unit vectors, float32, generated chunk by chunk (no float64 copy of the whole set)."""
        rng = np.random.default_rng(seed)
        out = np.empty((n, len(self.mean)), dtype=np.float32)
        basis, mean = self.basis.astype(np.float32), self.mean.astype(np.float32)
        scale = np.sqrt(self.variances).astype(np.float32)
        centers = self.means.astype(np.float32)
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            which = rng.choice(len(self.weights), size=size, p=self.weights / self.weights.sum())
            z = centers[which] + rng.standard_normal((size, len(mean)), dtype=np.float32) * scale[which]
            x = z @ basis + mean
            out[start:start + size] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class ScaleCell:
    source: str  # "real" or "gmm"
    n: int
    spec: ScaleBackend
    cell_id: str


def plan_scale(config: ScaleConfig, corpus_size: int, pooled_size: int = 0,
               set_sizes: dict[str, int] | None = None) -> list[ScaleCell]:
    """Every (source, N, backend variant) cell. `set_sizes`: each vector set's whole index size (its `sizes` are
    prefixes of it); a set's source is its name, its mixture's `gmm-<name>`."""
    points = ([("real", corpus_size), ("gmm", corpus_size)] if config.real else []) + [("gmm", n) for n in config.sizes]
    if config.pooled:
        points += [("pooled", pooled_size), ("gmm-pooled", pooled_size)]
    set_points = []
    for spec in config.sets:
        whole = (set_sizes or {}).get(spec.name)
        if whole is None:
            continue
        sizes = sorted({min(n, whole) for n in spec.sizes} or {whole})
        set_points += [(spec.name, n) for n in sizes] + ([(f"gmm-{spec.name}", sizes[-1])] if spec.mixture else [])
    cells = []
    for source, n in points + set_points:
        for spec in config.backends:
            if spec.max_n is not None and n > spec.max_n:
                continue
            if spec.sets and (source, n) in set_points and source.removeprefix("gmm-") not in spec.sets:
                continue
            key = {"source": source, "n": n, "backend": spec.backend, "build": spec.build_at(n), "search": spec.search,
                   "k": config.k, "target": config.target_recall, "dataset": config.dataset, "split": config.split,
                   "model": config.model, "max_seq_length": config.max_seq_length,
                   "generator": [config.components, config.seed], "measure": config.measure.key()}
            if source in ("pooled", "gmm-pooled"):
                key["pooled"] = [dataclasses.asdict(p) for p in config.pooled]
            if (source, n) in set_points:  # a vector set: its own queries and loader, not the dataset's
                vset = next(v for v in config.sets if source in (v.name, f"gmm-{v.name}"))
                key = {**{k: v for k, v in key.items() if k not in ("dataset", "split", "model", "max_seq_length")},
                       "set": vset.name, "set_queries": vset.queries, "latency_queries": config.latency_queries}
                if vset.path:  # a file named by the config: which file (name and size) and how it is compared
                    key["file"] = [Path(vset.path).name, Path(vset.path).stat().st_size, vset.metric, vset.queries_path]
            cells.append(ScaleCell(source, n, spec, content_key(key)))
    return cells


def pooled_vectors(config: ScaleConfig, encoder, data_root: Path | None) -> np.ndarray:
    """Every pooled source's real vectors (cached embeddings; encoded once otherwise), exact duplicates dropped."""
    parts = []
    for source in config.pooled:
        dataset = load_dataset(source.dataset, source.split, root=data_root)
        chunking = Chunking(source.chunk_tokens, source.chunk_stride) if source.chunk_tokens else None
        embeddings = embed_dataset(encoder, dataset, chunking=chunking)
        parts.append(embeddings.docs if source.side == "docs" else embeddings.queries)
    pooled = np.concatenate(parts).astype(np.float32)
    _, first = np.unique(pooled, axis=0, return_index=True)
    return np.ascontiguousarray(pooled[np.sort(first)])


def run_scale(config: ScaleConfig, data_root: Path | None = None, store: ResultStore | None = None) -> int:
    """Measure every cell of the series not yet stored for this hardware; returns rows written."""
    store = store or ResultStore(config.results_path, SCALE_SCHEMA)
    frame = store.load()
    done = set(frame.loc[frame["host_id"] == host_id(), "cell_id"])
    metadata = run_metadata(config.config_hash())
    threads = config.measure.build_threads or cpu_count()
    written = _run_dataset_points(config, data_root, store, done, metadata, threads) if config.dataset_points else 0
    return written + _run_sets(config, data_root, store, done, metadata, threads)


def _run_dataset_points(config: ScaleConfig, data_root, store: ResultStore, done: set[str], metadata: dict,
                        threads: int) -> int:
    """The dataset's embeddings, the mixture fitted to them at every size, and the pooled point."""
    dataset = load_dataset(config.dataset, config.split, root=data_root)
    encoder = SentenceEncoder(config.model, config.max_seq_length)
    embeddings = embed_dataset(encoder, dataset)
    real, queries = embeddings.docs, embeddings.queries
    pooled = pooled_vectors(config, encoder, data_root) if config.pooled else None
    cells = [c for c in plan_scale(config, len(real), 0 if pooled is None else len(pooled))
             if c.source in ("real", "gmm", "pooled", "gmm-pooled")]
    pending = [c for c in cells if c.cell_id not in done]
    log.info("scale: %d cells, %d already measured", len(cells), len(cells) - len(pending))
    if not pending:
        return 0
    generator = MixtureGenerator.fit(real, config.components, config.seed)
    described = {"model": config.model, "dataset": f"{config.dataset}/{config.split}", "fitted_on": len(real),
                 "mixture": f"{config.components} diagonal Gaussians in the PCA basis", "seed": config.seed}
    pooled_described = {"model": config.model, "pooled": [dataclasses.asdict(p) for p in config.pooled]}
    pooled_generator = None
    if any(c.source == "gmm-pooled" for c in pending):
        pooled_generator = MixtureGenerator.fit(pooled, config.components, config.seed)
    generators = {"real": {"model": config.model, "dataset": described["dataset"]}, "gmm": described,
                  "pooled": pooled_described,
                  "gmm-pooled": {**described, "dataset": "the pooled vectors", "fitted_on": 0 if pooled is None else len(pooled)}}
    written = 0
    for (source, n), group in _by_corpus(pending):
        vectors = {"real": lambda: real, "pooled": lambda: pooled,
                   "gmm": lambda: _sample(generator, config, n, len(real)),
                   "gmm-pooled": lambda: pooled_generator.sample(n, config.seed + n)}[source]()
        written += _measure_point(config, store, metadata, threads, source, n, group, vectors, queries,
                                  generators[source])
        del vectors
        gc.collect()
    return written


def _run_sets(config: ScaleConfig, data_root, store: ResultStore, done: set[str], metadata: dict, threads: int) -> int:
    """Each real vector set with its own queries at each size (a seeded prefix of its index), beside a mixture fitted
    to the set and sampled at the same N (labelled `gmm-<set>`: a control, not data)."""
    written = 0
    for spec in config.sets:
        vset = load_set(spec.name, spec.queries, config.seed, data_root, spec.path, spec.metric, spec.queries_path)
        order = np.random.default_rng(config.seed).permutation(len(vset.vectors))
        cells = plan_scale(config, 0, 0, {spec.name: len(vset.vectors)})
        cells = [c for c in cells if c.source in (spec.name, f"gmm-{spec.name}")]
        pending = [c for c in cells if c.cell_id not in done]
        log.info("scale %s: %d cells, %d already measured", spec.name, len(cells), len(cells) - len(pending))
        if not pending:
            continue
        generator = None
        if any(c.source.startswith("gmm-") for c in pending):
            fit_on = vset.vectors[order[:100_000]]  # a seeded 100k: enough for 64 diagonal components
            generator = MixtureGenerator.fit(fit_on, config.components, config.seed)
        for (source, n), group in _by_corpus(pending):
            truth = None
            if source == spec.name:
                vectors = np.ascontiguousarray(vset.vectors[np.sort(order[:n])])
                described = {**vset.described, "n": n}
                if vset.neighbors is not None and n == len(vset.vectors):  # the file's own ground truth, checked
                    truth = checked_truth(vset, config.k, threads)
                    described["ground_truth"] = (f"the file's neighbors (agree with exact search: recall@{config.k} "
                                                 f"{truth[1]:.4f})")
                    truth = truth[0]
            else:
                vectors = generator.sample(n, config.seed + n)
                described = {"mixture": f"{config.components} diagonal Gaussians in the PCA basis",
                             "fitted_on": f"{min(len(order), 100_000)} vectors of {spec.name}", "seed": config.seed}
            written += _measure_point(config, store, metadata, threads, source, n, group, vectors, vset.queries,
                                      described, truth)
            del vectors
            gc.collect()
    return written


def checked_truth(vset, k: int, threads: int, agree: float = 0.99) -> tuple[np.ndarray, float]:
    """A file's own top-`k` neighbours (ann-benchmarks' `neighbors`), checked against exact search here: (the file's
    ids, their recall@k against exact); a DatasetError when they agree on less than `agree` (ties aside)."""
    exact = exact_neighbors(vset.vectors, vset.queries, k, threads).ids
    given = np.asarray(vset.neighbors)[:, :k].astype(np.int64)
    if given.shape != exact.shape:
        raise DatasetError(f"vector set '{vset.name}': neighbors {given.shape} do not match the queries ({exact.shape})")
    recall = recall_vs_exact(given, exact)
    if recall < agree:
        raise DatasetError(f"vector set '{vset.name}': the file's neighbors agree with exact search on recall@{k} "
                           f"{recall:.4f} only (< {agree}): another metric or another set")
    return given, recall


def _measure_point(config: ScaleConfig, store: ResultStore, metadata: dict, threads: int, source: str, n: int,
                   group: list["ScaleCell"], vectors: np.ndarray, queries: np.ndarray, described: dict,
                   truth: np.ndarray | None = None) -> int:
    """Every backend cell at one (source, N): ground truth by exact search (or a file's, checked), then each cell
    measured and stored."""
    if truth is None:
        truth = exact_neighbors(vectors, queries, config.k, threads).ids
    for cell in group:
        row = _measure(cell, vectors, queries, truth, config, threads)
        store.add({**metadata, **row, "measured_at": measured_now(), "cell_id": cell.cell_id, "config_name": config.name,
                   "source": source, "generator": json.dumps(described, sort_keys=True),
                   "n": n, "dim": vectors.shape[1], "n_queries": len(queries), "k": config.k,
                   "target_recall": config.target_recall})
    return len(group)


def _by_corpus(cells: list[ScaleCell]):
    order = list(dict.fromkeys((c.source, c.n) for c in cells))
    return [(point, [c for c in cells if (c.source, c.n) == point]) for point in order]


def _sample(generator: MixtureGenerator, config: ScaleConfig, n: int, fitted_on: int) -> np.ndarray:
    parts = {"generator": [config.dataset, config.split, config.model, config.max_seq_length, config.components,
                           config.seed, fitted_on], "n": n}
    if n <= 200_000:  # small samples are cached; a million 384-d vectors (1.5 GB) are cheaper to regenerate
        return cached_array("scale_vectors", parts, lambda: generator.sample(n, config.seed + n))[0]
    return generator.sample(n, config.seed + n)


def _measure(cell: ScaleCell, vectors, queries, truth, config: ScaleConfig, threads: int) -> dict:
    build = cell.spec.build_at(cell.n)
    index = make_index(cell.spec.backend, **build)
    index.check_build(cell.n)
    gc.collect()
    rss = psutil.Process().memory_info().rss
    started = time.perf_counter()
    index.fit(vectors, threads)
    build_s = time.perf_counter() - started
    rss_delta = psutil.Process().memory_info().rss - rss
    try:
        return _searched(index, cell, vectors, queries, truth, config, threads, build_s, rss_delta)
    finally:
        index.close()  # a server the index started (bench.search.services)


def _searched(index, cell: ScaleCell, vectors, queries, truth, config: ScaleConfig, threads: int, build_s: float,
              rss_delta: int) -> dict:
    tried, chosen, recall = [], {}, 0.0
    for search in grid(cell.spec.search) or [{}]:
        try:
            index.check_search(config.k, search)
        except ParamError:
            continue
        index.set_search(config.k, **search)
        recall = recall_vs_exact(index.batch_query(queries, threads).ids, truth)
        tried.append([search, round(recall, 4)])
        chosen = search
        if recall >= config.target_recall:
            break
    index.set_search(config.k, **chosen)
    timed = list(queries[: config.latency_queries] if config.latency_queries else queries)
    latency = measure_latency(index.query, timed, config.measure.warmup, config.measure.repeats)
    row = {"backend": cell.spec.backend, "variant": cell.spec.variant, "build_params": json.dumps(index.build.as_dict(), sort_keys=True),
           "search_params": json.dumps(index.check_search(config.k, chosen), sort_keys=True),
           "search_tried": json.dumps(tried),
           "reached": recall >= config.target_recall, "recall_at_k": recall, "build_s": build_s,
           "build_threads": threads, "index_bytes": index.size_bytes(),
           "predicted_index_bytes": (index.memory_bytes(cell.n, vectors.shape[1])
                                     if index.memory_model_error is not None else None),  # None: no memory model
           "rss_build_delta_bytes": rss_delta, **latency.columns("search"), "latency_samples": latency.samples}
    log.info("%s N=%d %s: recall %.3f at %s, p50 %.3f ms, build %.1f s", cell.source, cell.n, cell.spec.backend,
             recall, chosen, latency.p50_ms, build_s)
    return row
