"""Typed sweep configuration, read from a TOML file.

A sweep names a dataset and split, the K values, the encoders, and per backend a build grid and a
search grid (each a table of parameter -> list of values; the grid is their cartesian product).
Every index is built once per build tuple and searched with every search tuple and K.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.models.encoders import DEFAULT_MODEL
from bench.pipeline.stages import KINDS, kind_of
from bench.data.splits import Protocol
from bench.search.catalog import CATALOG
from bench.models.train.options import CrossTrainConfig, TowerTrainConfig
from bench.data.chunking import Chunking
from bench.search.hybrid import HybridSpec


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and key."""


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder: `model` by name or path, or (types bi and twin) `train` options for `bench train-towers`
    (architecture = the type, dataset = the sweep's; trained once, cached)."""

    name: str
    type: str = "bi"  # "bi" (shared weights), "twin" (separate query and document networks), "bm25" (text),
    # "hybrid" (BM25 fused with another encoder of the config: see bench.search.hybrid)
    model: str = DEFAULT_MODEL
    max_seq_length: int | None = None
    batch_size: int = 64
    train: dict = field(default_factory=dict)
    chunk_tokens: int = 0  # > 0: index passages of this many tokens instead of whole documents
    chunk_stride: int = 0  # tokens between passage starts; 0 = chunk_tokens (no overlap)
    aggregate: str = "max"  # passages -> documents: max (MaxP), sum (SumP), first (FirstP)
    hybrid: dict = field(default_factory=dict)  # type "hybrid": bench.search.hybrid.HybridSpec options
    backends: list[str] = field(default_factory=list)  # the config's backends this encoder runs on; empty = all
    # how the network runs (bench.models.encoders.PRECISIONS): queries and documents separately, so that int8 queries
    # can search fp32 document vectors; the corpus is re-encoded for a document precision other than fp32
    query_precision: typing.Literal["fp32", "int8"] = "fp32"
    doc_precision: typing.Literal["fp32", "int8"] = "fp32"
    device: typing.Literal["cpu", "cuda"] = "cpu"
    # what runs the query network: torch, or ONNX Runtime over the model exported by torch's dynamo exporter
    # (fp32, CPU; the documents stay torch's: the same vectors to ~1e-7)
    query_runtime: typing.Literal["torch", "onnxruntime"] = "torch"
    # false: the raw pooled vector, before the model's Normalize module (inner product without normalization);
    # its norms are then part of the score (`python -m bench norms` watches them)
    normalize: bool = True
    # true: every backend searches through the MIPS reduction to nearest neighbour (bench.search.mips)
    mips_reduction: bool = False
    # what runs the document network when the corpus is encoded: torch, or ONNX Runtime over the same export as
    # query_runtime's (fp32, CPU, a bi encoder; 1.3x the texts per second here, the same rankings:
    # benchmarks/doc_encode_paths.py); another document identity, so the corpus is encoded and cached apart
    doc_runtime: typing.Literal["torch", "onnxruntime"] = "torch"

    def network_settings(self) -> dict:
        """How the encoder's network runs (HOW_IT_RUNS but the search's `mips_reduction`), as SentenceEncoder takes them."""
        return {name: getattr(self, name) for name in HOW_IT_RUNS if name != "mips_reduction"}

    @property
    def hybrid_spec(self):
        """The hybrid's settings (type "hybrid" only)."""
        return HybridSpec(**self.hybrid)

    @property
    def chunking(self):
        """The passage split, or None for whole documents."""
        if not self.chunk_tokens:
            return None
        return Chunking(self.chunk_tokens, self.chunk_stride or self.chunk_tokens, self.aggregate)


# How an encoder's network runs, at the settings that change nothing.
HOW_IT_RUNS = {f.name: f.default for f in dataclasses.fields(EncoderSpec)
               if f.name in ("query_precision", "doc_precision", "device", "query_runtime", "doc_runtime", "normalize",
                             "mips_reduction")}


@dataclass(frozen=True)
class BackendSpec:
    backend: str
    build: dict[str, list] = field(default_factory=dict)
    search: dict[str, list] = field(default_factory=dict)
    encoders: list[str] = field(default_factory=list)  # the encoders this backend runs for; empty = all

    def build_grid(self) -> list[dict[str, Any]]:
        return grid(self.build)

    def search_grid(self) -> list[dict[str, Any]]:
        return grid(self.search)


@dataclass(frozen=True)
class MeasureSpec:
    """How latency and throughput are measured. Every field but `build_threads` only changes how latency is
    timed: a change re-measures the latency columns of stored rows and keeps their quality (bench.run.sweep)."""

    warmup: int = 20  # untimed queries before timing each cell
    repeats: int = 3  # timed passes over the query sample
    query_sample: int = 0  # queries timed per pass; 0 = all
    encode_sample: int = 100  # queries timed for query-encoding latency
    encode_repeats: int = 3  # timed passes over the encode sample (interleaved with the calibration kernel)
    threads: int = 1  # torch threads of the online model stages: query encoding and reranking (one-query search
    # runs on one thread in every backend's query path)
    calibration_tolerance: float = 0.1  # stored latencies whose calibration figure differs more are re-measured
    throughput_threads: int = 0  # 0 = all available cores
    throughput_repeats: int = 3
    build_threads: int = 0  # 0 = all available cores

    def __post_init__(self):
        counts = {"warmup": 0, "repeats": 1, "query_sample": 0, "encode_sample": 1, "encode_repeats": 1, "threads": 1,
                  "throughput_threads": 0, "throughput_repeats": 1, "build_threads": 0}
        for name, least in counts.items():
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)}")
        if not 0 < self.calibration_tolerance < 1:
            raise ValueError(f"calibration_tolerance must be in (0, 1), got {self.calibration_tolerance}")

    def latency_settings(self) -> dict:
        """The fields that only change how latency is timed (rows store them; cell ids do not hash them)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("build_threads", "calibration_tolerance")}

    def key(self) -> dict:
        """The settings as the scale and filter series' cell ids hash them: fields added later are left out at
        their defaults, so ids predating them still match."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in MEASURE_FIELDS_ADDED or v != MEASURE_FIELDS_ADDED[k]}


