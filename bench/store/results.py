"""The results schemas (the sweep's derived from bench.store.records' typed rows) and their parquet store.

A cell is identified by `cell_id` (a hash of everything that defines it: dataset content, encoder,
backend, build and search parameters, K) and `host_id` (the hardware). The store appends every row as
it is measured (a part file, written atomically) and folds the parts into its parquet file when a run
ends, so a killed sweep loses at most the cell in flight and a re-run skips what is there.

What is kept: the results file holds one row per (cell, host), the latest. A row that a later one replaces
(`--redo`, re-timing) or that `--prune` drops is moved to `<name>.history.parquet` beside it, never deleted.
A run holds `.<name>.lock` (an advisory lock) while it writes: a second run on the same file waits. Compaction
folds exactly the part files it read and removes only those; temp files a killed writer left are removed or
ignored, never fatal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.core.cache import atomic_write_bytes
from bench.store.records import RUN_COLUMNS, results_schema

_F64, _I64, _STR = pa.float64(), pa.int64(), pa.string()

# The sweep's rows (bench.store.records: FirstStageRow, RerankRow), one per cell.
SCHEMA = results_schema()

# The scale series (`python -m bench scale`): one row per (vector source, N, backend), each at the cheapest
# search parameters that reach the recall target.
SCALE_SCHEMA = pa.schema([
    ("cell_id", _STR), ("host_id", _STR), ("config_name", _STR), ("config_hash", _STR),
    # "real": the encoder's embeddings of the dataset; "gmm": sampled from the generator fitted to them;
    # "pooled": every configured real source pooled; "gmm-pooled": sampled from a generator fitted to those
    ("source", _STR),
    ("generator", _STR),  # JSON: how the vectors were made (model, dataset, mixture components, seed)
    ("n", _I64), ("dim", _I64), ("n_queries", _I64), ("k", _I64), ("target_recall", _F64),
    ("backend", _STR),
    ("variant", _STR),  # the backend and its build as configured ("hnsw M=32 ef_construction=100"): one series
    ("build_params", _STR), ("search_params", _STR),  # as run at this N; search: the chosen point (JSON)
    ("search_tried", _STR),  # JSON list of [search params, recall@k] in the order tried
    ("reached", pa.bool_()),  # False: no search point in the grid reached the target (the last one is reported)
    ("recall_at_k", _F64),
    ("build_s", _F64), ("build_threads", _I64),
    ("index_bytes", _I64),  # serialized by the library
    ("predicted_index_bytes", _I64),  # from the backend's layout (the backend's memory_bytes)
    ("rss_build_delta_bytes", _I64),  # process RSS after the build minus before (vectors already loaded)
    ("search_p50_ms", _F64), ("search_p95_ms", _F64), ("search_p99_ms", _F64), ("search_mean_ms", _F64),
    ("latency_samples", _I64),
    *RUN_COLUMNS,
])

# Filtered search (`python -m bench filters`): one row per (backend, selectivity, strategy).
FILTER_SCHEMA = pa.schema([
    ("cell_id", _STR), ("host_id", _STR), ("config_name", _STR), ("config_hash", _STR),
    ("dataset", _STR), ("n_docs", _I64), ("n_queries", _I64), ("k", _I64),
    ("backend", _STR), ("build_params", _STR), ("search_params", _STR),  # search: as used, for k_requested
    ("strategy", _STR),  # prefilter | native | postfilter | postfilter-inflated
    ("native_filter", _STR),  # the library mechanism for `native` rows
    ("selectivity", _F64), ("selectivity_realized", _F64),  # target and mean fraction of documents passing
    ("k_requested", _I64),  # candidates asked from the index (K, or K / selectivity capped, for post-filters)
    ("recall_at_k", _F64),  # vs exact search over the passing documents
    ("queries_short", _I64),  # queries that got fewer results than min(K, passing documents)
    ("violations", _I64),  # returned ids failing the filter (must be 0)
    ("search_p50_ms", _F64), ("search_p95_ms", _F64), ("search_p99_ms", _F64), ("search_mean_ms", _F64),
    ("latency_samples", _I64),
    *RUN_COLUMNS,
])

# Throughput under load (`python -m bench load`): one row per (served sweep cell, mode, load level).
LOAD_SCHEMA = pa.schema([
    ("cell_id", _STR), ("host_id", _STR), ("config_name", _STR), ("config_hash", _STR),
    ("sweep_cell_id", _STR), ("dataset", _STR), ("pipeline", _STR),  # the served cell and its description
    ("chosen_as", _STR),  # why it was served: the budget it is recommended under, or the encoder's fastest cell
    ("mode", _STR),  # "closed": `concurrency` clients back to back; "open": Poisson arrivals at `target_qps`
    ("concurrency", _I64),  # closed: clients; open: serving threads
    ("target_qps", _F64),  # open loop's arrival rate; null for closed-loop rows
    ("achieved_qps", _F64), ("requests", _I64), ("dropped", _I64), ("duration_s", _F64),
    # per request, from sending (closed) or scheduled arrival (open) to the ranked list
    ("latency_p50_ms", _F64), ("latency_p95_ms", _F64), ("latency_p99_ms", _F64), ("latency_mean_ms", _F64),
    ("deadline_ms", _F64), ("over_deadline_share", _F64),  # dropped requests count as over
    ("serial_e2e_p50_ms", _F64), ("serial_e2e_p95_ms", _F64),  # the sweep's one-query-at-a-time figures
    ("threads_per_request", _I64), ("cores", _I64),
    ("price_per_core_hour", _F64), ("cost_per_million_usd", _F64),  # cores x price / (achieved QPS x 3600) x 1e6
    ("calibration_ms", _F64),  # the calibration kernel at the run's start (bench.core.calibration)
    *RUN_COLUMNS,
])

# Composed runs (`python -m bench composed`): one row per chosen pipeline, every query through every stage in one loop.
COMPOSED_SCHEMA = pa.schema([
    ("cell_id", _STR), ("host_id", _STR), ("config_name", _STR), ("config_hash", _STR),
    ("sweep_cell_id", _STR), ("pipeline_id", _STR), ("pipeline", _STR), ("dataset", _STR),
    ("chosen_as", _STR),  # the budgets it is picked under, or "dev frontier"
    ("queries", _I64), ("repetitions", _I64), ("samples", _I64), ("threads", _I64),
    ("encode_p50_ms", _F64), ("encode_p95_ms", _F64), ("encode_p99_ms", _F64),
    ("search_p50_ms", _F64), ("search_p95_ms", _F64), ("search_p99_ms", _F64),
    ("rerank_p50_ms", _F64), ("rerank_p95_ms", _F64), ("rerank_p99_ms", _F64),
    # percentiles of per-query totals, each query timed through every stage in one loop
    ("e2e_p50_ms", _F64), ("e2e_p95_ms", _F64), ("e2e_p99_ms", _F64), ("e2e_mean_ms", _F64),
    # these samples summarized as the sweep's e2e was before per-sample sums: per-query sums of per-stage medians
    ("medians_e2e_p50_ms", _F64), ("medians_e2e_p95_ms", _F64), ("medians_e2e_p99_ms", _F64),
    # the sweep row's figures for the same cell (another run: compare over `calibration_ms`, not raw)
    ("sweep_e2e_p50_ms", _F64), ("sweep_e2e_p95_ms", _F64), ("sweep_e2e_p99_ms", _F64), ("sweep_calibration_ms", _F64),
    ("calibration_ms", _F64),  # the kernel's median, timed after every query
    *RUN_COLUMNS,
])

KEY = ["cell_id", "host_id"]

# Columns added after results files were first written, and the value older rows get on reading.
ADDED_COLUMNS = {"encoder_mode": "pretrained", "encoder_train_s": float("nan"), "chunking": "", "n_chunks": 0,
                 "fusion_alpha_chosen_on": "", "variant": "", "measured_at": None,
                 "query_encode_calibration_ms": float("nan"), "calibration_ms": float("nan"), "latency_settings": "",
                 "query_precision": "fp32", "doc_precision": "fp32", "encoder_device": "cpu", "encode_batch_size": None,
                 "encoder_bytes": None, "query_runtime": "torch", "doc_runtime": "torch",
                 "e2e_method": "sum of per-query medians", "normalize": True, "mips_reduction": False, "judged_at_10": None, "q_judged_at_10": None,
                 "dev_judged_at_10": None, "dev_q_judged_at_10": None, "rerank_depth_rule": "", "q_rerank_pairs": None,
                 "top10_changed_share": None, "rerank_timed_identity": "",
                 "cpu_flags": None, "torch_cpu_capability": None, "torch_quantized_engine": None, "faiss_simd": None,
                 "onnxruntime_provider": None, "int8_level": None, "index_cached_bytes": None}

# What re-timing a stored row replaces (bench.run.sweep: stale latencies); every other column, quality included, is kept.
LATENCY_COLUMNS = ("query_encode_p50_ms", "query_encode_p95_ms", "query_encode_p99_ms", "query_encode_mean_ms",
                   "query_encode_calibration_ms", "build_s", "rss_after_build_bytes",
                   "search_p50_ms", "search_p95_ms", "search_p99_ms", "search_mean_ms", "latency_samples",
                   "latency_threads", "calibration_ms", "latency_settings", "throughput_qps", "throughput_threads",
                   "rerank_p50_ms", "rerank_p95_ms", "rerank_p99_ms", "rerank_mean_ms", "rerank_latency_queries",
                   "rerank_threads", "rerank_timed_identity", "e2e_p50_ms", "e2e_p95_ms", "e2e_p99_ms", "e2e_mean_ms", "e2e_queries", "e2e_method",
                   "timestamp", "measured_at", "git_sha", "git_dirty", "versions", "cpu_model", "n_cpus", "memory_gb",
                   "platform", "host_id", "cpu_flags", "torch_cpu_capability", "torch_quantized_engine", "faiss_simd",
                   "onnxruntime_provider", "int8_level")


class SchemaError(ValueError):
    """A row or file that does not match SCHEMA."""


def empty_frame(schema: pa.Schema = SCHEMA) -> pd.DataFrame:
    return schema.empty_table().to_pandas()


class ResultStore:
    """One parquet file of `schema` rows (SCHEMA unless told), appended to through part files.

    `add` writes each row as its own small parquet file (atomically) in a folder beside the results file,
    `.<name>.parts/`, instead of rewriting the whole file; readers take the file and its parts together, a
    later row replacing an earlier one of the same cell and host. `compact` folds the parts into the file
    (atomically, then removes them): a run calls it when it ends, and a killed run leaves parts that the
    next read includes, so nothing measured is lost.
    """

    def __init__(self, path: Path | str, schema: pa.Schema = SCHEMA):
        self.path = Path(path)
        if self.path.is_dir():
            raise SchemaError(f"{self.path}: is a directory; a results path names a .parquet file")
        self.schema = schema
        self._frame: pd.DataFrame | None = None

    @property
    def history(self) -> Path:
        return history_path(self.path)

    @contextlib.contextmanager
    def locked(self, announce=None):
        """Hold the results file's lock for a run: a second run on the same file waits here (`announce` gets one
        line while it waits). Advisory (fcntl.flock): released by the kernel when the holder dies, however."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(f".{self.path.name}.lock")
        with lock.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another run"
                (announce or (lambda text: print(text, file=sys.stderr, flush=True)))(
                    f"{self.path}: waiting for {holder} to finish writing it ({lock})")
                fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
            handle.flush()
            try:
                self._frame = None  # what the previous holder wrote
                yield self
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def parts(self) -> Path:
        return parts_dir(self.path)

    def load(self) -> pd.DataFrame:
        if self._frame is None:
            exists = self.path.exists() or any(self.parts.glob("*.parquet"))
            self._frame = read_results(self.path, schema=self.schema) if exists else empty_frame(self.schema)
        return self._frame

    def check_writable(self) -> None:
        """Fail now, naming the path, if results cannot be written there (before any expensive work)."""
        import tempfile

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".probe"):
                pass
        except OSError as err:
            raise SchemaError(f"{self.path}: results cannot be written there ({err.strerror or err})") from None
        if self.path.exists():
            self.load()  # an unreadable or foreign results file is named now, not after the first cell

    def done(self, host_id: str) -> set[str]:
        frame = self.load()
        return set(frame.loc[frame["host_id"] == host_id, "cell_id"])

    def add(self, row: dict) -> None:
        """Append one cell (replacing an earlier row with the same cell and host) as a part file."""
        missing, extra = set(self.schema.names) - set(row), set(row) - set(self.schema.names)
        if missing or extra:
            raise SchemaError(f"row does not match the results schema: missing {sorted(missing)}, unknown {sorted(extra)}")
        table = pa.Table.from_pylist([_nulls_for_nan(row, self.schema)], schema=self.schema)
        frame = self.load()
        self.parts.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.parts / f"{time.time_ns():020d}.parquet",
                           lambda tmp: (pq.write_table(table, tmp), fault("part-temp-written")))
        fault("part-renamed")
        same = (frame["cell_id"] == row["cell_id"]) & (frame["host_id"] == row["host_id"])
        new = table.to_pandas()
        self._frame = pd.concat([frame[~same], new], ignore_index=True) if len(frame[~same]) else new

    def compact(self) -> None:
        """Fold the part files into the results file (one atomic rewrite), then remove exactly the parts it read
        (a concurrent writer's later parts stay for the next compaction). Rows the parts replace go to the
        history file first. Stale temp files of killed writers are removed."""
        _remove_stale_temps(self.path.parent, f".{self.path.name}.")
        if self.parts.exists():
            _remove_stale_temps(self.parts, ".")
        parts = sorted(self.parts.glob("*.parquet"))
        if not parts:
            self._remove_parts_dir()
            return
        stored = _read_table(self.path, self.schema) if self.path.exists() else empty_frame(self.schema)
        added = [_read_table(part, self.schema) for part in parts]
        frame = pd.concat([stored, *added], ignore_index=True) if len(stored) else pd.concat(added, ignore_index=True)
        latest = frame.drop_duplicates(KEY, keep="last")
        self._keep_history(frame.drop(index=latest.index))
        self._write(latest.reset_index(drop=True))
        fault("compacted")
        for part in parts:
            part.unlink()
            fault("part-removed")
        fault("parts-removed")
        self._remove_parts_dir()
        self._frame = None

    def _remove_parts_dir(self) -> None:
        with contextlib.suppress(OSError):  # not empty (a concurrent writer's part) or already gone: leave it
            self.parts.rmdir()

    def drop(self, cell_ids: set[str], host_id: str) -> int:
        """Move this host's rows of `cell_ids` to the history file (the file rewritten atomically, parts folded in);
        returns how many."""
        self.compact()
        frame = self.load()
        gone = frame["cell_id"].isin(cell_ids) & (frame["host_id"] == host_id)
        if gone.any():
            self._keep_history(frame[gone])
            self._frame = frame[~gone].reset_index(drop=True)
            self._write(self._frame)
        return int(gone.sum())

    def _keep_history(self, rows: pd.DataFrame) -> None:
        """Append superseded or dropped rows to the history file (atomically)."""
        if rows.empty:
            return
        earlier = _read_table(self.history, self.schema) if self.history.exists() else empty_frame(self.schema)
        both = pd.concat([earlier, rows], ignore_index=True) if len(earlier) else rows
        table = pa.Table.from_pandas(both, schema=self.schema, preserve_index=False)
        atomic_write_bytes(self.history, lambda tmp: pq.write_table(table, tmp))
        fault("history-written")

    def _write(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        atomic_write_bytes(self.path, lambda tmp: (pq.write_table(table, tmp), fault("results-temp-written")))


def history_path(path: Path) -> Path:
    """Where rows superseded or pruned from results file `path` are kept."""
    return path.with_name(f"{path.stem}.history{path.suffix}")


def _remove_stale_temps(folder: Path, prefix: str) -> None:
    """Temp files (`.<name>.<pid>.tmp`, bench.core.cache.atomic_write_bytes) whose writer is no longer alive."""
    for tmp in folder.glob(f"{prefix}*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fault(point: str) -> None:
    """Fault injection for the store's tests (tests/faults): with `BENCH_FAULT=<point>[:<n>]` the process kills
    itself with SIGKILL the n-th time (default 1st) it reaches `point`. A no-op otherwise."""
    wanted = os.environ.get("BENCH_FAULT")
    if not wanted:
        return
    name, _, count = wanted.partition(":")
    if name != point:
        return
    _FAULT_SEEN[point] = _FAULT_SEEN.get(point, 0) + 1
    if _FAULT_SEEN[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_FAULT_SEEN: dict[str, int] = {}


def parts_dir(path: Path) -> Path:
    """Where rows appended to results file `path` wait to be compacted into it."""
    return path.with_name(f".{path.name}.parts")


def _nulls_for_nan(row: dict, schema: pa.Schema) -> dict:
    """A row read back from a frame: pandas holds a missing integer as NaN and a missing time as NaT; parquet
    as null."""
    def null(name: str, value) -> bool:
        kind = schema.field(name).type
        return (value is pd.NaT or pa.types.is_integer(kind) and isinstance(value, float) and value != value)

    return {name: None if null(name, value) else value for name, value in row.items()}


def read_results(*paths: Path | str, schema: pa.Schema = SCHEMA) -> pd.DataFrame:
    """Rows of one or more results files (each with its part files not yet compacted), checked against `schema`."""
    frames = []
    for path in map(Path, paths):
        if path.is_dir():
            raise SchemaError(f"{path}: is a directory; a results path names a .parquet file")
        parts = sorted(parts_dir(path).glob("*.parquet"))
        if not path.exists() and not parts:
            raise SchemaError(f"{path}: no such results file")
        pieces = [_read_table(file, schema) for file in ([path] if path.exists() else []) + parts]
        frame = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0]
        if parts:  # a later row of the same cell and host replaces an earlier one
            frame = frame.drop_duplicates(KEY, keep="last").reset_index(drop=True)
        frames.append(frame)
    if not frames:
        return empty_frame(schema)
    combined = pd.concat(frames, ignore_index=True)
    if len(frames) > 1 and "measured_at" in combined:  # a cell in two files (a series re-measuring one): the latest
        latest = combined["measured_at"].fillna(pd.Timestamp.min.tz_localize("UTC")).sort_values(kind="stable")
        combined = combined.loc[latest.index].drop_duplicates(KEY, keep="last").sort_index().reset_index(drop=True)
    return combined


def _read_table(path: Path, schema: pa.Schema) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise SchemaError(f"{path}: not a readable parquet file: {err}") from err
    absent = set(schema.names) - set(table.schema.names) - set(ADDED_COLUMNS) - {"fusion_weight_chosen_on", "stage"}
    if absent:
        raise SchemaError(f"{path}: not a results file of this kind: missing columns {sorted(absent)[:5]}"
                          + (f" and {len(absent) - 5} more" if len(absent) > 5 else ""))
    for name, value in ADDED_COLUMNS.items():
        if name in schema.names and name not in table.schema.names:
            table = table.append_column(name, pa.array([value] * len(table), schema.field(name).type))
    if "fusion_weight_chosen_on" in schema.names and "fusion_weight_chosen_on" not in table.schema.names:
        # rows before it: every convex hybrid any config measured had its weight chosen on dev (the spec's default)
        convex = [json.loads(text or "{}").get("fusion") == "convex" for text in table.column("search_params").to_pylist()]
        table = table.append_column("fusion_weight_chosen_on", pa.array(np.where(convex, "dev", ""), _STR))
    if "stage" in schema.names and "stage" not in table.schema.names:  # rows before it: a rerank row has R > 0
        reranked = table.column("r").to_numpy() > 0
        table = table.append_column("stage", pa.array(np.where(reranked, "rerank", "first"), _STR))
    missing = set(schema.names) - set(table.schema.names)
    if missing:
        raise SchemaError(f"{path}: missing columns {sorted(missing)} of the results schema")
    return table.select(schema.names).cast(schema).to_pandas()
