"""Typed rows of the sweep's results table, one record per stage; the parquet schema is derived from them.

A first-stage row (`FirstStageRow`) is one cell: an encoder, a backend with its build and search parameters and K,
its cost, latency and quality. A rerank row (`RerankRow`) is a first-stage cell whose top R a cross-encoder
re-scored: every column of its parent plus the reranker's. Each column is declared once, here, as a typed field
with its meaning; `bench.store.results.SCHEMA` is `results_schema()`. Building a record checks that a row has every
column of its stage and no other.

The rerank columns of a first-stage row hold `NOT_RERANKED` (empty names, R = 0, NaN figures), the values rows
have carried since before the `stage` column; analyses select rows by `stage`, never by these values.
"""

from __future__ import annotations

import dataclasses
import datetime
import types
import typing
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa


@dataclass(kw_only=True)
class CellIdentity:
    cell_id: str  # a hash of everything that defines the cell (bench.run.plan)
    host_id: str  # CPU model, cores, memory, architecture, instruction set (bench.core.env.host_id)
    config_name: str
    config_hash: str
    dataset: str
    dataset_hash: str
    split: str
    n_docs: int
    n_queries: int
    # the protocol (bench.data.splits): where the dev queries come from, how many, and the leakage guard (JSON: dev
    # source, counts, guard drops, shares of seen queries, the seen dev/test query ids)
    dev_source: str
    n_dev_queries: int
    protocol: str


@dataclass(kw_only=True)
class EncoderColumns:
    encoder: str
    encoder_type: str
    model: str
    model_identity: str
    max_seq_length: int
    dim: int
    query_precision: str  # how the network ran per side: fp32, int8 (dynamic)
    doc_precision: str
    query_runtime: str  # what ran the query network: torch or onnxruntime ("" without a network)
    doc_runtime: str  # what ran the document network over the corpus: torch or onnxruntime ("" without a network)
    normalize: bool  # vectors L2-normalized (false: raw pooled vectors, scored by their inner product)
    mips_reduction: bool  # the backend searched through the reduction to nearest neighbour (bench.search.mips)
    encoder_device: str
    encode_batch_size: int | None  # corpus encoding batch; queries are encoded one by one
    encoder_params: int  # distinct parameters: a twin tower counts both towers, a shared backbone once
    encoder_bytes: int | None  # the query network's weights as served (int8 Linear: 1 byte); empty on older rows
    encoder_mode: str  # "pretrained", or how the harness trained it: "heads" (frozen backbone) or "full"
    encoder_train_s: float  # NaN unless trained by the harness
    encoder_saw_eval_docs: bool  # trained on documents relevant to dev/test queries (guard not applied)
    chunking: str  # JSON {tokens, stride, aggregate} when passages are indexed; "" = whole documents
    n_chunks: int  # passages indexed (0 = whole documents: one vector per document)


@dataclass(kw_only=True)
class IndexColumns:
    backend: str
    build_params: str  # JSON objects, sorted keys; as run (defaults filled in)
    search_params: str
    k: int
    fusion_weight_chosen_on: str  # a weighted fusion's weight (search_params' "weight"): "dev" when tuned on the dev
    # queries, "test" when tuned on the test queries of a dataset without dev queries, "" when configured


@dataclass(kw_only=True)
class RerankColumns:
    reranker: str
    reranker_identity: str
    reranker_saw_eval_docs: bool
    r: int  # rerank depth R <= K
    fusion_alpha: float  # alpha * cross + (1 - alpha) * first stage (min-max normalized)
    fusion_alpha_chosen_on: str  # "dev": chosen on the cell's dev queries at its R; "": fixed in the config
    rerank_max_length: int
    cross_pairs_scored: int  # pairs scored now (0 = all from the cache)
    reranker_params: int
    reranker_train_s: float  # NaN for models not trained by the harness
    # adaptive depth (bench.run.adaptive): the rule chosen on dev (JSON: rule, param, step, chosen_on), the pairs scored per
    # test query, and the share of test queries whose top 10 differs from full-depth reranking at R; empty for a
    # fixed depth (every query scores its top R)
    rerank_depth_rule: str = ""
    q_rerank_pairs: list[float] | None = None
    top10_changed_share: float | None = None