MEASURE_FIELDS_ADDED = {"encode_repeats": 3, "threads": 1, "calibration_tolerance": 0.1}


@dataclass(frozen=True)
class RerankerSpec:
    """A cross-encoder: a model by name or path, or `train` options for `bench train-cross` (trained once, cached).

    `alpha`: fusion weights to sweep, each a number in [0, 1] (1 = the cross-encoder alone) or
    "dev" (chosen per first-stage cell and R on the dev queries, from bench.models.rerankers.ALPHAS).
    """

    name: str
    model: str = ""
    train: dict = field(default_factory=dict)
    max_length: int = 256
    batch_size: int = 32
    alpha: list[float | typing.Literal["dev"]] = field(default_factory=lambda: [1.0])
    # the variant it is served as (bench.models.rerankers.CrossEncoderScorer): another model identity, scores cached apart
    precision: str = "fp32"  # or "int8" (dynamic quantization of the Linear layers)
    runtime: str = "torch"  # or "onnxruntime"


@dataclass(frozen=True)
class RerankSpec:
    """The second stage: every first-stage cell with K in `k` and dev recall@K >= `min_recall_at_k` is reranked."""

    rerankers: list[RerankerSpec] = field(default_factory=list)
    r: list[int] = field(default_factory=lambda: [10, 20, 50, 100])
    k: list[int] = field(default_factory=list)  # first-stage K values to rerank; empty = all
    min_recall_at_k: float = 0.0
    encoders: list[str] = field(default_factory=list)  # first-stage encoders to rerank; empty = all
    backends: list[str] = field(default_factory=list)  # first-stage backends to rerank; empty = all
    latency_queries: int = 50  # fixed sample (the first test queries) whose R pairs are timed, uncached
    # > 0: every (reranker, alpha, R) child also runs at an adaptive depth (bench.run.adaptive), scoring in steps of this
    # many pairs, the stopping rule chosen on dev
    adaptive_step: int = 0


@dataclass(frozen=True)
class SweepConfig:
    name: str
    dataset: str
    split: str
    k: list[int]
    encoders: list[EncoderSpec]
    backends: list[BackendSpec]
    measure: MeasureSpec = MeasureSpec()
    results: str = ""  # parquet path; default results/<name>.parquet
    max_queries: int = 0  # 0 = every judged query of the split
    synthetic: dict[str, int] = field(default_factory=dict)  # generator options for dataset = "synthetic"
    rerank: RerankSpec = RerankSpec()
    protocol: Protocol = Protocol()  # dev queries and the leakage guard (bench.data.splits)
    # {source, paragraphs, seed}: paragraphs of another corpus added to this one's (bench.data.distractors)
    distractors: dict = field(default_factory=dict)

    @property
    def results_path(self) -> Path:
        return Path(self.results or f"results/{self.name}.parquet")

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def grid(axes: dict[str, list]) -> list[dict[str, Any]]:
    names = sorted(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(axes[n] for n in names))]


