"""The sweep: encoders x backends x build grid x search grid x K, conducted from plan to measurement.

bench.run.plan turns the config into cells, bench.run.prepare resolves and trains every model before anything is
timed, bench.run.measure times cells into rows; this module decides what is left to do (missing cells, and stored
rows whose latencies are stale) and runs it, encoder by encoder, on an executor.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from bench.core.calibration import calibrate
from bench.pipeline.config import ConfigError, SweepConfig
from bench.models.encoders import embed_dataset, model_identity
from bench.core.env import host_id, rescored_here, run_metadata
from bench.run.executors import Executor, LocalExecutor
from bench.run.measure import CellMeasurer, measure_query_encoding
from bench.run.estimate import Speeds, corpus_cached, duration, render, train_rate_key, work_phases
from bench.run.plan import _is_done, contended_latencies, drifted_latencies, latency_settings, plan_cells, stale_latencies
from bench.run.prepare import ResolvedEncoder, Rerankers, check_rerank, prepare_models, resolve_encoder, sweep_splits
from bench.data.splits import describe
from bench.store.results import LATENCY_COLUMNS, ResultStore
from bench.core.timing import E2E_METHOD
from bench.models.train.cross import read_training

log = logging.getLogger(__name__)


@dataclass
class SweepSummary:
    planned: int = 0  # first-stage cells (each with its rerank children)
    computed: int = 0  # rows written: first-stage and rerank
    retimed: int = 0  # of those, stored rows whose latencies were re-timed (quality kept)
    already_done: int = 0  # first-stage cells complete with their children
    skipped_invalid: int = 0  # grid points breaking a cross-parameter rule (ef < K, nprobe > nlist, ...)
    corpora_encoded: int = 0
    phases: list = dataclasses.field(default_factory=list)  # the plan (set by a `plan_only` run)


def run_sweep(config: SweepConfig, redo: bool = False, data_root: Path | None = None,
              store: ResultStore | None = None, executor: Executor | None = None,
              announce: Callable[[str], None] | None = None, prune: bool = False,
              only: set[str] | None = None, only_cells: set[str] | None = None, retime: bool = False,
              reuse: pd.DataFrame | None = None, stand_in: bool = False, plan_only: bool = False,
              pruner=None) -> SweepSummary:
    """Measure every cell of `config` not already in the store for this hardware (all of them if `redo`).

    Build groups (one index, its cells) run on `executor`: in this process by default, or on Ray.
    `announce` receives the plan with its time estimate before any work, and the estimate left after each encoder.
    `prune` drops this host's stored rows of this config's cells that the config no longer plans.
    `only`: measure (and re-time, and redo) only these encoders' cells; the others are planned and left as stored.
    `retime`: re-time stored rows whose run's calibration kernel is off this host's current figure (without it, one
    line says how many are and how to re-time them; a changed host has no stored rows, so it measures anew).
    `only_cells`: the same for the cells with these ids, and nothing else: a first-stage cell is measured without the
    rerank children not named (a pipeline block names its pick's cell).
    `reuse`: rows of these cells measured on another host (`python -m bench recheck`): first stages are measured here
    whole (their quality is cheap and may move with the instruction set), rerank rows are re-timed here with their
    stored quality, except those whose scores rest on int8 kernels other than this host's (bench.core.env.rescored_here),
    which are scored again. `stand_in`: re-timed rerank stages of rerankers not trained here are timed with their
    untrained backbone (bench.run.prepare.Rerankers). `plan_only`: announce the plan and return its phases (no work).
    `pruner`: the decision mode's (bench.run.decide): it sees every row written and skips cells and children that
    cannot change the decision.
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
    planned_ids = {i for planned, _ in plans.values() for c in planned for i in c.ids}
    if only_cells is not None and only_cells - planned_ids:
        raise ConfigError(f"cells {sorted(only_cells - planned_ids)} are not cells of {config.name}'s plan")

    if only_cells is not None:  # exactly the named pipelines: a first-stage cell without the children not named
        plans = {name: ([dataclasses.replace(c, children=tuple(ch for ch in c.children if ch.cell_id in only_cells))
                         for c in planned if set(c.ids) & only_cells], skipped) for name, (planned, skipped) in plans.items()}

    def in_scope(cell) -> bool:
        return only_cells is None or bool(set(cell.ids) & only_cells)

    stale = set(frame.loc[(frame["host_id"] == host_id()) & (frame["config_name"] == config.name), "cell_id"]) - planned_ids
    if stale and prune:
        moved = store.drop(stale, host_id())
        message = f"{config.name}: --prune moved {moved} rows of cells no longer in the config to {store.history}"
        announce(message) if announce else log.warning(message)
        frame = store.load()
    elif stale and announce:
        announce(f"{config.name}: {len(stale)} stored rows are of cells no longer in the config (kept; --prune moves them to the history file)")
    mine = frame[frame["host_id"] == host_id()]
    recall_by_id = {} if redo else dict(zip(mine["cell_id"], mine["dev_recall_at_k"]))
    summary = SweepSummary()
    calibration = calibrate()
    own = mine[mine["cell_id"].isin(planned_ids)]  # the config's own cells only
    stale_rows = stale_latencies(own, config, calibration, retime)
    drifting = drifted_latencies(own, config, calibration)
    summed = own[own["e2e_method"] != E2E_METHOD]
    if not retime and len(summed) and announce:
        announce(f"{config.name}: {len(summed)} stored rows carry an e2e summed from per-query medians (their tails "
                 f"understate the pipeline's); --retime re-times them")
    if not retime and len(drifting) and announce:
        runs = drifting.groupby("timestamp")["calibration_ms"].median()  # what staleness compares: per run
        announce(f"{config.name}: {len(drifting)} stored rows were timed in {len(runs)} run(s) whose calibration kernel "
                 f"read {runs.min():.3f}-{runs.max():.3f} ms, now {calibration:.3f} ms "
                 f"(beyond {config.measure.calibration_tolerance:.0%}); kept as they are: --retime re-times them")
    contended = contended_latencies(own, config)
    if not retime and len(contended) and announce:
        announce(f"{config.name}: {len(contended)} stored rows were timed while the host ran slower than the rest of "
                 f"their run (their calibration kernel more than {config.measure.calibration_tolerance:.0%} above the "
                 "run's median); kept as they are: --retime re-times them")
    if only is not None:
        stale_rows = stale_rows[stale_rows["encoder"].isin(only)]
    if only_cells is not None:
        wanted = {i for planned, _ in plans.values() for c in planned if in_scope(c) for i in c.ids}
        stale_rows = stale_rows[stale_rows["cell_id"].isin(wanted)]
    stale = {} if redo else {row["cell_id"]: row for row in stale_rows.to_dict("records")}
    if reuse is not None and not redo:  # another host's rerank rows of the named cells: re-timed here, quality kept
        borrowed = reuse[(reuse["stage"] == "rerank") & reuse["cell_id"].isin(planned_ids)
                         & ~reuse["cell_id"].isin(mine["cell_id"])]
        stale.update({row["cell_id"]: row for row in borrowed.to_dict("records") if not rescored_here(row)})
    if stale and announce:
        announce(f"{config.name}: {len(stale)} stored rows get their latencies re-timed (other latency settings"
                 + (f", or calibration off the current {calibration:.3f} ms, or off their run's median, by more than "
                    f"{config.measure.calibration_tolerance:.0%}: --retime" if retime else "") + "); their quality is kept")
    metadata = {**run_metadata(config.config_hash()), "latency_settings": latency_settings(config)}

    def sink(row: dict) -> None:
        stored = stale.get(row["cell_id"])
        if stored is not None and same_models(stored, row):
            row = {**stored, **{name: row[name] for name in LATENCY_COLUMNS}}
            summary.retimed += 1
        store.add(row)  # a stored row of another model (retrained: its weights were gone) is replaced whole
        if pruner is not None:
            pruner.record(row)

    rerankers = Rerankers(config, data_root, stand_in=stand_in)
    protocol = describe(splits)
    todo = {spec.name: [c for c in plans[spec.name][0]
                        if not _is_done(c, recall_by_id, config.rerank.min_recall_at_k, set(stale))
                        and in_scope(c)]
                        if only is None or spec.name in only else []
            for spec in config.encoders}
    speeds = Speeds()
    retimed_children = frozenset(i for i, row in stale.items() if row["stage"] == "rerank")  # only timed (measure.py)
    phases = work_phases(config, splits, resolved, todo, speeds, rerankers, retimed_children)
    if announce:
        announce(render(phases, f"{config.name}: plan"))
    if plan_only:
        summary.phases = phases
        return summary
    weights = prepare_models(resolved, todo, rerankers, data_root, splits, retimed_children)
    summary.corpora_encoded += sum(getattr(w, "encoded", False) for w in weights.values())  # a hybrid's weight choice
    for index, spec in enumerate(config.encoders):
        cells = [c for c in plans[spec.name][0] if in_scope(c)]
        skipped = plans[spec.name][1] if only_cells is None else 0
        summary.planned += len(cells)
        summary.skipped_invalid += skipped
        pending = todo[spec.name]
        summary.already_done += len(cells) - len(pending)
        if skipped:
            log.info("%s: %d grid points skipped (ef < K, nprobe > nlist, ...)", spec.name, skipped)
        if not pending:
            log.info("%s: all %d cells already measured on this host", spec.name, len(cells))
            continue
        loading = time.perf_counter()
        encoder = resolved[spec.name].load()
        if encoder.output != "text":
            speeds.record("model_load_s", time.perf_counter() - loading)
        passages = [spec.chunking.tokens, spec.chunking.stride] if spec.chunking else None
        backbone = encoder.frozen_backbone
        if announce and encoder.output == "vectors" and not corpus_cached(
                model_identity(backbone.model) if backbone else encoder.doc_identity, dataset.corpus_hash, passages,
                encoder.max_seq_length):
            announce(f"{config.name}: encoding the corpus for {spec.name}" + (" (passages)" if passages else ""))
        embeddings = embed_dataset(encoder, dataset, spec.batch_size, spec.chunking)
        summary.corpora_encoded += not embeddings.cached
        if not embeddings.cached and encoder.frozen_backbone is None:
            speeds.record(resolved[spec.name].encode_rate_key(), len(embeddings.docs) / embeddings.encode_seconds)
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
                  "query_runtime": encoder.query_runtime, "doc_runtime": getattr(encoder, "doc_runtime", "torch"),
                  "normalize": getattr(encoder, "normalize", True),
                  "mips_reduction": spec.mips_reduction,
                  "encoder_device": encoder.device, "encode_batch_size": spec.batch_size,
                  "encoder_params": encoder.n_parameters(), "encoder_bytes": encoder.online_bytes(),
                  "encoder_mode": encoder.mode,
                  "encoder_train_s": encoder.train_seconds,
                  "chunking": json.dumps(dataclasses.asdict(spec.chunking), sort_keys=True) if spec.chunking else "",
                  "n_chunks": len(embeddings.passages.texts) if embeddings.passages else 0,
                  "corpus_encode_s": embeddings.encode_seconds, **encode_latency.columns("query_encode"),
                  "query_encode_calibration_ms": encode_latency.calibration_ms}
        measurer = CellMeasurer(embeddings, dataset, len(splits.test.query_ids), config, shared, sink,
                                encode_latency, rerankers, spec, weights.get(spec.name), retime=stale, pruner=pruner)
        groups = measurer.prepare(pending)
        started, timing_before = time.perf_counter(), rerankers.timing_seconds
        written = executor.run(measurer, groups, f"cells ({spec.name})", len(pending))
        summary.computed += written
        # a cell's own cost: without scoring pairs and timing rerank stages (each priced as its own phase), which
        # once made a re-time run announce 3.4 h left with 3 min to go
        once = measurer.scoring_seconds + rerankers.timing_seconds - timing_before
        speeds.record("cell_s", (time.perf_counter() - started - once) / max(written, 1))
        _record_training_speeds(speeds, resolved[spec.name], rerankers)
        del encoder, measurer
        gc.collect()
        left = {e.name: todo[e.name] for e in config.encoders[index + 1:]}
        if announce and any(left.values()):
            phases = work_phases(config, splits, {n: resolved[n] for n in left}, left, speeds, rerankers,
                                 retimed_children)
            announce(f"{config.name}: {spec.name} done; about {duration(sum(p.seconds for p in phases))} left")
    return summary


def same_models(stored: dict, row: dict) -> bool:
    """A re-timed row keeps its stored quality only when it was measured with the same models: the encoder (its
    vectors make the index searched) and, for a fully measured rerank row, the reranker whose scores rank it (a
    time-only child carries its stored reranker_identity)."""
    return stored["model_identity"] == row["model_identity"] and stored["reranker_identity"] == row["reranker_identity"]


def _record_training_speeds(speeds: Speeds, encoder: ResolvedEncoder, rerankers: "Rerankers") -> None:
    """Per-step training rates of the models this encoder's cells used, for the next estimate."""
    if encoder.tower is not None and encoder.tower.mode == "full":
        report = read_training(encoder.model)
        speeds.record("tower_full_step_s", report.get("train_seconds", 0) / max(report.get("steps", 0), 1))
    elif encoder.tower is not None:
        speeds.record("tower_heads_s", read_training(encoder.model).get("train_seconds", 0))
    for name, report in rerankers.loaded():
        trained = rerankers.training(name)
        if trained is not None:  # the rate of this training's network and step size (bench.run.estimate.train_rate_key)
            speeds.record(train_rate_key(trained[0]), report.get("train_seconds", 0) / max(report.get("steps", 0), 1))
