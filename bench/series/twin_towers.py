"""The design note's twin-tower claim on XQuAD, like for like (issue 42): heads over frozen vectors, a bi-encoder
against a twin tower from the same start, and a twin whose towers start from different encoders.

XQuAD has test queries only: `[protocol] groups` splits each language's questions by article into dev, train and test
(no article in two splits; bench.data.splits.split_by_groups), the same articles in every language. The heads train on
the train questions of every language at once (bench.models.train.heads), the number of epochs is chosen per system
on the dev questions (bench.analysis.multilingual.chosen_checkpoints: the fewest epochs not worse than the dev-best;
0 = untrained), and only the chosen checkpoint is evaluated on test. Search is exact (all paragraphs of the language's
corpus, train articles' included), so the figures are the encoders' alone.

`python -m bench xquad-twin configs/xquad/twin.toml` writes one row per (system, language, split, epochs, question)
to its results file (rewritten whole: vectors are cached, the rest takes a minute) and prints the comparison.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.analysis.multilingual import chosen_checkpoints
from bench.core.cache import atomic_write_bytes
from bench.core.env import run_metadata
from bench.data.metrics import per_query_quality
from bench.data.splits import Protocol, QuerySplits, load_splits
from bench.models.encoders import embed_dataset
from bench.models.train.heads import ARCHITECTURES, Heads, HeadsTraining, train_heads
from bench.pipeline.config import ConfigError, from_table, read_toml
from bench.run.hooks import make_encoder

log = logging.getLogger(__name__)
SETTINGS = ("mono", "cross")


@dataclass(frozen=True)
class TwinEncoder:
    """A frozen encoder whose vectors the heads read."""

    name: str
    model: str
    max_seq_length: int | None = None


@dataclass(frozen=True)
class TwinSystem:
    """Heads over encoders: `query` and `document` name encoders (the same one for a bi-encoder)."""

    name: str
    architecture: str
    query: str
    document: str


@dataclass(frozen=True)
class TwinConfig:
    name: str
    languages: list[str]
    encoders: list[TwinEncoder]
    systems: list[TwinSystem]
    setting: str = "cross"
    protocol: Protocol = field(default_factory=lambda: Protocol(groups="xquad/paragraphs.tsv", train_fraction=0.5))
    train: HeadsTraining = HeadsTraining()
    learning_rates: list[float] = field(default_factory=lambda: [1e-3])  # each trained, the one to keep chosen on dev
    results: str = ""

    @property
    def results_path(self) -> Path:
        return Path(self.results or f"results/{self.name}.parquet")

    def dataset(self, language: str) -> str:
        return f"xquad/xquad-{self.setting}-{language}"

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def load_twin_config(path: Path | str) -> TwinConfig:
    """The config at `path`; a bad key or value is a ConfigError naming the file and key."""
    raw = dict(read_toml(path))
    where = str(path)
    try:
        encoders = [from_table(TwinEncoder, e, f"{where}: encoders[{i}]") for i, e in enumerate(raw.pop("encoders", []))]
        systems = [from_table(TwinSystem, s, f"{where}: systems[{i}]") for i, s in enumerate(raw.pop("systems", []))]
        protocol = from_table(Protocol, raw.pop("protocol"), f"{where}: [protocol]") if "protocol" in raw else None
        train = dict(raw.pop("train", {}))
        if "checkpoints" in train:
            train["checkpoints"] = tuple(train["checkpoints"])
        rates = train.pop("lr", [1e-3])
        rates = rates if isinstance(rates, list) else [rates]
        trainings = [from_table(HeadsTraining, {**train, "lr": rate}, f"{where}: [train]") for rate in rates]
        config = from_table(TwinConfig, {**raw, "encoders": encoders, "systems": systems, "train": trainings[0],
                                         "learning_rates": rates,
                                         **({"protocol": protocol} if protocol else {})}, where)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None
    names = {e.name for e in config.encoders}
    if config.setting not in SETTINGS:
        raise ConfigError(f"{where}: setting must be one of {SETTINGS}, got {config.setting!r}")
    if not config.protocol.groups or not config.protocol.train_fraction:
        raise ConfigError(f"{where}: [protocol] needs groups and a train_fraction (train questions split by article)")
    if not config.languages or not config.systems:
        raise ConfigError(f"{where}: languages and [[systems]] must not be empty")
    for system in config.systems:
        if system.architecture not in ARCHITECTURES:
            raise ConfigError(f"{where}: systems '{system.name}': architecture must be one of {ARCHITECTURES}")
        for side in (system.query, system.document):
            if side not in names:
                raise ConfigError(f"{where}: systems '{system.name}': no encoder named '{side}' (have {sorted(names)})")
        if system.architecture == "bi" and system.query != system.document:
            raise ConfigError(f"{where}: systems '{system.name}': a bi-encoder has one encoder for both sides")
    if len({s.name for s in config.systems} | names) != len(config.systems) + len(names):
        raise ConfigError(f"{where}: system and encoder names must be distinct")
    return config


@dataclass
class _Language:
    """One language's splits and each encoder's vectors of them."""

    splits: QuerySplits
    docs: dict[str, np.ndarray] = field(default_factory=dict)
    queries: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (encoder, split) -> vectors


def _vectors(config: TwinConfig, data_root: Path | None) -> dict[str, _Language]:
    out = {}
    encoders = {enc.name: make_encoder("bi", enc.model, enc.max_seq_length) for enc in config.encoders}  # loaded once
    for language in config.languages:
        splits = load_splits(config.dataset(language), data_root, config.protocol)
        if splits.train is None or splits.dev is None:
            raise ConfigError(f"{config.dataset(language)}: the protocol leaves no train or dev questions")
        entry = _Language(splits)
        for enc in config.encoders:
            encoder = encoders[enc.name]
            for split in ("train", "dev", "test"):
                vectors = embed_dataset(encoder, getattr(splits, split))
                entry.docs[enc.name] = vectors.docs
                entry.queries[(enc.name, split)] = vectors.queries
        out[language] = entry
    return out


def _quality(query_vectors: np.ndarray, doc_vectors: np.ndarray, dataset) -> pd.Series:
    """nDCG@10 per question of exact search (inner product of normalized vectors)."""
    scores = query_vectors @ doc_vectors.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    return per_query_quality(top, dataset)["ndcg_at_10"]


def _rows(system: str, language: str, split: str, checkpoint: tuple[int, float | None], quality: pd.Series) -> list[dict]:
    """One row per question; `checkpoint`: (epochs, learning rate; None when nothing was trained)."""
    epochs, lr = checkpoint
    return [{"system": system, "language": language, "split": split, "epochs": epochs, "lr": lr, "query_id": query,
             "ndcg_at_10": float(value)} for query, value in quality.items()]


def run_twin(config: TwinConfig, data_root: Path | None = None) -> pd.DataFrame:
    """Train, choose on dev, evaluate on test; write and return the rows."""
    started = time.perf_counter()
    data = _vectors(config, data_root)
    encoders = {e.name: e for e in config.encoders}
    dev_rows, heads_of, about = [], {}, {}
    for enc in config.encoders:  # each encoder alone: nothing trained
        about[enc.name] = {"architecture": "none", "query_model": enc.model, "document_model": enc.model,
                           "train_pairs": 0, "train_seconds": 0.0}
        for language, entry in data.items():
            dev_rows += _rows(enc.name, language, "dev", (0, None), _quality(entry.queries[(enc.name, "dev")],
                                                                      entry.docs[enc.name], entry.splits.dev))
    for system in config.systems:
        queries, docs, pairs, offset_q, offset_d = [], [], [], 0, 0
        for entry in data.values():  # every language's train questions, one pool
            train = entry.splits.train
            doc_row = {d: i for i, d in enumerate(train.doc_ids)}
            for qi, query in enumerate(train.query_ids):
                pairs += [(offset_q + qi, offset_d + doc_row[d]) for d, g in train.qrels[query].items() if g > 0]
            queries.append(entry.queries[(system.query, "train")])
            docs.append(entry.docs[system.document])
            offset_q += len(train.query_ids)
            offset_d += len(train.doc_ids)
        clock = time.perf_counter()
        heads = {}
        for rate in config.learning_rates:  # the untrained start once, then each rate's checkpoints
            trained = train_heads(system.architecture, np.vstack(queries), np.vstack(docs), pairs,
                                  dataclasses.replace(config.train, lr=rate))
            heads.update({(epochs, rate if epochs else None): head for epochs, head in trained.items()})
        heads_of[system.name] = heads
        about[system.name] = {"architecture": system.architecture, "query_model": encoders[system.query].model,
                              "document_model": encoders[system.document].model, "train_pairs": len(pairs),
                              "train_seconds": time.perf_counter() - clock}
        log.info("%s: %d training pairs, %.1f s", system.name, len(pairs), about[system.name]["train_seconds"])
        for checkpoint, head in heads.items():
            for language, entry in data.items():
                dev_rows += _rows(system.name, language, "dev", checkpoint,
                                  _project_quality(head, entry, system, "dev"))
    dev = pd.DataFrame(dev_rows)
    chosen = chosen_checkpoints(dev)
    test_rows = []
    systems = {system.name: system for system in config.systems}
    for name, checkpoint in chosen.items():
        for language, entry in data.items():
            if name in heads_of:
                quality = _project_quality(heads_of[name][checkpoint], entry, systems[name], "test")
            else:
                quality = _quality(entry.queries[(name, "test")], entry.docs[name], entry.splits.test)
            test_rows += _rows(name, language, "test", checkpoint, quality)
    keys = zip(dev["system"], dev["epochs"], dev["lr"])
    frame = pd.concat([dev.assign(chosen=[chosen[s] == (e, None if pd.isna(r) else r) for s, e, r in keys]),
                       pd.DataFrame(test_rows).assign(chosen=True)], ignore_index=True)
    frame = frame.join(pd.DataFrame.from_dict(about, orient="index"), on="system")
    frame = frame.assign(setting=config.setting, config=config.name, dev_source=next(iter(data.values())).splits.dev_source,
                         **run_metadata(config.config_hash()))
    path = config.results_path
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, lambda tmp: frame.to_parquet(tmp, index=False))
    log.info("%s: %d rows in %.0f s", path, len(frame), time.perf_counter() - started)
    return frame


def _project_quality(head: Heads, entry: _Language, system: TwinSystem, split: str) -> pd.Series:
    return _quality(head.project(entry.queries[(system.query, split)], "query"),
                    head.project(entry.docs[system.document], "document"), getattr(entry.splits, split))