@dataclass(kw_only=True)
class CostColumns:
    corpus_encode_s: float  # wall time of encoding the corpus (from the cache's record when cached)
    build_s: float
    build_threads: int
    index_bytes: int
    index_bytes_method: str  # "serialized": bytes the library writes to disk
    rss_after_build_bytes: int  # process RSS right after the build (model and embeddings included)
    # a served engine: bytes of its index in the server's buffer cache after the cell's timed queries (PostgreSQL:
    # pg_buffercache); None for in-process libraries, whose index is in the process (rss_after_build_bytes)
    index_cached_bytes: int | None = None


@dataclass(kw_only=True)
class FirstStageLatency:
    """Query encoding and ANN search, one query at a time on one thread."""
    query_encode_p50_ms: float
    query_encode_p95_ms: float
    query_encode_p99_ms: float
    query_encode_mean_ms: float
    query_encode_calibration_ms: float  # the calibration kernel, timed between the encoded queries
    search_p50_ms: float
    search_p95_ms: float
    search_p99_ms: float
    search_mean_ms: float
    latency_samples: int
    latency_threads: int
    calibration_ms: float  # the calibration kernel (bench.core.calibration), timed right before this cell's search
    latency_settings: str  # JSON: the [measure] settings the latencies were timed with (bench.run.plan)
    throughput_qps: float  # batch search of all queries
    throughput_threads: int


@dataclass(kw_only=True)
class RerankLatency:
    """Scoring R pairs of one query (uncached, `rerank_threads` torch threads), on the first
    `rerank_latency_queries` test queries' exact top-R of the run's first reranked encoder."""
    rerank_p50_ms: float
    rerank_p95_ms: float
    rerank_p99_ms: float
    rerank_mean_ms: float
    rerank_latency_queries: int
    rerank_threads: int
    # the weights whose scoring was timed: the row's reranker_identity, or, on a row re-timed after its model was gone
    # (`--retime`), another model of the same spec (architecture, max_length: the same computation per pair, only
    # the weights differ; benchmarks/rerank_weights_latency.py); "" on first-stage rows and rows timed before it
    rerank_timed_identity: str = ""


@dataclass(kw_only=True)
class EndToEnd:
    """Encode + search (+ rerank), summed per sample over the queries timed by every stage (bench.core.timing.end_to_end)."""
    e2e_p50_ms: float
    e2e_p95_ms: float
    e2e_p99_ms: float
    e2e_mean_ms: float
    e2e_queries: int
    # "per-sample sums": sample (pass, query) of each stage added; "sum of per-query medians": rows before it, whose
    # tails understate the pipeline's (a composed run, bench.series.composed, times the pipelines that matter as deployed)
    e2e_method: str


@dataclass(kw_only=True)
class Quality:
    """On the test queries (reported), then the same on the dev queries (used to choose settings; a copy of the
    test columns when the dataset has no dev queries: `dev_source` says so)."""
    recall_at_k: float  # |ANN top-K ∩ exact top-K| / K, by id, mean over queries
    ndcg_at_10: float  # ir_measures, vs qrels
    recall_at_100: float
    rr_at_10: float
    # empty on rows measured before it was added (bench.store.results.ADDED_COLUMNS)
    judged_at_10: float | None = None  # ir_measures Judged@10: share of the top 10 the qrels judge
    queries_short: int  # test queries that got fewer than K results
    query_ids: list[str]
    q_ndcg_at_10: list[float]
    q_recall_at_100: list[float]
    q_rr_at_10: list[float]
    q_judged_at_10: list[float] | None = None
    dev_recall_at_k: float
    dev_ndcg_at_10: float
    dev_recall_at_100: float
    dev_rr_at_10: float
    dev_judged_at_10: float | None = None
    dev_query_ids: list[str]
    dev_q_ndcg_at_10: list[float]
    dev_q_recall_at_100: list[float]
    dev_q_rr_at_10: list[float]
    dev_q_judged_at_10: list[float] | None = None


