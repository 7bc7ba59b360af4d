"""A distractor collection: whole articles drawn in a seeded order from a zstd corpus, appended to a dataset's
corpus (queries and qrels unchanged), through the sweep; a large corpus encoded in resumable chunks."""

import dataclasses
import json

import numpy as np
import pytest
import zstandard

from bench.data.datasets import DatasetError


def write_source(folder, articles: dict[int, int]):
    """corpus.jsonl.zst with `articles` {page: paragraphs}, ids w<page>-<i>."""
    folder.mkdir(parents=True)
    lines = "".join(json.dumps({"_id": f"w{page}-{i}", "title": f"Article {page}", "text": f"paragraph {i} of {page}"})
                    + "\n" for page, n in articles.items() for i in range(n))
    (folder / "corpus.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines.encode()))
    return folder


def test_whole_articles_are_drawn_in_a_seeded_order_and_cached(tmp_path):
    from bench.data.distractors import DistractorSpec, draw

    source = write_source(tmp_path / "wiki", {1: 3, 2: 1, 3: 4, 4: 2, 5: 5})
    spec = DistractorSpec(str(source), paragraphs=5, seed=1)
    ids, texts = draw(spec)
    pages = {i.rsplit("-", 1)[0] for i in ids}
    assert len(ids) >= 5 and all(sum(i.startswith(p + "-") for i in ids) == {"w1": 3, "w2": 1, "w3": 4, "w4": 2, "w5": 5}[p]
                                 for p in pages)  # whole articles only
    assert texts[0].startswith("Article ") and draw(spec) == (ids, texts)  # the same draw (cached)
    assert draw(DistractorSpec(str(source), paragraphs=5, seed=2))[0] != ids or len(pages) == 5
    with pytest.raises(DatasetError, match="fewer than distractors.paragraphs = 100"):
        draw(DistractorSpec(str(source), paragraphs=100))


def test_a_config_adds_distractors_to_the_evaluation_corpus(tiny_model, tmp_path):
    from bench.pipeline.config import load_config, parse_config, ConfigError
    from bench.store.results import read_results
    from bench.run.sweep import run_sweep

    source = write_source(tmp_path / "wiki", {p: 10 for p in range(1, 21)})
    base = load_config("configs/tiny.toml")
    config = dataclasses.replace(base, encoders=[dataclasses.replace(base.encoders[0], model=tiny_model)],
                                 backends=[b for b in base.backends if b.backend == "exact"],
                                 distractors={"source": str(source), "paragraphs": 50, "seed": 0},
                                 results=str(tmp_path / "d.parquet"))
    run_sweep(config)
    rows = read_results(config.results_path)
    assert rows["n_docs"].eq(300 + 50).all()  # five whole articles of ten paragraphs
    assert rows["dataset"].str.endswith("+wiki-50").all() and (rows["recall_at_k"] == 1.0).all()
    plain = dataclasses.replace(config, distractors={}, results=str(tmp_path / "p.parquet"))
    run_sweep(plain)
    plain_rows = read_results(plain.results_path)
    assert set(plain_rows["dataset_hash"]).isdisjoint(rows["dataset_hash"])  # its own cells
    # Judged@10 (ir_measures) per row and per query: unjudged distractors in a top 10 can only lower it
    assert rows["judged_at_10"].notna().all() and rows["q_judged_at_10"].map(len).eq(rows["query_ids"].map(len)).all()
    assert rows["judged_at_10"].max() <= plain_rows["judged_at_10"].max() + 1e-12
    # the same pipeline followed across the two sizes, paired per test query; rendered as the report's section
    from bench.analysis.distractors import size_pairs
    from bench.render.distractors import distractors_section
    (pair,) = size_pairs(rows, plain_rows)
    assert pair.base is not None and pair.base["pipeline_id"] == pair.large["pipeline_id"]
    mean, half, paired = pair.delta()
    assert paired == len(rows["query_ids"].iloc[0]) and mean <= 1e-12  # distractors can only push judged docs down
    text = distractors_section(rows, plain_rows)
    assert "nDCG@10 at 300" in text and "nDCG@10 at 350" in text and "exact" in text
    # models are trained on the dataset's own splits: the distractors never enter training or its model key
    from bench.run.prepare import sweep_splits
    assert sweep_splits(config, distracted=False).dev.content_hash == sweep_splits(plain).dev.content_hash
    assert sweep_splits(config).dev.content_hash != sweep_splits(plain).dev.content_hash
    with pytest.raises(ConfigError, match="distractors: paragraphs must be a positive integer"):
        parse_config({"name": "x", "dataset": "synthetic", "split": "test", "k": [5], "encoders": [{"name": "e"}],
                      "backends": [{"backend": "exact"}], "distractors": {"source": "w", "paragraphs": 0}}, "x.toml")


def test_a_large_corpus_is_encoded_in_resumable_chunks(tiny_model, monkeypatch):
    import bench.models.encoders as encoders
    from bench.core.cache import cache_dir
    from bench.data.datasets import synthetic_dataset

    monkeypatch.setattr(encoders, "CORPUS_CHUNK", 100)
    dataset = synthetic_dataset(n_docs=300, n_queries=5, split="test")
    encoder = encoders.SentenceEncoder(tiny_model, 32)
    whole = encoders.embed_dataset(encoder, dataset).docs
    chunks = sorted((cache_dir() / "corpus_chunks").glob("*.npy"))
    assert len(chunks) == 3
    # a run killed during the third chunk: the whole-corpus entry and that chunk are missing
    for path in [*(cache_dir() / "corpus").glob("*.npy*"), chunks[-1]]:
        path.unlink()
    calls = []
    real = encoder.encode_docs
    monkeypatch.setattr(encoder, "encode_docs", lambda texts, **kw: calls.append(len(texts)) or real(texts, **kw))
    again = encoders.embed_dataset(encoder, dataset)
    assert calls == [100] and np.allclose(again.docs, whole, atol=1e-6)  # only the missing chunk is encoded


def test_articles_named_in_a_tsv_are_never_drawn_and_a_spec_without_exclusions_keys_as_before(tmp_path):
    from bench.data.distractors import DistractorSpec, draw

    source = write_source(tmp_path / "wiki", {1: 3, 2: 1, 3: 4, 4: 2, 5: 5})
    (tmp_path / "paragraphs.tsv").write_text("doc-id\tarticle\tquestions\np000\tarticle_3\t4\np001\tARTICLE_5\t2\n")
    spec = DistractorSpec(str(source), paragraphs=5, seed=1, exclude=str(tmp_path / "paragraphs.tsv"))
    ids, _ = draw(spec)
    assert len(ids) >= 5 and not {i.rsplit("-", 1)[0] for i in ids} & {"w3", "w5"}
    assert DistractorSpec(str(source), 5).key() == {"source": str(source), "paragraphs": 5, "seed": 0}
    (tmp_path / "bad.tsv").write_text("doc-id\ttitle\np000\tArticle 3\n")
    with pytest.raises(DatasetError, match="no 'article' column"):
        draw(DistractorSpec(str(source), paragraphs=2, exclude=str(tmp_path / "bad.tsv")))
