"""Measuring: a first-stage cell's timed search, throughput and quality, and its rerank children, as rows."""

from __future__ import annotations

import copy
import functools
import gc
import itertools
import json
import time
from typing import Callable

import numpy as np
import psutil
from tqdm import tqdm

from bench.core.calibration import kernel, time_kernel
from bench.data.chunking import aggregate, first_documents
from bench.pipeline.config import EncoderSpec, MeasureSpec, SweepConfig
from bench.data.datasets import Dataset
from bench.models.encoders import Embeddings, Encoder
from bench.core.env import cpu_count, measured_now, rescored_here
from bench.search.indexes.base import Neighbors
from bench.data.metrics import per_query_quality, recall_vs_exact
from bench.run.estimate import Speeds
from bench.run.hooks import hooks_of
from bench.run.plan import Cell, first_stage_index
from bench.run.prepare import Rerankers
from bench.store.records import NOT_RERANKED, FirstStageRow, RerankRow
from bench.models.rerankers import ALPHAS, cross_scores, rerank, time_rerank
from bench.data.splits import restrict
from bench.store.results import LATENCY_COLUMNS
from bench.core.timing import E2E_METHOD, LatencyStats, end_to_end, measure_latency, measure_throughput, online_threads
from bench.run.adaptive import choose_depth_rule, depths, rerank_to_depths


def measure_query_encoding(encoder: Encoder, texts: list[str], settings: MeasureSpec) -> LatencyStats:
    """Latency of encoding one query at a time on `settings.threads` threads: one untimed pass over `texts`
    (at least `warmup` queries; a 20-query warmup left the first timed pass ~5% slower), then
    `encode_repeats` passes, each query followed by the calibration kernel (its median is the stats'
    `calibration_ms`)."""
    with online_threads(settings.threads):
        warm_up_encoding(encoder, texts, settings)
        return measure_latency(functools.partial(encode_one, encoder), texts, 0, settings.encode_repeats,
                               calibration=kernel)


def encode_one(encoder: Encoder, text: str) -> None:
    """What a query-encode latency times: one query, encoded alone."""
    encoder.encode_queries([text], batch_size=1)