@dataclass(kw_only=True)
class RunColumns:
    """When, by what code and on what machine a row was measured (every results table ends with these)."""
    timestamp: datetime.datetime  # when the run that measured the row started
    measured_at: datetime.datetime | None  # when the row itself was measured (empty: rows before it existed)
    git_sha: str
    git_dirty: bool
    versions: str
    cpu_model: str
    n_cpus: int
    memory_gb: float
    platform: str
    # the instruction set the row's kernels ran on (bench.core.env.instruction_set); empty on rows measured before it
    cpu_flags: str | None = None  # of bench.core.env.ISA_FLAGS, those the CPU has
    torch_cpu_capability: str | None = None  # torch.backends.cpu.get_cpu_capability(): AVX2, AVX512, ...
    torch_quantized_engine: str | None = None  # torch.backends.quantized.engine
    faiss_simd: str | None = None  # the SIMD build faiss loaded (AVX2, AVX512, ...)
    onnxruntime_provider: str | None = None  # ONNX Runtime's version and execution provider
    int8_level: str | None = None  # the int8 kernels fbgemm and MLAS pick on this CPU: avx2, avx512, avx512-vnni, amx


@dataclass(kw_only=True)
class FirstStageRow(RunColumns, Quality, EndToEnd, FirstStageLatency, CostColumns, IndexColumns, EncoderColumns,
                    CellIdentity):
    """One first-stage cell: the encoder's top K from the backend."""
    stage: ClassVar[str] = "first"

    def as_row(self) -> dict:
        return {**dataclasses.asdict(self), "stage": self.stage, **NOT_RERANKED}


@dataclass(kw_only=True)
class RerankRow(RerankLatency, RerankColumns, FirstStageRow):
    """A first-stage cell whose top R a cross-encoder re-scored (quality and e2e columns are the reranked ones)."""
    stage: ClassVar[str] = "rerank"

    def as_row(self) -> dict:
        return {**dataclasses.asdict(self), "stage": self.stage}

    @classmethod
    def of(cls, parent: dict, **columns) -> "RerankRow":
        """A child of first-stage row `parent` (as stored): its columns, these replacing or adding to them."""
        inherited = {name: value for name, value in parent.items() if name != "stage" and name not in NOT_RERANKED}
        return cls(**{**inherited, **columns})


def _absent(kind) -> object:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # optional: absent is empty
        return None
    return {str: "", bool: False, int: 0, float: float("nan")}[kind]


def _fields(record: type) -> dict[str, object]:
    hints = typing.get_type_hints(record)
    return {f.name: hints[f.name] for f in dataclasses.fields(record)}


# The rerank columns of a first-stage row.
NOT_RERANKED = {name: _absent(kind) for name, kind in {**_fields(RerankColumns), **_fields(RerankLatency)}.items()}

_ARROW = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_(),
          datetime.datetime: pa.timestamp("us", tz="UTC"), list[str]: pa.list_(pa.string()),
          list[float]: pa.list_(pa.float64())}


def arrow_type(hint) -> pa.DataType:
    """The parquet type of a field's annotation (`X | None`: nullable X; every parquet column is nullable)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    return _ARROW[hint]


def columns_of(*groups: type) -> list[tuple[str, pa.DataType]]:
    return [(name, arrow_type(hint)) for group in groups for name, hint in _fields(group).items()]


RUN_COLUMNS = columns_of(RunColumns)


def results_schema() -> pa.Schema:
    """The sweep's parquet schema: the identity, encoder and index columns, `stage`, the rerank columns, then cost,
    latency, quality and run columns (the order files have always had)."""
    return pa.schema([*columns_of(CellIdentity, EncoderColumns, IndexColumns), ("stage", pa.string()),
                      *columns_of(RerankColumns, CostColumns, FirstStageLatency, RerankLatency, EndToEnd, Quality,
                                  RunColumns)])
