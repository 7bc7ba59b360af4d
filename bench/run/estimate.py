"""What a sweep will cost, announced before it starts: the work left (models to train, corpora to encode,
cross-encoder pairs to score, cells to measure) with a time estimate from this machine's speeds.

Speeds are measured here and remembered in the cache (`speeds.json`): every finished phase records its rate, so
the next estimate uses this machine's own figures. A rate never measured comes from a quick probe (encoding a few
documents, scoring a few pairs, a training step) or, for cells and model loads, from a stated default.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path


import numpy as np

from bench.core.cache import atomic_write_bytes, cache_dir
from bench.pipeline.stages import kind_of

# Rates never measured on this machine yet: the 2-core reference host's figures (seconds).
DEFAULTS = {"cell_s": 1.0, "cross_train_step_s": 1.6, "tower_full_step_s": 8.0, "tower_heads_s": 10.0,
            "model_load_s": 14.0}  # loading a MiniLM-size encoder and its query runtime here

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Phase:
    what: str
    amount: int
    unit: str
    seconds: float
    basis: str  # where the rate comes from: "measured here", "probe", "default"


class Speeds:
    """Rates measured on this machine, kept in the cache dir."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "speeds.json"
        self.values: dict[str, float] = self._read()
        self.probed: set[str] = set()

    def _read(self) -> dict[str, float]:
        if not self.path.exists():
            return {}
        try:
            values = json.loads(self.path.read_text())
            if not isinstance(values, dict) or not all(isinstance(v, (int, float)) for v in values.values()):
                raise ValueError("not a table of rates")
            return {k: float(v) for k, v in values.items()}
        except (ValueError, OSError) as err:  # a corrupt file only costs the estimate its remembered rates
            log.warning("%s: ignored, not readable (%s); rates are measured again", self.path, err)
            return {}

    def get(self, key: str, probe=None) -> tuple[float, str]:
        if key in self.values:
            return self.values[key], "probe" if key in self.probed else "measured here"
        if probe is not None:
            self.record(key, probe())
            self.probed.add(key)
            return self.values[key], "probe"
        return DEFAULTS[key], "default"

    def record(self, key: str, value: float) -> None:
        if not value or value != value or value <= 0:
            return
        self.values[key] = float(value)
        # what another Speeds of this run recorded meanwhile (the cell measurer's scoring rate) is kept
        merged = {**self._read(), key: float(value)}
        atomic_write_bytes(self.path, lambda tmp: tmp.write_text(json.dumps(merged, indent=1, sort_keys=True)))


def corpus_cached(model_identity: str, corpus_hash: str, passages: list[int] | None = None,
                  max_seq_length: int | None = None) -> bool:
    """Whether the cache holds this model's vectors of this corpus (read from the cache's key records), at
    `max_seq_length` tokens when given (None: the model's own length, whichever it is)."""
    for record in (cache_dir() / "corpus").glob("*.json"):
        parts = json.loads(record.read_text())
        if (parts.get("model") == model_identity and parts.get("corpus") == corpus_hash
                and parts.get("passages") == passages
                and (max_seq_length is None or parts.get("max_seq_length") == max_seq_length)
                and record.with_suffix(".npy").exists()):
            return True
    return False


def cached_pairs(model_identity: str, corpus_hash: str) -> int:
    path = cache_dir() / "cross_scores.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM scores WHERE model=? AND dataset=?",
                          (model_identity, corpus_hash)).fetchone()[0]


def encode_rate_key(model: str, max_seq_length: int | None, doc_precision: str = "fp32",
                    doc_runtime: str = "torch") -> str:
    """The speeds.json key of one document network's encoding rate: a model's size and its sequence length set
    it (all-mpnet-base-v2 at 384 tokens encodes ~15x slower than MiniLM at 256), so each is measured on its own."""
    return f"encode_docs_per_s|{Path(model).name}|{max_seq_length or 'default'}|{doc_precision}|{doc_runtime}"


def probe_docs_per_s(texts: list[str], n: int = 48, model: str | None = None, max_seq_length: int | None = None,
                     doc_precision: str = "fp32", doc_runtime: str = "torch") -> float:
    """Encode a few corpus documents with `model` (default the bundled MiniLM; its first call's overhead excluded)."""
    from bench.models.encoders import DEFAULT_MODEL
    from bench.run.hooks import make_encoder

    encoder = make_encoder("bi", model or DEFAULT_MODEL, max_seq_length, doc_precision=doc_precision,
                           doc_runtime=doc_runtime)
    encoder.encode_docs(texts[:4])
    started = time.perf_counter()
    encoder.encode_docs(texts[:n])
    return n / (time.perf_counter() - started)


