"""The rerank stage: a cross-encoder scores (query, doc) pairs of the first stage's top-R.

Scores are cached on disk (sqlite) by model identity, dataset, query id and doc id, so an R grid
costs one pass at the largest R and a re-run costs nothing. Fusion mixes the cross-encoder with the
first-stage score: alpha * cross + (1 - alpha) * first, both min-max normalized per query.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.core.cache import cache_dir, cache_dir as folder, checked, content_key, write_digest
from bench.data.datasets import Dataset
from bench.models.encoders import model_identity, onnx_session, resolve_model
from bench.search.indexes import Neighbors, ParamError
from bench.core.env import int8_kernels

log = logging.getLogger(__name__)


RERANK_RUNTIMES = ("torch", "onnxruntime")
RERANK_PRECISIONS = ("fp32", "int8")  # int8: dynamic quantization of the Linear layers (torch's, or ONNX Runtime's)


class CrossEncoderScorer:
    """Any Hugging Face sequence-classification model (a sentence-transformers CrossEncoder saves as one), run as
    a variant: `runtime` torch or ONNX Runtime (the model exported once, cached by identity), `precision` fp32 or
    int8 (dynamic quantization: activation ranges are taken per call, so a variant is scored as it is served, one
    query's pairs per call: see `cross_scores`), `max_length` tokens per pair.

    The score is the logit of the single label (or of the last label for multi-label heads). A variant is another
    model identity (`identity`), so its scores are cached apart; the fp32 torch identity is the one rows have
    always carried.
    """

    def __init__(self, model: str, max_length: int = 256, batch_size: int = 32, device: str = "cpu",
                 precision: str = "fp32", runtime: str = "torch"):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if precision not in RERANK_PRECISIONS:
            raise ParamError(f"reranker precision must be one of {RERANK_PRECISIONS}, got {precision!r}")
        if runtime not in RERANK_RUNTIMES:
            raise ParamError(f"reranker runtime must be one of {RERANK_RUNTIMES}, got {runtime!r}")
        if (precision, runtime) != ("fp32", "torch") and device != "cpu":
            raise ParamError("reranker int8 and ONNX Runtime variants run on the CPU only")
        path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
        self.device, self.max_length, self.batch_size = device, max_length, batch_size
        self.precision, self.runtime = precision, runtime
        self.identity = reranker_identity(model_identity(model), max_length, precision, runtime)
        self.scores_key = scores_key(self.identity, precision, runtime)
        self._torch = torch
        self._onnx = None
        if runtime == "onnxruntime":
            self._onnx = OnnxCrossEncoder(self.model, self.tokenizer, model_identity(model), precision)
        elif precision == "int8":
            from bench.models.encoders import at_precision

            self.model = at_precision(self.model, "int8")

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def score(self, queries: list[str], docs: list[str]) -> np.ndarray:
        """Scores of the pairs (queries[i], docs[i]), in batches of `batch_size`."""
        out = []
        with self._torch.inference_mode():
            for start in range(0, len(queries), self.batch_size):
                batch = self.tokenizer(queries[start:start + self.batch_size], docs[start:start + self.batch_size],
                                       truncation="longest_first", max_length=self.max_length, padding=True,
                                       return_tensors="pt" if self._onnx is None else "np")
                if self._onnx is not None:
                    out.append(self._onnx.logits(batch)[:, -1].astype(np.float32))
                else:
                    out.append(self.model(**batch.to(self.device)).logits[:, -1].float().cpu().numpy())
        return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def reranker_identity(model_identity: str, max_length: int, precision: str = "fp32", runtime: str = "torch") -> str:
    """A variant's identity: the model's, its max_length, and its precision and runtime where not fp32 torch."""
    return (f"{model_identity}|max_length={max_length}" + ("" if precision == "fp32" else f"|{precision}")
            + ("" if runtime == "torch" else f"|{runtime}"))


def scores_key(identity: str, precision: str, runtime: str) -> str:
    """What a variant's scores are cached under: its identity, and for int8 the kernels that ran on this host
    (bench.core.env.int8_kernels: AVX2's saturating u8s8 path scores otherwise than VNNI's), so a host of another
    instruction set scores its pairs again rather than reusing another's."""
    if precision != "int8":
        return identity
    return f"{identity}|{int8_kernels(runtime)}"


class OnnxCrossEncoder:
    """A sequence-classification model exported to ONNX (torch's dynamo exporter; dynamic batch and length), cached
    by model identity, with an int8 copy from ONNX Runtime's dynamic quantization when asked; run by ONNX Runtime
    on the CPU with as many intra-op threads as torch has."""

    def __init__(self, model, tokenizer, identity: str, precision: str):
        self.inputs = [name for name in ("input_ids", "attention_mask", "token_type_ids")
                       if name in tokenizer("a", "b", return_tensors="np")]
        key = content_key({"model": identity, "exporter": "torch.onnx dynamo", "inputs": self.inputs, "kind": "cross"})
        self.fp32 = folder() / "onnx" / f"cross-{key}.onnx"
        if not self.fp32.exists() or not checked(self.fp32, reads=lambda p: p.stat().st_size > 0):
            self._export(model, tokenizer)
        self.path = self.fp32
        if precision == "int8":
            self.path = self.fp32.with_name(self.fp32.stem + "-int8.onnx")
            if not self.path.exists() or not checked(self.path, reads=lambda p: p.stat().st_size > 0):
                self._quantize()
        self._sessions: dict[int, object] = {}

    def _export(self, model, tokenizer) -> None:
        import torch


        example = tokenizer(["a query", "a second query"], ["a document", "a second, longer document"],
                            padding=True, return_tensors="pt")
        batch, length = torch.export.Dim("batch"), torch.export.Dim("length")

        class Logits(torch.nn.Module):
            def __init__(self, network):
                super().__init__()
                self.network = network

            def forward(self, input_ids, attention_mask, token_type_ids=None):
                extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
                return self.network(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

        self.fp32.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.fp32.with_name(self.fp32.name + ".partial")
        with torch.no_grad():
            torch.onnx.export(Logits(model).eval(), tuple(example[n] for n in self.inputs), str(tmp),
                              dynamo=True, input_names=self.inputs, output_names=["logits"],
                              dynamic_shapes={n: {0: batch, 1: length} for n in self.inputs},
                              optimize=True, verbose=False, external_data=False)
        tmp.replace(self.fp32)
        write_digest(self.fp32)

    def _quantize(self) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic


        tmp = self.path.with_name(self.path.name + ".partial.onnx")
        quantize_dynamic(str(self.fp32), str(tmp), weight_type=QuantType.QInt8)
        tmp.replace(self.path)
        write_digest(self.path)

    def logits(self, batch) -> np.ndarray:
        session = onnx_session(self.path, self._sessions)
        return session.run(None, {n: np.asarray(batch[n], dtype=np.int64) for n in self.inputs})[0]


class ScoreCache:
    """(model, dataset, query id, doc id) -> score, in a sqlite file under the cache dir."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "cross_scores.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = self._open()
        self.db.execute("CREATE TABLE IF NOT EXISTS scores (model TEXT, dataset TEXT, qid TEXT, did TEXT, score REAL,"
                        " PRIMARY KEY (model, dataset, qid, did))")

    def _open(self) -> sqlite3.Connection:
        """The score database, checked (sqlite's quick_check): a corrupt file is named, set aside as
        `<name>.corrupt` and started afresh (its pairs are scored again)."""
        try:
            db = sqlite3.connect(self.path)
            if db.execute("PRAGMA quick_check").fetchone()[0] == "ok":
                return db
            db.close()
            why = "sqlite quick_check failed"
        except sqlite3.DatabaseError as err:
            why = str(err)
        log.warning("%s: score cache is corrupt (%s); moved to %s.corrupt, pairs are scored again", self.path, why,
                    self.path.name)
        self.path.replace(self.path.with_name(self.path.name + ".corrupt"))
        return sqlite3.connect(self.path)

    def get(self, model: str, dataset: str, qid: str) -> dict[str, float]:
        rows = self.db.execute("SELECT did, score FROM scores WHERE model=? AND dataset=? AND qid=?",
                               (model, dataset, qid))
        return dict(rows.fetchall())

    def put(self, model: str, dataset: str, rows: list[tuple[str, str, float]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?)",
                                [(model, dataset, q, d, float(s)) for q, d, s in rows])


def cross_scores(scorer: CrossEncoderScorer, cache: ScoreCache, dataset: Dataset, ids: np.ndarray,
                 r: int, chunk: int = 256) -> tuple[list[np.ndarray], int]:
    """Cross-encoder scores of each query's top-`r` ids (aligned with ids[:, :r], NaN for -1 slots).

    Only pairs missing from the cache are scored, as served: each call holds one query's pairs (a dynamically
    quantized variant takes its activation ranges per call, so pairs batched across queries would score otherwise);
    returns (scores per query, pairs scored now).
    """
    corpus_key = dataset.corpus_hash
    known = [cache.get(scorer.scores_key, corpus_key, qid) for qid in dataset.query_ids]
    missing = [(qi, dataset.doc_ids[j]) for qi, row in enumerate(ids[:, :r]) for j in row
               if j >= 0 and dataset.doc_ids[j] not in known[qi]]
    missing = list(dict.fromkeys(missing))
    text = dict(zip(dataset.doc_ids, dataset.doc_texts))
    for start in tqdm(range(0, len(missing), chunk), desc=f"cross-encoder pairs ({len(missing)})", unit="chunk",
                      disable=not missing):
        part = missing[start:start + chunk]
        scores = np.concatenate([scorer.score([dataset.query_texts[qi]] * len(group), [text[did] for did in group])
                                 for qi, group in _by_query(part)]) if part else np.empty(0)
        cache.put(scorer.scores_key, corpus_key, [(dataset.query_ids[qi], did, s) for (qi, did), s in zip(part, scores)])
        for (qi, did), s in zip(part, scores):
            known[qi][did] = float(s)
    per_query = [np.array([known[qi][dataset.doc_ids[j]] if j >= 0 else np.nan for j in row], dtype=np.float64)
                 for qi, row in enumerate(ids[:, :r])]
    return per_query, len(missing)


def _by_query(pairs: list[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    """Consecutive (query index, doc id) pairs grouped by query, in order (`missing` lists each query's together)."""
    groups: list[tuple[int, list[str]]] = []
    for qi, did in pairs:
        if groups and groups[-1][0] == qi:
            groups[-1][1].append(did)
        else:
            groups.append((qi, [did]))
    return groups


def _minmax(x: np.ndarray) -> np.ndarray:
    span = np.nanmax(x) - np.nanmin(x) if len(x) else 0.0
    return (x - np.nanmin(x)) / span if span > 0 else np.zeros_like(x)


# The fusion weights a reranker's alpha is chosen from on dev queries (`alpha = "dev"`).
ALPHAS = tuple(round(a, 2) for a in np.linspace(0, 1, 21))


def rerank(first: Neighbors, r: int, cross: list[np.ndarray], alpha: float = 1.0) -> np.ndarray:
    """First-stage ids with each query's top-`r` re-ordered by alpha * cross + (1 - alpha) * first-stage.

    Both scores are min-max normalized per query over the R candidates; ties keep the first-stage
    order, so alpha = 0 reproduces the first stage exactly. Ranks below R keep their order.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ParamError(f"fusion alpha must be in [0, 1], got {alpha}")
    if r > first.ids.shape[1]:
        raise ParamError(f"R ({r}) must be <= K ({first.ids.shape[1]})")
    out = first.ids.copy()
    for qi, scores in enumerate(cross):
        valid = first.ids[qi, :r] >= 0
        n = int(valid.sum())
        fused = alpha * _minmax(scores[:n]) + (1 - alpha) * _minmax(first.scores[qi, :n].astype(np.float64))
        out[qi, :n] = first.ids[qi, :n][np.argsort(-fused, kind="stable")]
    return out


def time_rerank(scorer: CrossEncoderScorer, dataset: Dataset, ids: np.ndarray, r: int,
                queries: list[int], threads: int, depth: np.ndarray | None = None, step: int = 0) -> np.ndarray:
    """Wall milliseconds of scoring each sampled query's top-`r` pairs (uncached: the online cost); with `depth`,
    query i's top depth[i] instead, in calls of `step` pairs (0: one call), as an adaptive depth serves them."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    text = dict(zip(dataset.doc_ids, dataset.doc_texts))
    try:
        qi0 = queries[0]
        scorer.score([dataset.query_texts[qi0]] * 2, [text[dataset.doc_ids[j]] for j in ids[qi0, :2]])  # warmup
        times = []
        for qi in queries:
            n = r if depth is None else int(depth[qi])
            docs = [text[dataset.doc_ids[j]] for j in ids[qi, :n] if j >= 0]
            calls = [docs[i:i + step] for i in range(0, len(docs), step)] if step > 0 else [docs]
            start = time.perf_counter()
            for part in calls:
                scorer.score([dataset.query_texts[qi]] * len(part), part)
            times.append((time.perf_counter() - start) * 1e3)
        return np.array(times)
    finally:
        torch.set_num_threads(saved)