def check_all(checks: list[tuple[bool, str]]) -> None:
    """A settings dataclass's checks: ValueError with the first failing one's message (from_table names the file)."""
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def from_table(cls, raw: Any, where: str):
    """Build dataclass `cls` from a TOML table, naming the unknown or mistyped key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table, got {type(raw).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    check_types(cls, raw, where)
    try:
        return cls(**raw)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def check_types(cls, raw: dict, where: str) -> None:
    """Each value of `raw` against the type of `cls`'s field of that name (pydantic, strict: no coercion)."""
    from pydantic import TypeAdapter, ValidationError

    hints = typing.get_type_hints(cls)
    for name, value in raw.items():
        if name not in hints:
            continue
        try:
            TypeAdapter(hints[name]).validate_python(value, strict=True)
        except ValidationError as err:
            problem = err.errors()[0]
            at = "".join(f"[{p}]" if isinstance(p, int) else "" for p in problem["loc"])
            sep = "." if ": " in where else ": "
            raise ConfigError(f"{where}{sep}{name}{at}: {problem['msg'].lower()}, got {value!r}") from None


def as_lists(table: Any, where: str) -> dict[str, list]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table of parameter = [values]")
    lists = {}
    for key, values in table.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError(f"{where}.{key}: empty list of values")
        lists[key] = values
    return lists