def score_rate_key(network: str, max_length: int, precision: str = "fp32", runtime: str = "torch") -> str:
    """The speeds.json key of one cross-encoder variant's scoring rate: its network (a model, or the backbone a trained
    one starts from), length, precision and runtime set it (18 to 150 pairs/s here across the reranker variants)."""
    return f"score_pairs_per_s|{Path(network).name}|{max_length}|{precision}|{runtime}"


def reranker_network(spec, rerankers) -> str:
    """What sets a reranker's speed: its model, or for one the harness trains, the backbone it starts from."""
    from bench.models.encoders import DEFAULT_MODEL

    trained = rerankers.training(spec.name)
    return spec.model or (trained[0].backbone if trained is not None else DEFAULT_MODEL)


def probe_pairs_per_s(model: str, max_length: int, query: str, texts: list[str], n: int = 32,
                      precision: str = "fp32", runtime: str = "torch") -> float:
    """Score a few pairs with `model` (a reranker's model, or the backbone a trained one starts from)."""
    import transformers

    from bench.models.rerankers import CrossEncoderScorer

    transformers.logging.set_verbosity_error()  # a backbone loaded as a scorer reports its new head: not news here
    scorer = CrossEncoderScorer(model, max_length=max_length, precision=precision, runtime=runtime)
    scorer.score([query] * 2, texts[:2])
    started = time.perf_counter()
    scorer.score([query] * n, texts[:n])
    return n / (time.perf_counter() - started)


def train_rate_key(config) -> str:
    """A cross-encoder training step's rate key: the backbone, the pairs per step and their length."""
    pairs = config.batch_queries * (1 + config.negatives)
    return f"cross_train_step_s|{_model_identity(config.backbone)}|pairs={pairs}|max_length={config.max_length}"


