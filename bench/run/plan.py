"""The cells of a sweep: the grid of its config, each with a content id (`plan_cells`), and which of them are done
or hold latencies to re-time. What the work left costs is bench.run.estimate's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import dataclasses
import itertools

import numpy as np
import pandas as pd

from bench.core.cache import content_key
from bench.core.calibration import drifted
from bench.pipeline.config import EncoderSpec, SweepConfig
from bench.data.datasets import Dataset
from bench.search.indexes import CATALOG, ParamError, make_index
from bench.search.indexes.base import AnnIndex
from bench.pipeline.stages import kind_of
from bench.run.hooks import hooks_of
from bench.core.timing import E2E_METHOD

# ---------------------------------------------------------------- cells: the grid of a sweep config


@dataclass(frozen=True)
class RerankCell:
    """The first stage of its parent cell, then `reranker` re-scoring the top-`r` with fusion weight `alpha`."""

    reranker: str
    alpha: float | str  # a number, or "dev"
    r: int
    cell_id: str
    adaptive_step: int = 0  # > 0: an adaptive depth up to R in steps of this many pairs (bench.run.adaptive)


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


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


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
        raise ParamError(f"k: K ({max(config.k)}) exceeds the corpus size ({dataset.n_docs}) of '{dataset.name}'")
    kind = kind_of(encoder.type)
    if identity is None:
        from bench.run.prepare import resolve_encoder

        identity = resolve_encoder(encoder, config).identity
    cells, skipped = [], 0
    for position, spec in enumerate(config.backends):
        if spec.backend in CATALOG and CATALOG[spec.backend].input != kind.searched:
            continue  # e.g. bm25s takes text, HNSW takes vectors
        if (encoder.backends and spec.backend not in encoder.backends) or (spec.encoders and encoder.name not in spec.encoders):
            continue
        # (the config's build table, its index): cell ids hash the table as written, not the defaults filled in
        indexes = [(build, first_stage_index(encoder, spec.backend, build)) for build in spec.build_grid()]
        for _, index in indexes:
            try:
                index.check_build(dataset.n_docs)
            except ParamError as err:
                raise ParamError(f"backends[{position}].build: {err}") from None
        depths = kind.depths(encoder)
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
            if not accepted and depths == [None]:  # a kind with depths shares the grid: shallow points miss them
                raise ParamError(f"backends[{position}].search: {first_error} (search point {point} is invalid for every "
                                 "build point and K)")
    return cells, skipped


def first_stage_index(encoder: EncoderSpec, backend: str, build: dict, weights: dict[int, float] | None = None) -> AnnIndex:
    """An unbuilt index of `backend`, as the encoder's stage kind wraps it (a fusion: with its BM25 side)."""
    return hooks_of(encoder.type).wrap_index(encoder, make_index(backend, **build), weights)


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
                     "query_precision": "fp32", "doc_precision": "fp32", "device": "cpu", "query_runtime": "torch",
                     "normalize": True, "mips_reduction": False, "doc_runtime": "torch"}


def without_added_defaults(key: dict, added: dict) -> dict:
    """`key` without the fields added after ids existed that hold their default (so older ids still match)."""
    return {name: value for name, value in key.items() if not (name in added and value == added[name])}


def _spec_key(encoder: EncoderSpec) -> dict:
    """The encoder spec as it enters cell ids; fields added later are left out at their defaults, so cell ids
    predating them still match. Its grids are left out: a cell's id depends on what that cell measures, never on its
    siblings (the cell's own backend and depth are in its key; bench.run.migrate_ids rewrote the ids before this)."""
    key = without_added_defaults(dataclasses.asdict(encoder), SPEC_FIELDS_ADDED)
    key.pop("backends", None)
    if "hybrid" in key:
        key["hybrid"] = {name: value for name, value in key["hybrid"].items() if name != "depth"}
    return key


RERANKER_FIELDS_ADDED = {"precision": "fp32", "runtime": "torch"}


def _reranker_key(reranker) -> dict:
    """A reranker spec as it enters rerank cell ids: fields added later are left out at their defaults, its alpha grid
    too (the child's own alpha is in its key)."""
    key = without_added_defaults(dataclasses.asdict(reranker), RERANKER_FIELDS_ADDED)
    del key["alpha"]
    return key


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
                key = {**parent_key, "reranker": _reranker_key(reranker), "alpha": alpha, "r": r,
                       **_child_key_extra(config)}
                if alpha == "dev":
                    key["alpha_chosen_on"] = "the cell's dev queries at its R"
                children.append(RerankCell(reranker.name, alpha, r, content_key(key)))
                if spec.adaptive_step > 0:
                    from bench.run.adaptive import REGISTRY as RULES

                    adaptive = {**key, "adaptive": {"step": spec.adaptive_step, "chosen_on": "dev",
                                                    "rules": {name: list(grid) for name, (_, grid, _) in RULES.items()}}}
                    children.append(RerankCell(reranker.name, alpha, r, content_key(adaptive), spec.adaptive_step))
    return tuple(children), skipped


def _is_done(cell: Cell, recall_by_id: dict[str, float], min_recall: float, stale: set[str] = frozenset()) -> bool:
    """Measured on this host (latencies not stale), with its rerank children unless its dev recall is below the
    rerank threshold."""
    if cell.cell_id not in recall_by_id or cell.cell_id in stale:
        return False
    if recall_by_id[cell.cell_id] < min_recall:
        return True
    return all(child.cell_id in recall_by_id and child.cell_id not in stale for child in cell.children)


def stale_latencies(mine: pd.DataFrame, config: SweepConfig, calibration_ms: float,
                    retime: bool = False) -> pd.DataFrame:
    """This host's stored rows whose latencies must be re-timed: measured with other latency settings (the config
    asks for other timings); with `retime`, also those of a run whose calibration figure is off the current one
    (`drifted_latencies`) and those whose e2e was summed from per-query medians. A busy host alone never re-times a
    finished run."""
    other_settings = (mine["latency_settings"] != latency_settings(config)).to_numpy()
    if not retime:
        return mine[other_settings]
    summed = (mine["e2e_method"] != E2E_METHOD).to_numpy()  # e2e from per-query medians: not as deployed
    off = drifted_latencies(mine, config, calibration_ms).index.union(contended_latencies(mine, config).index)
    return mine[other_settings | summed | mine.index.isin(off)]


def contended_latencies(mine: pd.DataFrame, config: SweepConfig) -> pd.DataFrame:
    """Stored rows timed while the host ran slower than the rest of their run (bench.analysis.contended)."""
    from bench.analysis import contended

    return mine[contended(mine, config.measure.calibration_tolerance).to_numpy()]


def drifted_latencies(mine: pd.DataFrame, config: SweepConfig, calibration_ms: float) -> pd.DataFrame:
    """Stored rows of a run whose calibration figure (the median over its rows: one row's 100 kernel calls carry a
    few % of noise) is off `calibration_ms` by more than the configured tolerance, or that have none."""
    from bench.analysis import run_calibration

    drift = [drifted(c, calibration_ms, config.measure.calibration_tolerance) for c in run_calibration(mine)]
    return mine[np.asarray(drift, dtype=bool)]
