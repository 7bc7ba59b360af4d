import json

import pytest

from bench.data import datasets
from bench.data.datasets import DatasetError, load_beir, load_dataset, synthetic_dataset, synthetic_vectors


def write_beir(root, corpus=None, queries=None, qrels=None, split="test"):
    corpus = corpus if corpus is not None else [{"_id": "d1", "title": "T", "text": "alpha"}, {"_id": "d2", "text": "beta"}]
    queries = queries if queries is not None else [{"_id": "q1", "text": "alpha?"}, {"_id": "q2", "text": "beta?"}]
    qrels = qrels if qrels is not None else [("q1", "d1", 1), ("q2", "d2", 1)]
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus) if isinstance(corpus, list) else corpus)
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (root / "qrels" / f"{split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return root


def test_loads_beir_layout(tmp_path):
    ds = load_beir(write_beir(tmp_path / "mini"), "test")
    assert ds.doc_ids == ["d1", "d2"] and ds.doc_texts == ["T alpha", "beta"]
    assert ds.query_ids == ["q1", "q2"] and ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert ds.warnings == []


def test_content_hash_changes_with_content(tmp_path):
    a = load_beir(write_beir(tmp_path / "a"), "test")
    b = load_beir(write_beir(tmp_path / "b", corpus=[{"_id": "d1", "text": "other"}, {"_id": "d2", "text": "beta"}]), "test")
    assert a.content_hash != b.content_hash
    assert a.content_hash == load_beir(tmp_path / "a", "test").content_hash


def test_malformed_json_names_file_and_line(tmp_path):
    root = write_beir(tmp_path / "bad", corpus='{"_id": "d1", "text": "ok"}\n{"_id": "d2", "text": \n')
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:2: malformed JSON"):
        load_beir(root, "test")


def test_duplicate_ids_are_rejected(tmp_path):
    root = write_beir(tmp_path / "dup", corpus=[{"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"}, {"_id": "d1", "text": "c"}])
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:3: duplicate corpus id 'd1' \(first on line 1\)"):
        load_beir(root, "test")


def test_unknown_ids_in_qrels_are_counted_and_dropped(tmp_path):
    root = write_beir(tmp_path / "unk", qrels=[("q1", "d1", 1), ("q1", "nope", 1), ("qX", "d1", 1), ("q2", "d2", 1)])
    ds = load_beir(root, "test")
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert any("1 judged doc ids" in w for w in ds.warnings)
    assert any("1 judged query ids" in w for w in ds.warnings)


def test_empty_corpus_and_empty_split_are_errors(tmp_path):
    with pytest.raises(DatasetError, match="no corpus records"):
        load_beir(write_beir(tmp_path / "e1", corpus=""), "test")
    with pytest.raises(DatasetError, match="no query with a positive judgment"):
        load_beir(write_beir(tmp_path / "e2", qrels=[("q1", "d1", 0)]), "test")
    with pytest.raises(DatasetError, match=r"train\.tsv: missing; splits present: \['test'\]"):
        load_beir(write_beir(tmp_path / "e3"), "train")


def test_bad_qrels_line(tmp_path):
    root = write_beir(tmp_path / "q")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    with pytest.raises(DatasetError, match=r"test\.tsv:2: relevance grade 'high'"):
        load_beir(root, "test")


def test_resolves_by_name_in_data_dir(tmp_path, monkeypatch):
    write_beir(tmp_path / "mini")
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path))
    assert load_dataset("mini", "test").n_docs == 2


def test_offline_download_failure_says_how_to_provide(tmp_path, monkeypatch):
    def no_network(url, filename):
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets.urllib.request, "urlretrieve", no_network)
    with pytest.raises(DatasetError, match="BENCH_DATA_DIR") as info:
        load_dataset("scifact", "test", root=tmp_path)
    assert "scifact.zip" in str(info.value)
    assert not list(tmp_path.glob("*.part"))


def test_synthetic_is_seeded_and_structured():
    a, b = synthetic_dataset(seed=3), synthetic_dataset(seed=3)
    assert a.doc_texts == b.doc_texts and a.query_texts == b.query_texts
    assert a.content_hash != synthetic_dataset(seed=4).content_hash
    for qid, text in zip(a.query_ids, a.query_texts):
        (doc,) = a.qrels[qid]
        assert set(text.split()) <= set(a.doc_texts[a.doc_ids.index(doc)].split())


def test_synthetic_vectors_queries_are_near_their_source():
    base, queries, source = synthetic_vectors(500, 16, 20, seed=1)
    assert (base @ queries.T).argmax(axis=0).tolist() == source.tolist()


def test_a_failed_download_leaves_no_folder_and_names_both_ways_to_give_data(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    root = tmp_path / "fresh"
    with pytest.raises(DatasetError, match=r"pass --data-dir, or set BENCH_DATA_DIR"):
        load_dataset("nosuchset", "test", root=root)
    assert not root.exists()