def warm_up_encoding(encoder: Encoder, texts: list[str], settings: MeasureSpec) -> None:
    """The untimed encoding before timed passes: whole passes over `texts`, at least `settings.warmup` queries."""
    for text in list(texts) * max(1, -(-settings.warmup // max(len(texts), 1))):
        encode_one(encoder, text)


def _threads(requested: int) -> int:
    return requested if requested > 0 else cpu_count()


class CellMeasurer:
    """Measures first-stage cells of one encoder, and their rerank children, handing each row to `sink`
    as it is measured (the store, or a list an executor ships back)."""

    def __init__(self, embeddings: Embeddings, dataset: Dataset, n_test: int, config: SweepConfig, shared: dict,
                 sink: Callable[[dict], None], encode_latency: LatencyStats, rerankers: Rerankers,
                 encoder: EncoderSpec, weights: dict[int, float] | None = None, retime: dict[str, dict] | None = None,
                 pruner=None):
        """`dataset` holds the test queries, then the dev queries: the first `n_test` are test. `weights`: a
        hybrid encoder's dev-chosen convex weight per depth. `retime`: stored rows (by cell id) whose latencies are
        re-timed and quality kept; a rerank child among them whose first stage and reranker spec are those stored is
        only timed (its pairs are not scored again: `_retime_child`). `pruner`: the decision mode's
        (bench.run.decide), asked before each first-stage cell and before each first stage's children are scored."""
        self.embeddings, self.dataset, self.config, self.settings = embeddings, dataset, config, config.measure
        self.n_test = n_test
        self.shared, self.sink, self.encode_latency, self.rerankers = shared, sink, encode_latency, rerankers
        self.build_threads = _threads(self.settings.build_threads)
        self.batch_threads = _threads(self.settings.throughput_threads)
        self.online_threads = self.settings.threads
        self.scoring_seconds = 0.0  # spent scoring cross-encoder pairs (not a per-cell cost)
        self.truth = np.empty((0, 0), dtype=np.int64)  # exact top documents at the deepest K or R needed
        self._truth: Callable[[Cell], np.ndarray] | None = None  # a cell's exact counterpart's top-K (its stage kind's)
        self.encoder, self.weights = encoder, weights or {}
        self.chunking = encoder.chunking
        self.retime = retime or {}
        self.pruner = pruner

    def portable(self) -> "CellMeasurer":
        """A copy to ship to another process: no sink, rerankers not yet loaded (no open score cache)."""
        clone = copy.copy(self)
        clone.sink = None
        clone.pruner = None  # skips are decided where the rows arrive
        clone.rerankers = Rerankers(self.config, self.rerankers.data_root, self.rerankers.stand_in)
        return clone

    def prepare(self, cells: list[Cell]) -> list[list[Cell]]:
        """Compute the ground truth these cells need; returns them grouped by build tuple (one index each)."""
        depth = max([c.k for c in cells] + [r for c in cells for r in (ch.r for ch in c.children)])
        self.truth, self._truth = hooks_of(self.encoder.type).ground_truth(self, cells, depth)
        ordered = sorted(cells, key=lambda c: c.build_key)
        return [list(group) for _, group in itertools.groupby(ordered, key=lambda c: c.build_key)]

    def to_documents(self, hits: Neighbors, k: int) -> Neighbors:
        """Passage hits aggregated to documents when the corpus is chunked; document hits unchanged."""
        if self.chunking is None:
            return hits
        return aggregate(hits, self.embeddings.passages, self.chunking.aggregate, k)

    def measure_group(self, group: list[Cell], progress: tqdm | None = None) -> int:
        """Build the group's index once, then measure its cells (and their rerank children). Returns rows written."""
        backend = group[0].backend
        index = first_stage_index(self.encoder, backend, group[0].build, self.weights)
        started = time.perf_counter()
        written = 0
        try:
            index.fit(self.embeddings.docs, self.build_threads)
            build = {"build_s": time.perf_counter() - started, "build_threads": self.build_threads,
                     "index_bytes": index.size_bytes(), "index_bytes_method": getattr(index, "size_method", "serialized"),
                     "rss_after_build_bytes": psutil.Process().memory_info().rss}
            for cell in group if self.pruner is None else self.pruner.order(group):
                if self.pruner is not None and self.pruner.skip(cell):
                    if progress is not None:
                        progress.update()
                    continue
                row, result, latency = self._first_stage(index, cell, build)
                written += 1 + self._rerank_children(cell, row, result, latency)
                if progress is not None:
                    progress.update()
                    progress.set_postfix_str(f"{backend} k={cell.k} recall={row['recall_at_k']:.3f} "
                                             f"p50={row['search_p50_ms']:.3f}ms")
        finally:
            index.close()  # a server the index started stops here (bench.search.services)
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
        result = self.to_documents(index.batch_query(self.embeddings.queries, self.batch_threads), cell.k)
        e2e = end_to_end(self.encode_latency, latency)
        row = FirstStageRow(**{
            **self.shared, **build, "cell_id": cell.cell_id, "backend": cell.backend,
            "build_params": json.dumps(index.build.as_dict(), sort_keys=True),  # as run: defaults filled in
            "search_params": json.dumps(index.search_description(index.check_search(cell.k, cell.search)),
                                        sort_keys=True), "k": cell.k,
            "fusion_weight_chosen_on": index.weight_chosen_on,
            **latency.columns("search"), "latency_samples": latency.samples, "latency_threads": 1,  # each backend's one-query path
            "calibration_ms": calibration_ms,
            "throughput_qps": qps, "throughput_threads": self.batch_threads,
            "index_cached_bytes": index.cached_bytes(),  # after the timed queries and the batch searches
            **self._recall(result.ids, self._truth(cell)),
            "queries_short": int((result.ids[: self.n_test] < 0).any(axis=1).sum()),
            **e2e.columns("e2e"), "e2e_queries": len(e2e.per_input_ms), "e2e_method": E2E_METHOD,
            **self._quality(result.ids), "measured_at": measured_now(),
        }).as_row()
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

    def _dev_subset_ndcg(self, result: Neighbors, scorer, children: list, positions: np.ndarray
                         ) -> tuple[dict[str, np.ndarray], int]:
        """Each child's per-query nDCG@10 on the dev queries at `positions` (scoring only their pairs, cached for the
        full measurement), its fusion weight chosen on those queries where it is "dev"; and the pairs scored."""
        rows, queries = self._choice_queries
        subset = restrict(queries, [queries.query_ids[p] for p in positions], "dev")
        first = Neighbors(result.ids[rows][positions], result.scores[rows][positions])
        cross, scored = cross_scores(scorer, self.rerankers.cache, subset, first.ids, max(ch.r for ch in children))

        def ndcg(r: int, alpha: float) -> np.ndarray:
            ids = rerank(first, r, [c[:r] for c in cross], alpha)[:, :10]
            return per_query_quality(ids, subset)["ndcg_at_10"].to_numpy()

        out = {}
        for child in children:
            alpha = child.alpha if child.alpha != "dev" else max(
                ALPHAS, key=lambda a: (round(float(ndcg(child.r, a).mean()), 10), a))
            out[child.cell_id] = ndcg(child.r, float(alpha))
        return out, scored

    def _adaptive(self, result: Neighbors, child, cross: list[np.ndarray], alpha: float, full_ids: np.ndarray,
                  scorer) -> tuple[np.ndarray, LatencyStats, dict]:
        """An adaptive-depth child (bench.run.adaptive): the stopping rule chosen on the dev queries (test where there
        are none), each query's depth under it, the ranking, the latency of scoring each timed test query's own
        candidates to its depth as served, and the row's adaptive columns."""
        rows, queries = self._choice_queries
        first = Neighbors(result.ids[rows], result.scores[rows])
        rule = choose_depth_rule(first, cross[rows], child.r, child.adaptive_step, alpha,
                                 lambda ids: per_query_quality(ids[:, :10], queries)["ndcg_at_10"].to_numpy(),
                                 "dev" if rows.start == self.n_test else "test")
        depth = depths(rule.rule, rule.param, result, cross, child.r, child.adaptive_step, alpha)
        ids = rerank_to_depths(result, cross, depth, alpha)
        changed = float(np.mean([not np.array_equal(a[:10], b[:10]) for a, b in
                                 zip(ids[: self.n_test], full_ids[: self.n_test])]))
        sample = list(range(min(self.config.rerank.latency_queries, self.n_test)))
        with online_threads(self.online_threads):
            ms = time_rerank(scorer, self.dataset, result.ids, child.r, sample, self.online_threads, depth,
                             0 if rule.one_call() else child.adaptive_step)
        columns = {"rerank_depth_rule": rule.text(), "q_rerank_pairs": depth[: self.n_test].astype(float).tolist(),
                   "top10_changed_share": changed}
        return ids, LatencyStats.from_ms(ms), columns

    def _rerank_latency_of(self, name: str, r: int) -> LatencyStats:
        """Per-query time to score R pairs (see Rerankers.latency), on this encoder's exact top-R."""
        sample = list(range(min(self.config.rerank.latency_queries, self.n_test)))
        return self.rerankers.latency(name, r, self.dataset, self.truth, sample, self.online_threads)

    def _rerank_children(self, cell: Cell, first_row: dict, result: Neighbors, search_latency: LatencyStats) -> int:
        stored = self._kept(cell.cell_id, first_row)  # a re-timed first stage keeps its stored quality: decide on that
        recall = (stored or first_row)["dev_recall_at_k"]
        if not cell.children or recall < self.config.rerank.min_recall_at_k:
            return 0
        written = 0
        for name in dict.fromkeys(ch.reranker for ch in cell.children):
            timed_only = [ch for ch in cell.children
                          if ch.reranker == name and self._time_only(ch, first_row, self.rerankers.max_length(name))]
            for child in timed_only:
                self._retime_child(child, first_row, search_latency, self.rerankers.timing_scorer(name))
            written += len(timed_only)
            children = [ch for ch in cell.children if ch.reranker == name and ch not in timed_only]
            if not children:
                continue
            scorer, report = self.rerankers.get(name)  # scoring pairs: the trained model itself
            if self.pruner is not None:  # successive halving over the dev queries (bench.run.decide)
                children = self.pruner.halve(first_row, children, name, functools.partial(
                    self._dev_subset_ndcg, result, scorer))
                if not children:
                    continue
            started = time.perf_counter()
            cross, scored = cross_scores(scorer, self.rerankers.cache, self.dataset, result.ids,
                                         max(ch.r for ch in children))
            if scored:
                seconds = time.perf_counter() - started
                self.scoring_seconds += seconds
                Speeds().record(self.rerankers.rate_key(name), scored / seconds)
            for child in children:
                alpha = self._dev_alpha(result, child.r, cross) if child.alpha == "dev" else float(child.alpha)
                ids = rerank(result, child.r, [c[: child.r] for c in cross], alpha)
                adaptive = {}
                if child.adaptive_step:
                    ids, latency, adaptive = self._adaptive(result, child, [c[: child.r] for c in cross], alpha, ids,
                                                            scorer)
                else:
                    latency = self._rerank_latency_of(name, child.r)
                e2e = end_to_end(self.encode_latency, search_latency, latency)
                self.sink(RerankRow.of(
                    first_row, **self._quality(ids), measured_at=measured_now(), cell_id=child.cell_id,
                    reranker=name, reranker_identity=scorer.identity,
                    reranker_saw_eval_docs=bool(report.get("saw_eval_docs")), r=child.r, fusion_alpha=alpha,
                    fusion_alpha_chosen_on="dev" if child.alpha == "dev" else "",
                    rerank_max_length=scorer.max_length, cross_pairs_scored=scored,
                    reranker_params=scorer.n_parameters(),
                    reranker_train_s=report.get("train_seconds", float("nan")),
                    **latency.columns("rerank"), rerank_latency_queries=latency.samples,
                    rerank_threads=self.online_threads, rerank_timed_identity=scorer.identity, **e2e.columns("e2e"),
                    e2e_queries=len(e2e.per_input_ms), e2e_method=E2E_METHOD, **adaptive,
                ).as_row())
                scored = 0
                written += 1
        return written

    def _time_only(self, child, first_row: dict, max_length: int) -> bool:
        """A stored child that is re-timed without scoring its pairs again: its first stage is the model stored
        (same vectors, same lists) and the reranker the same spec at the same max_length (a fixed depth: an adaptive
        child's depths come from the scores), and its scores do not rest on int8 kernels other than this host's
        (bench.core.env.rescored_here: those are scored again)."""
        stored = self._kept(child.cell_id, first_row)
        return (stored is not None and not child.adaptive_step and stored["stage"] == "rerank"
                and stored["rerank_max_length"] == max_length and not rescored_here(stored))

    def _kept(self, cell_id: str, first_row: dict) -> dict | None:
        """The stored row being re-timed whose quality is kept: one of the same encoder model as this run's first
        stage (another model's vectors make another index: that row is measured whole)."""
        stored = self.retime.get(cell_id)
        return stored if stored is not None and stored["model_identity"] == first_row["model_identity"] else None

    def _retime_child(self, child, first_row: dict, search_latency: LatencyStats, scorer) -> None:
        """The stored row with its first stage's latencies from this run, the rerank stage timed again (R pairs per
        query, as served) and its e2e the per-sample sums over encode, this run's search and that rerank; quality kept.
        The scorer is the spec's model here: the stored one or, where that was gone, one of the same architecture
        (`rerank_timed_identity` says which)."""
        latency = self._rerank_latency_of(child.reranker, child.r)
        e2e = end_to_end(self.encode_latency, search_latency, latency)
        timed = {name: first_row[name] for name in LATENCY_COLUMNS if name not in NOT_RERANKED}
        self.sink({**self.retime[child.cell_id], **timed, **latency.columns("rerank"),
                   "rerank_latency_queries": latency.samples, "rerank_threads": self.online_threads,
                   "rerank_timed_identity": scorer.identity, **e2e.columns("e2e"), "e2e_queries": len(e2e.per_input_ms),
                   "e2e_method": E2E_METHOD})