def parse_config(raw: dict, source: str) -> SweepConfig:
    """A SweepConfig from a parsed TOML document; `source` names it in errors."""
    raw = dict(raw)
    try:
        encoders = [from_table(EncoderSpec, e, f"{source}: encoders[{i}]") for i, e in enumerate(raw.pop("encoders"))]
        backends = []
        for i, b in enumerate(raw.pop("backends")):
            where = f"{source}: backends[{i}]"
            if not isinstance(b, dict):
                raise ConfigError(f"{where}: expected a table, got {type(b).__name__}")
            grids = {key: as_lists(b[key], f"{where}.{key}") for key in ("build", "search") if key in b}
            backends.append(from_table(BackendSpec, {**b, **grids}, where))
    except KeyError as err:
        raise ConfigError(f"{source}: missing required key {err}") from None
    if "k" in raw and not isinstance(raw["k"], list):
        raw["k"] = [raw["k"]]
    measure = from_table(MeasureSpec, raw.pop("measure", {}), f"{source}: measure")
    rerank = _parse_rerank(raw.pop("rerank", {}), f"{source}: rerank")
    protocol = raw.pop("protocol", {})
    if not isinstance(protocol, dict):
        raise ConfigError(f"{source}: protocol: expected a table, got {type(protocol).__name__}")
    if "test_split" in protocol:
        raise ConfigError(f"{source}: protocol.test_split: the test split is the config's `split`")
    protocol = from_table(Protocol, {**protocol, "test_split": raw.get("split", "test")}, f"{source}: protocol")
    config = from_table(SweepConfig, {**raw, "encoders": encoders, "backends": backends, "measure": measure,
                                 "rerank": rerank, "protocol": protocol}, source)
    if config.distractors:
        from bench.data.distractors import DistractorSpec

        if not isinstance(config.distractors, dict):
            raise ConfigError(f"{source}: distractors: expected a table {{source, paragraphs, seed}}")
        from_table(DistractorSpec, config.distractors, f"{source}: distractors")
    ks = config.k if isinstance(config.k, list) else [config.k]
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigError(f"{source}: k must be a list of positive integers, got {config.k!r}")
    names = [e.name for e in encoders]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: encoder names must be unique, got {names}")
    for i, e in enumerate(encoders):
        if e.type not in KINDS:
            raise ConfigError(f"{source}: encoders[{i}].type '{e.type}' is not supported "
                              f"(supported: {sorted(KINDS)})")
        changed = sorted(name for name, default in HOW_IT_RUNS.items() if getattr(e, name) != default)
        if changed and (kind_of(e.type).output != "vectors" or e.train):
            raise ConfigError(f"{source}: encoders[{i}].{changed[0]}: applies to pretrained bi/twin encoders only "
                              f"(this one is {'trained by the harness' if e.train else e.type}; a hybrid takes its dense "
                              "encoder's settings)")
        if e.query_runtime == "onnxruntime" and (e.query_precision, e.device, e.type) != ("fp32", "cpu", "bi"):
            raise ConfigError(f"{source}: encoders[{i}].query_runtime: onnxruntime runs a bi encoder's fp32 queries on "
                              "the CPU only")
        if e.doc_runtime == "onnxruntime" and (e.doc_precision, e.device, e.type, e.normalize) != ("fp32", "cpu", "bi", True):
            raise ConfigError(f"{source}: encoders[{i}].doc_runtime: onnxruntime encodes a bi encoder's fp32, normalized "
                              "documents on the CPU only")
        if not e.normalize and e.query_runtime != "torch":
            raise ConfigError(f"{source}: encoders[{i}].normalize: false runs on torch only (the ONNX export normalizes)")
        if e.device == "cuda" and "int8" in (e.query_precision, e.doc_precision):
            raise ConfigError(f"{source}: encoders[{i}]: int8 (dynamic quantization) runs on the CPU only, not device cuda")
        if e.train:
            check_types(TowerTrainConfig, e.train, f"{source}: encoders[{i}].train")
            try:
                tower_config(e, config.dataset)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{source}: encoders[{i}].train: {err}") from None
        if kind_of(e.type).output == "hybrid":  # a fusion of a dense encoder of this config and BM25
            if not e.hybrid:
                raise ConfigError(f"{source}: encoders[{i}]: type '{e.type}' needs a `hybrid` table (dense = ...)")
            check_hybrid(e, encoders, f"{source}: encoders[{i}].hybrid")
        elif e.hybrid:
            raise ConfigError(f"{source}: encoders[{i}]: `hybrid` applies to type 'hybrid' only")
        if e.chunk_tokens:
            if kind_of(e.type).output != "vectors":
                raise ConfigError(f"{source}: encoders[{i}]: chunking needs a vector encoder, not '{e.type}'")
            try:
                e.chunking
            except ValueError as err:
                raise ConfigError(f"{source}: encoders[{i}]: {err}") from None
            if e.max_seq_length and e.chunk_tokens > e.max_seq_length - 2:
                raise ConfigError(f"{source}: encoders[{i}].chunk_tokens ({e.chunk_tokens}) must leave room for the "
                                  f"special tokens within max_seq_length ({e.max_seq_length})")
    configured = [b.backend for b in backends]
    for i, b in enumerate(backends):  # before the lists that name backends: the typo is here, not in them
        if b.backend not in CATALOG:
            import difflib

            close = difflib.get_close_matches(b.backend, list(CATALOG), n=1)
            raise ConfigError(f"{source}: backends[{i}].backend: unknown backend '{b.backend}'"
                              + (f" (did you mean '{close[0]}'?)" if close else "") + f"; backends are {sorted(CATALOG)}")
    for i, e in enumerate(encoders):
        if set(e.backends) - set(configured):
            raise ConfigError(f"{source}: encoders[{i}].backends names backend(s) {sorted(set(e.backends) - set(configured))} "
                              f"missing from the config's backends {configured}")
    for i, b in enumerate(backends):
        if set(b.encoders) - set(names):
            raise ConfigError(f"{source}: backends[{i}].encoders names unknown encoder(s) "
                              f"{sorted(set(b.encoders) - set(names))}; encoders are {names}")
    unknown = sorted(set(rerank.encoders) - set(names))
    if unknown:
        raise ConfigError(f"{source}: rerank.encoders names unknown encoder(s) {unknown}; encoders are {names}")
    if set(rerank.backends) - set(configured):
        raise ConfigError(f"{source}: rerank.backends names backend(s) {sorted(set(rerank.backends) - set(configured))} "
                          f"missing from the config's backends {configured}")
    return dataclasses.replace(config, k=sorted(set(ks)))


def check_hybrid(spec: EncoderSpec, encoders: list[EncoderSpec], where: str) -> None:
    hybrid = from_table(HybridSpec, spec.hybrid, where)
    dense = next((e for e in encoders if e.name == hybrid.dense), None)
    if dense is None or kind_of(dense.type).output != "vectors" or dense.chunk_tokens:
        raise ConfigError(f"{where}.dense: '{hybrid.dense}' is not a whole-document vector encoder of this config "
                          f"(vector encoders: {[e.name for e in encoders if kind_of(e.type).output == 'vectors' and not e.chunk_tokens]})")


