"""Bad inputs get one line naming the file, section or key, exit 2, before any expensive work."""

import pytest

from bench.cli import main


def _config(tmp_path, old: str, new: str):
    text = open("configs/tiny.toml").read()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("old, new, says", [
    ('model = "sentence-transformers/all-MiniLM-L6-v2"', 'model = "nosuch-org/nosuch-model"',
     "bad.toml: encoder 'minilm': model 'nosuch-org/nosuch-model' is neither a local folder nor in the Hugging Face "
     "cache, and the hub is offline"),
    ("build = { nlist = [8] }", "build = { nlist = [1000] }",
     "bad.toml: backends[2].build: faiss_ivf: nlist (1000) must be between 1 and the number of vectors (300)"),
    ("k = [5, 20]", "k = [5, 5000]", "bad.toml: k: K (5000) exceeds the corpus size (300) of 'synthetic'"),
    ('backend = "hnsw"', 'backend = "hnws"', "bad.toml: backends[3].backend: unknown backend 'hnws' (did you mean 'hnsw'?)"),
])
def test_a_bad_setting_is_one_line_naming_file_and_key(tmp_path, capsys, monkeypatch, old, new, says):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _config(tmp_path, old, new)
    assert main(["run", str(path), "--results", str(tmp_path / "r.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "r.parquet").exists()  # nothing written


@pytest.mark.parametrize("content, says", [(None, "no rows"), ("foreign", "not a results file of this kind")])
def test_summary_and_recommend_on_an_empty_or_foreign_file(tmp_path, capsys, content, says):
    import pandas as pd
    import pyarrow.parquet as pq

    from bench.store.results import SCHEMA

    path = tmp_path / "r.parquet"
    if content is None:
        pq.write_table(SCHEMA.empty_table(), path)
    else:
        pd.DataFrame({"a": [1, 2]}).to_parquet(path)
    for command in (["summary", str(path)], ["recommend", str(path), "--p95-ms", "5", "--memory-mb", "5"],
                    ["contributions", str(path)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err


def test_a_bom_in_qrels_and_corpus_is_read_as_text(tmp_path):
    from bench.data.datasets import load_dataset

    root = tmp_path / "bom"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text('\ufeff{"_id": "d1", "title": "", "text": "alpha"}\n{"_id": "d2", "text": "beta"}\n')
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "alpha"}\n')
    (root / "qrels" / "test.tsv").write_text("\ufeffquery-id\tcorpus-id\tscore\nq1\td1\t1\n")
    dataset = load_dataset(str(root), split="test")
    assert dataset.n_docs == 2 and dataset.qrels == {"q1": {"d1": 1}}
