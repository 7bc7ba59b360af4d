"""A stage kind is a description plus its hooks, registered in one place: a toy kind with an output type no other kind
has (word sets) and a backend that takes them run through the tiny sweep, the report and `recommend` with nothing
but its own code and four registry lines (its description, its measuring, its backend's class and listing)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bench.cli import main
from bench.models.encoders import Embeddings
from bench.pipeline.config import BackendSpec, EncoderSpec, load_config
from bench.pipeline.stages import RETRIEVERS
from bench.pipeline.stages.base import FirstStageKind, params, params_name
from bench.run.hooks import HOOKS, Measuring
from bench.run.sweep import run_sweep
from bench.search.indexes import BACKENDS
from bench.search.catalog import CATALOG, Listing
from bench.search.indexes.base import AnnIndex, Neighbors, Params, ParamError
from bench.store.results import read_results


def _words(texts) -> np.ndarray:
    return np.array([frozenset(str(t).lower().split()) for t in texts], dtype=object)


class WordSets:
    """The toy's encoder: each text as its set of lowercased words."""

    output = "words"
    identity = "words"
    max_seq_length = 0
    dim = 0
    mode = "pretrained"
    train_seconds = float("nan")
    frozen_backbone = tokenizer = None
    query_precision = doc_precision = query_runtime = doc_runtime = ""
    device = "cpu"

    def encode_queries(self, texts, batch_size=64):
        return _words(texts)

    def encode_docs(self, texts, batch_size=64, progress=False):
        return _words(texts)

    def query_item(self, text):
        return _words([text])

    def embed_dataset(self, dataset, batch_size=64):
        return Embeddings(self.encode_docs(dataset.doc_texts), self.encode_queries(dataset.query_texts), 0.0, True)

    def online_bytes(self):
        return 0

    def n_parameters(self):
        return 0


@dataclass(frozen=True)
class OverlapBuild(Params):
    pass


class OverlapIndex(AnnIndex):
    """The toy's backend: documents ranked by the words they share with the query."""

    name = "overlap"
    Build = OverlapBuild

    def fit(self, docs, threads: int) -> None:
        self.docs = list(docs)
        self.n = len(self.docs)

    def _fit(self, vectors, threads) -> None:
        raise ParamError("overlap indexes word sets")

    def _set_search(self, k, search) -> None:
        pass

    def _scores(self, words) -> np.ndarray:
        return np.array([len(words & doc) for doc in self.docs], dtype=np.float32)

    def query(self, words) -> np.ndarray:
        return np.argsort(-self._scores(words), kind="stable")[: self.k].astype(np.int64)

    def batch_query(self, items, threads: int) -> Neighbors:
        scores = np.stack([self._scores(words) for words in items])
        ids = np.argsort(-scores, axis=1, kind="stable")[:, : self.k]
        return Neighbors(ids.astype(np.int64), np.take_along_axis(scores, ids, axis=1))

    def size_bytes(self) -> int:
        return sum(len(" ".join(doc)) for doc in self.docs)


@dataclass(frozen=True)
class Overlap(FirstStageKind):
    kind: ClassVar[str] = "overlap"
    output: ClassVar[str] = "words"
    searched: ClassVar[str] = "words"
    backend: str
    build: str

    @classmethod
    def of_row(cls, row) -> "Overlap":
        return cls(row["backend"], row["build_params"])

    def key(self) -> dict:
        return {"kind": self.kind, "backend": self.backend, "build": params(self.build)}

    def name(self) -> str:
        return f"word overlap · {self.backend}" + (f" {params_name(params(self.build))}" if self.build else "")

    def tuned(self) -> dict[str, float]:
        return {}


class OverlapMeasuring(Measuring):
    """How the run measures the toy kind (bench.run.hooks): its encoder and its ground truth."""

    @staticmethod
    def make_encoder(model, max_seq_length, **runs):
        return WordSets()

    @staticmethod
    def ground_truth(measurer, cells, depth):
        index = OverlapIndex()
        index.fit(measurer.embeddings.docs, 1)
        index.set_search(depth)
        exact = measurer.to_documents(index.batch_query(measurer.embeddings.queries, 1), depth).ids
        return exact, lambda cell: exact[:, : cell.k]


def test_a_toy_stage_kind_runs_through_the_sweep_the_report_and_recommend(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(RETRIEVERS, "overlap", Overlap)  # the registry lines: its description, its measuring,
    monkeypatch.setitem(HOOKS, "overlap", OverlapMeasuring)  # its backend (class and listing)
    monkeypatch.setitem(BACKENDS, "overlap", OverlapIndex)
    monkeypatch.setitem(CATALOG, "overlap", Listing("overlap", f"{__name__}:OverlapIndex", input="words"))
    config = load_config("configs/tiny.toml")
    config = dataclasses.replace(config, encoders=[EncoderSpec("words", type="overlap")],
                                 backends=[BackendSpec("overlap")], results=str(tmp_path / "toy.parquet"))
    summary = run_sweep(config)
    rows = read_results(config.results_path)
    assert summary.computed == len(rows) == len(config.k)
    assert (rows["encoder_type"] == "overlap").all() and (rows["recall_at_k"] == 1.0).all()
    assert rows["ndcg_at_10"].between(0, 1).all() and rows["search_p95_ms"].gt(0).all()
    assert main(["report", str(config.results_path), "--out", str(tmp_path / "report.md"), "--plots",
                 str(tmp_path / "plots")]) == 0
    assert "word overlap · overlap" in (tmp_path / "report.md").read_text()
    assert main(["recommend", str(config.results_path), "--p95-ms", "10000", "--memory-mb", "10000"]) == 0
    assert "word overlap" in capsys.readouterr().out
    json.dumps(Overlap.of_row(rows.iloc[0]).key())  # the key is JSON, as pipeline ids hash it
