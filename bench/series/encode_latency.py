"""Is query-encoding latency repeatable? Every network encoder of a sweep config, timed as the sweep times it,
in several consecutive rounds (`python -m bench encode-latency CONFIG --rounds 3`).

Each round times every encoder once (warmup, then `[measure] encode_repeats` passes over `encode_sample` test
queries, one query at a time on `[measure] threads` threads, each followed by the calibration kernel); the
rounds run one after another, so an encoder's spread over rounds is its run-to-run noise. Encoders whose
query path is the same network shape (same parameter shapes and precision: a fine-tuned copy, a chunked
corpus) are grouped: their p50s should agree within the same band.

`interleave=True` times the same passes in another order: every encoder warmed up at the round's start, then
pass 1 of every encoder, pass 2 of every encoder, ..., so each figure samples the whole round rather than one
few-second window (the sweep times one encoder's passes back to back; the host's speed moves within minutes).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from bench.core.cache import atomic_write_bytes
from bench.core.calibration import kernel
from bench.pipeline.config import SweepConfig
from bench.models.encoders import SentenceEncoder
from bench.pipeline.stages import kind_of
from bench.core.env import host_id
from bench.run.measure import encode_one, measure_query_encoding, warm_up_encoding
from bench.run.prepare import resolve_encoder, sweep_splits
from bench.store.results import SchemaError
from bench.core.timing import LatencyStats, measure_latency, online_threads


def architecture(encoder: SentenceEncoder) -> str:
    """What the query path's cost depends on: parameter shapes, precision, max length (not the weights); for a model
    its own engine serves (bench.models.encoders.ENGINES), its identity (the engine and the model file)."""
    model = getattr(encoder, "query_model", None)
    if model is None:
        text = repr((encoder.identity, encoder.query_precision, encoder.query_runtime, encoder.max_seq_length))
        return hashlib.sha256(text.encode()).hexdigest()[:8]
    shapes = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    modules = [type(m).__name__ for m in model.modules()]
    text = repr((shapes, modules, encoder.query_precision, encoder.query_runtime, encoder.max_seq_length, encoder.device))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def remeasure(config: SweepConfig, rounds: int = 3, data_root: Path | None = None,
              interleave: bool = False) -> pd.DataFrame:
    """One row per (round, encoder): query-encode p50/p95, the interleaved kernel figure, the architecture,
    the host, the order and when the row was measured (UTC)."""
    texts = sweep_splits(config, data_root).test.query_texts[: config.measure.encode_sample]
    encoders = {}
    for spec in config.encoders:
        if kind_of(spec.type).output == "vectors":
            encoders[spec.name] = resolve_encoder(spec, config, data_root).load()
    rows, host = [], host_id()
    for round_ in range(1, rounds + 1):
        timed = _interleaved(encoders, texts, config) if interleave else {
            name: measure_query_encoding(encoder, texts, config.measure) for name, encoder in encoders.items()}
        for name, stats in timed.items():
            rows.append({"round": round_, "encoder": name, "architecture": architecture(encoders[name]),
                         "p50_ms": stats.p50_ms, "p95_ms": stats.p95_ms, "kernel_ms": stats.calibration_ms,
                         "samples": stats.samples, "passes": config.measure.encode_repeats,
                         "threads": config.measure.threads, "order": "interleaved" if interleave else "back to back",
                         "host": host, "measured_at": datetime.now(timezone.utc)})
    return pd.DataFrame(rows)


def _interleaved(encoders: dict[str, SentenceEncoder], texts: list[str], config: SweepConfig) -> dict[str, LatencyStats]:
    """Every encoder warmed up as `measure_query_encoding` does, then its timed passes taken in turn with the
    others' (pass 1 of each, pass 2 of each, ...); per encoder the stats of all its passes together."""
    settings = config.measure
    passes: dict[str, list[LatencyStats]] = {name: [] for name in encoders}
    with online_threads(settings.threads):
        for encoder in encoders.values():
            warm_up_encoding(encoder, texts, settings)
        for _ in range(settings.encode_repeats):
            for name, encoder in encoders.items():
                passes[name].append(measure_latency(functools.partial(encode_one, encoder), texts, 0, 1,
                                                    calibration=kernel))
    return {name: dataclasses.replace(LatencyStats.from_ms(np.array([p.per_input_ms for p in got])),
                                      calibration_ms=float(np.median([p.calibration_ms for p in got])))
            for name, got in passes.items()}


COLUMNS = ["series", "round", "encoder", "architecture", "p50_ms", "p95_ms", "kernel_ms", "samples", "passes",
           "threads", "order", "host", "measured_at"]


def read_series(path: Path) -> pd.DataFrame:
    """The stored series; a file without one of COLUMNS is refused with its name."""
    rows = pd.read_parquet(path)
    missing = [c for c in COLUMNS if c not in rows.columns]
    if missing:
        raise SchemaError(f"{path}: not an encode-latency file (missing column(s) {', '.join(missing)})")
    return rows


def append_series(path: Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Add one invocation's rounds to the parquet file at `path` (atomically), numbered as the next series;
    returns them with their series number."""
    earlier = read_series(path) if path.exists() else pd.DataFrame()
    rows = rows.assign(series=int(earlier["series"].max()) + 1 if len(earlier) else 1)
    combined = pd.concat([earlier, rows], ignore_index=True)
    atomic_write_bytes(path, lambda tmp: combined.to_parquet(tmp, index=False))
    return rows