def tower_config(spec: EncoderSpec, dataset: str):
    """The `bench train-towers` settings of an encoder with `train` options."""
    if spec.type not in ("bi", "twin"):
        raise ValueError(f"only types bi and twin can be trained, not '{spec.type}'")
    if "architecture" in spec.train:
        raise ValueError("the architecture is the encoder's type; leave it out of train")
    return TowerTrainConfig(**{"dataset": dataset, **spec.train, "architecture": spec.type})


def _parse_rerank(raw: dict, where: str) -> RerankSpec:
    raw = dict(raw)
    rerankers = []
    for i, r in enumerate(raw.pop("rerankers", [])):
        if isinstance(r, dict) and "alpha" in r and not isinstance(r["alpha"], list):
            r = {**r, "alpha": [r["alpha"]]}
        spec = from_table(RerankerSpec, r, f"{where}.rerankers[{i}]")
        if bool(spec.model) == bool(spec.train):
            raise ConfigError(f"{where}.rerankers[{i}]: give exactly one of 'model' or 'train'")
        alphas = spec.alpha if isinstance(spec.alpha, list) else [spec.alpha]
        for a in alphas:
            if a != "dev" and not (isinstance(a, (int, float)) and not isinstance(a, bool) and 0 <= a <= 1):
                raise ConfigError(f"{where}.rerankers[{i}].alpha: {a!r} is neither a number in [0, 1] nor 'dev'")
        if spec.train:
            from_table(CrossTrainConfig, spec.train, f"{where}.rerankers[{i}].train")
        from bench.models.rerankers import RERANK_PRECISIONS, RERANK_RUNTIMES

        for name, allowed in (("precision", RERANK_PRECISIONS), ("runtime", RERANK_RUNTIMES)):
            if getattr(spec, name) not in allowed:
                raise ConfigError(f"{where}.rerankers[{i}].{name}: {getattr(spec, name)!r} is not one of {allowed}")
        rerankers.append(dataclasses.replace(spec, alpha=alphas))
    if "threads" in raw:
        raise ConfigError(f"{where}.threads: reranking runs on [measure] threads, like every online stage")
    spec = from_table(RerankSpec, {**raw, "rerankers": rerankers}, where)
    if any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in spec.r):
        raise ConfigError(f"{where}.r: R values must be positive integers, got {spec.r!r}")
    if isinstance(spec.adaptive_step, bool) or not isinstance(spec.adaptive_step, int) or spec.adaptive_step < 0:
        raise ConfigError(f"{where}.adaptive_step: a whole number of pairs >= 0 (0 = no adaptive depth), "
                          f"got {spec.adaptive_step!r}")
    return spec


def read_toml(path: Path | str) -> dict:
    """A TOML file's tables; a missing or malformed file is a ConfigError naming it."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None


@dataclass(frozen=True, kw_only=True)
class SeriesConfig:
    """What a measurement series (scale, filters) shares: the embeddings it measures on (a model over a
    dataset split), K, seed, timing settings, where it writes, and the hash its rows carry."""

    name: str
    dataset: str = "scifact"
    split: str = "test"
    model: str = DEFAULT_MODEL
    max_seq_length: int = 256
    k: int = 10
    seed: int = 0
    measure: MeasureSpec = MeasureSpec()
    results: str = ""  # parquet path; default results/<name>.parquet

    @property
    def results_path(self) -> Path:
        return Path(self.results or f"results/{self.name}.parquet")

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def resolve_dataset_path(raw: dict, config_path: Path) -> dict:
    """A dataset given as a relative path is relative to the config file's folder: one starting with "." always, one
    with a "/" where that folder holds it (else it is a name under the data dir, as `xquad/xquad-mono-de`)."""
    dataset = raw.get("dataset")
    if not isinstance(dataset, str) or Path(dataset).is_absolute():
        return raw
    beside = config_path.parent / dataset
    if dataset.startswith(".") or ("/" in dataset and beside.exists()):
        return {**raw, "dataset": str(beside.resolve())}
    return raw


def load_config(path: Path | str) -> SweepConfig:
    return parse_config(resolve_dataset_path(read_toml(path), Path(path)), str(path))