def probe_train_step_s(config, query: str, texts: list[str], steps: int = 2) -> float:
    """Seconds per training step of a cross-encoder like `config`'s on this host: its backbone, one step's pairs at
    its max_length, forward, backward and an AdamW step (one warm-up step, then the mean of `steps`)."""
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bench.models.encoders import resolve_model

    transformers.logging.set_verbosity_error()
    path = resolve_model(config.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    pairs = config.batch_queries * (1 + config.negatives)
    docs = [texts[i % len(texts)] for i in range(pairs)]
    took = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        encoded = tokenizer([query] * pairs, docs, truncation="longest_first", max_length=config.max_length,
                            padding=True, return_tensors="pt")
        model(**encoded).logits.sum().backward()
        optimizer.step()
        optimizer.zero_grad()
        took.append(time.perf_counter() - started)
    return float(np.mean(took[1:]))


def render(phases: list[Phase], title: str) -> str:
    total = sum(p.seconds for p in phases)
    lines = [f"{title}: about {duration(total)} on this machine"]
    for p in phases:
        lines.append(f"  {p.what:<72} {p.amount:>9,} {p.unit:<6} ~{duration(p.seconds):>7}  ({p.basis})")
    if not phases:
        lines.append("  nothing to do: every cell is already measured on this host")
    defaults = [p.what for p in phases if p.basis == "default"]
    if defaults:
        share = sum(p.seconds for p in phases if p.basis == "default") / max(total, 1e-9)
        lines.append(f"  {len(defaults)} of {len(phases)} phases ({share:.0%} of the time) rest on a stated default, the "
                     "reference host's rate (marked 'default': nothing measured on this host yet, no probe for it)")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _examples(dataset) -> int:
    from bench.data.splits import positives

    return sum(len(p) for p in positives(dataset).values())


def work_phases(config, splits, resolved: dict, pending: dict, speeds: Speeds, rerankers,
                timed_only: frozenset[str] = frozenset()) -> list[Phase]:
    """The phases left for a sweep: `resolved` encoders by name, `pending` cells by encoder name, `rerankers` the
    sweep's (bench.run.prepare.Rerankers: where each trained reranker lives and what it trains on); `timed_only`: stored
    rerank rows being re-timed (their stage is timed, their pairs are not scored again)."""
    rerank_timed: set[tuple[str, int]] = set()
    dataset = splits.evaluation
    phases: list[Phase] = []

    def docs_per_s(encoder) -> tuple[float, str]:
        """The rate of this document network (model, length, precision, runtime): measured here, else probed.
        A tower not trained yet is probed through its backbone (the same network size)."""
        spec = encoder.spec
        return speeds.get(encoder.encode_rate_key(), lambda: probe_docs_per_s(
            dataset.doc_texts, model=encoder.network, max_seq_length=spec.max_seq_length,
            doc_precision=spec.doc_precision, doc_runtime=spec.doc_runtime))

    def pairs_per_s(network: str, max_length: int = 192, precision: str = "fp32",
                    runtime: str = "torch") -> tuple[float, str]:
        return speeds.get(score_rate_key(network, max_length, precision, runtime), lambda: probe_pairs_per_s(
            network, max_length, dataset.query_texts[0], dataset.doc_texts, precision=precision, runtime=runtime))

    def reranker_rate(name: str) -> tuple[float, str]:
        spec = reranker_specs[name]
        return pairs_per_s(reranker_network(spec, rerankers), spec.max_length, spec.precision, spec.runtime)

    reranker_specs = {r.name: r for r in config.rerank.rerankers}
    encoding: set = set()  # (model identity, passages) planned once: heads towers share their backbone's vectors
    training: set = set()  # reranker model folders planned to train (variants of one model share it)
    teacher_scored: set = set()
    reranked: dict[str, dict] = {}  # reranker -> pairs already cached and the (first stage, R) lists it scores
    for name, encoder in resolved.items():
        cells = pending.get(name, [])
        if not cells:
            continue
        tower = encoder.tower
        trained = tower is None or (Path(encoder.model) / "training.json").exists()
        if not trained:
            steps = _examples(encoder.splits.train) // tower.batch_size * tower.epochs
            key = "tower_heads_s" if tower.mode == "heads" else "tower_full_step_s"
            rate, basis = speeds.get(key)
            phases.append(Phase(f"train {name} ({tower.architecture}, {tower.mode})", max(steps, 1), "steps",
                                rate if tower.mode == "heads" else rate * steps, basis))
            if tower.kd != "none" and (tower.teacher, tower.kd_depth) not in teacher_scored:
                teacher_scored.add((tower.teacher, tower.kd_depth))
                pairs = len(encoder.splits.train.query_ids) * tower.kd_depth
                rate, basis = pairs_per_s(_default_model())
                phases.append(Phase(f"score teacher pairs for {name}", pairs, "pairs", pairs / rate, basis))
        if kind_of(encoder.spec.type).output != "text":
            rate, basis = speeds.get("model_load_s")
            phases.append(Phase(f"load the model of {name}", 1, "models", rate, basis))
            chunking = encoder.spec.chunking
            heads = tower is not None and tower.mode == "heads"
            if tower is None:
                identity = encoder.identity
            else:  # a model not trained yet has no identity (so nothing cached); heads read the backbone's vectors
                identity = _model_identity(tower.backbone if heads else encoder.model) if heads or trained else None
            passages = [chunking.tokens, chunking.stride] if chunking else None
            length = (encoder.dense or encoder).spec.max_seq_length  # a hybrid encodes with its dense side's
            planned = identity is not None and (identity, str(passages), length) in encoding
            if not planned and (identity is None or not corpus_cached(identity, dataset.corpus_hash, passages, length)):
                encoding.add((identity, str(passages), length))
                n = dataset.n_docs if chunking is None else int(
                    sum(max(1.0, 1.3 * len(t.split()) / chunking.stride) for t in dataset.doc_texts))
                rate, basis = docs_per_s(encoder)
                phases.append(Phase(f"encode corpus for {name}" + (" (passages, estimated)" if chunking else ""),
                                    n, "texts", n / rate, basis))
        children = [ch for c in cells for ch in c.children]
        scoring = [ch for ch in children if ch.cell_id not in timed_only]  # re-timed children score nothing
        for ch in children:
            if ch.cell_id in timed_only and (ch.reranker, ch.r) not in rerank_timed:
                rerank_timed.add((ch.reranker, ch.r))  # once per run, reranker and R (Rerankers.latency)
                pairs = config.rerank.latency_queries * ch.r
                rate, basis = reranker_rate(ch.reranker)
                phases.append(Phase(f"time {ch.reranker} at R={ch.r} (re-timed rows)", pairs, "pairs", pairs / rate,
                                    basis))
        for reranker in dict.fromkeys(ch.reranker for ch in scoring):
            spec = reranker_specs[reranker]
            depth = max(ch.r for ch in scoring if ch.reranker == reranker)
            trained = rerankers.training(reranker)
            if trained is None:
                scored = cached_pairs(_scores_key(spec.model, spec), dataset.corpus_hash)
            else:
                train_config, train_splits, model = trained
                if (model / "training.json").exists():
                    scored = cached_pairs(_scores_key(str(model), spec), dataset.corpus_hash)
                else:
                    scored = 0
                    if model not in training:  # one training per model folder: variants of one model train once
                        training.add(model)
                        # as bench.models.train.cross counts them: judged pairs, title and sentence pseudo-queries
                        examples = (_examples(train_splits.train) + train_config.title_queries
                                    + train_config.sentence_queries)
                        steps = -(-examples // train_config.batch_queries) * train_config.epochs
                        done = _steps_done(model)
                        rate, basis = speeds.get(train_rate_key(train_config), lambda: probe_train_step_s(
                            train_config, dataset.query_texts[0], dataset.doc_texts))
                        what = f"train {reranker} (cross-encoder, {train_config.loss})" + (
                            f", resuming after step {done:,} of {steps:,}" if done else "")
                        phases.append(Phase(what, max(steps - done, 0), "steps", rate * max(steps - done, 0), basis))
                        # then its dev queries' top-dev_r, scored in fp32 (Platt calibration and the fusion weight)
                        pairs = len(train_splits.dev.query_ids) * train_config.dev_r
                        rate, basis = pairs_per_s(train_config.backbone, train_config.max_length)
                        phases.append(Phase(f"calibrate {reranker} on dev (fp32)", pairs, "pairs", pairs / rate,
                                            basis))
            reranked.setdefault(reranker, {"scored": scored, "lists": []})["lists"].append((encoder, depth))
        rows = len(cells) + len(children)
        rate, basis = speeds.get("cell_s")
        phases.append(Phase(f"measure cells of {name}", rows, "rows", rows * rate, basis))
    for reranker, work in reranked.items():
        listed, distinct = distinct_pairs(len(dataset.query_ids), work["lists"])
        pairs = max(0, distinct - work["scored"])
        if pairs:
            rate, basis = reranker_rate(reranker)
            lists = work["lists"]
            over = (f"{lists[0][0].spec.name}'s top-{lists[0][1]}" if len(lists) == 1 else
                    f"the top-{max(d for _, d in lists)} of {len(lists)} first stages ({listed:,} listed, distinct "
                    "estimated by bench.run.estimate.NOVEL_SHARE)")
            cached = f", less {work['scored']:,} cached" if work["scored"] else ""
            phases.append(Phase(f"score pairs: {reranker} over {over}{cached}", pairs, "pairs", pairs / rate, basis))
    return phases


# The share of a reranked first stage's (query, document) pairs that the lists scored before it do not hold already
# (the score cache scores a pair once): measured with MiniLM exact search, BM25 and their RRF and convex fusions at
# depth 1000, on SciFact (502 test+dev queries) and NFCorpus (647) at R = 20, 100 and 200 (/tmp probe, 2026-12-06):
# BM25 after dense 0.70-0.77 of its list new; a hybrid after both its sides 0.01-0.20. Estimated distinct pairs: SciFact
# R = 200 195,780 against 174,512 counted (+12%), NFCorpus R = 20 25,233 against 25,672 (-2%).
NOVEL_SHARE = {"first": 1.0, "other": 0.75, "hybrid of listed sides": 0.10}


def distinct_pairs(n_queries: int, lists: list) -> tuple[int, int]:
    """(pairs listed, distinct pairs estimated) of one reranker over first stages' top-R lists, `lists` as
    (resolved encoder, R): a hybrid's list counts at the hybrid share when its dense side and a text first stage are
    listed too (its list is mostly theirs), every other list after the first at the "other" share."""
    ordered = sorted(lists, key=lambda item: item[0].dense is not None)  # the hybrids' sides first
    names = {encoder.spec.name for encoder, _ in ordered}
    text_listed = any(kind_of(encoder.spec.type).output == "text" for encoder, _ in ordered)
    listed = distinct = 0.0
    for position, (encoder, depth) in enumerate(ordered):
        pairs = n_queries * depth
        if position == 0:
            share = NOVEL_SHARE["first"]
        elif encoder.dense is not None and encoder.dense.spec.name in names and text_listed:
            share = NOVEL_SHARE["hybrid of listed sides"]
        else:
            share = NOVEL_SHARE["other"]
        listed += pairs
        distinct += share * pairs
    return int(listed), int(round(distinct))


def _default_model() -> str:
    from bench.models.encoders import DEFAULT_MODEL

    return DEFAULT_MODEL


def _steps_done(model: Path) -> int:
    """Steps a resumable training of `model` has checkpointed (bench.models.train.cross writes progress.json beside it)."""
    progress = model.with_name(model.name + ".partial") / "progress.json"
    try:
        return int(json.loads(progress.read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


def _scores_key(model: str, spec) -> str:
    """What a reranker spec's scores are cached under, as CrossEncoderScorer's `scores_key`."""
    from bench.models.rerankers import reranker_identity, scores_key

    return scores_key(reranker_identity(_model_identity(model), spec.max_length, spec.precision, spec.runtime),
                      spec.precision, spec.runtime)


def _model_identity(model: str) -> str:
    from bench.models.encoders import model_identity

    return model_identity(model)


