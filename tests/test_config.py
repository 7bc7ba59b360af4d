import pytest

from bench.pipeline.config import ConfigError, load_config, parse_config

MINIMAL = {"name": "t", "dataset": "synthetic", "split": "test", "k": [10, 5],
           "encoders": [{"name": "e"}], "backends": [{"backend": "hnsw", "build": {"M": [8, 16]},
                                                      "search": {"ef": [10, 20, 40]}}]}


def test_grids_and_defaults():
    config = parse_config(MINIMAL, "x.toml")
    assert config.k == [5, 10]
    assert config.backends[0].build_grid() == [{"M": 8}, {"M": 16}]
    assert len(config.backends[0].search_grid()) == 3
    assert str(config.results_path) == "results/t.parquet"
    assert config.config_hash() == parse_config(MINIMAL, "y.toml").config_hash()


def test_shipped_configs_load():
    assert load_config("configs/tiny.toml").name == "tiny"
    scifact = load_config("configs/scifact.toml")
    assert max(scifact.k) >= 100 and scifact.protocol.guard
    from bench.search.indexes import BACKENDS

    assert {b.backend for b in scifact.backends} >= {"exact", "faiss_ivf", "hnsw", "scann", "bm25s", "faiss_sq",
                                                     "faiss_ivfsq", "faiss_ivfpq", "faiss_hnsw"}
    assert set(BACKENDS) >= {b.backend for b in scifact.backends}
    assert set(scifact.rerank.backends) == {"exact", "faiss_ivf", "hnsw", "scann", "bm25s"}
    assert scifact.rerank.rerankers and max(scifact.rerank.r) == 200 and max(scifact.k) == 2000
    assert {e.name for e in scifact.encoders if e.type == "hybrid"} == {"hybrid-rrf", "hybrid-convex"}


@pytest.mark.parametrize("change, message", [
    ({"nonsense": 1}, r"x\.toml: unknown key\(s\) \['nonsense'\]"),
    ({"encoders": [{"name": "e", "modle": "m"}]}, r"encoders\[0\]: unknown key\(s\) \['modle'\]"),
    ({"backends": [{"backend": "hnsw", "grid": {}}]}, r"backends\[0\]: unknown key\(s\) \['grid'\]"),
    ({"k": [0]}, "k must be a list of positive integers"),
    ({"encoders": [{"name": "e", "type": "poly"}]}, r"type 'poly' is not supported"),
    ({"measure": {"warmpu": 3}}, r"measure: unknown key\(s\) \['warmpu'\]"),
])
def test_bad_configs_name_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, **change}, "x.toml")


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_config(bad)


def _write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = 'name = "b"\ndataset = "synthetic"\nsplit = "test"\nk = [5]\n[[encoders]]\nname = "e"\n[[backends]]\nbackend = "exact"\n'


@pytest.mark.parametrize("extra, message", [
    ('[measure]\nwarmup = "five"\n', "measure.warmup: input should be a valid integer, got 'five'"),
    ('[[rerank.rerankers]]\nname = "c"\ntrain = { loss = "listwize" }\n',
     "rerank.rerankers[0].train: loss must be one of"),
    ('[[rerank.rerankers]]\nname = "c"\ntrain = { epochs = "2" }\n', "rerank.rerankers[0].train.epochs: input should"),
    ('[protocol]\nguard = "yes"\n', "protocol.guard: input should be a valid boolean"),
    ('[measure]\nencode_repeats = 0\n', "measure: encode_repeats must be >= 1, got 0"),
    ('[measure]\ncalibration_tolerance = 1.5\n', "measure: calibration_tolerance must be in (0, 1), got 1.5"),
    ('[rerank]\nthreads = 2\n', "rerank.threads: reranking runs on [measure] threads"),
    ('[[encoders]]\nname = "b"\ntype = "bm25"\nquery_precision = "int8"\n',
     "encoders[1].query_precision: applies to pretrained bi/twin encoders only (this one is bm25"),
    ('[[encoders]]\nname = "q"\nquery_precision = "int4"\n', "encoders[1].query_precision: input should be 'fp32' or 'int8'"),
    ('[[encoders]]\nname = "q"\ndevice = "cuda"\ndoc_precision = "int8"\n', "int8 (dynamic quantization) runs on the CPU only"),
    ('[[encoders]]\nname = "q"\nquery_runtime = "onnxruntime"\nquery_precision = "int8"\n',
     "encoders[1].query_runtime: onnxruntime runs a bi encoder's fp32 queries on the CPU only"),
    ('[[encoders]]\nname = "q"\nquery_runtime = "onnx"\n', "encoders[1].query_runtime: input should be 'torch' or 'onnxruntime'"),
    ('[[encoders]]\nname = "q"\ndoc_runtime = "onnxruntime"\nnormalize = false\n',
     "encoders[1].doc_runtime: onnxruntime encodes a bi encoder's fp32, normalized documents on the CPU only"),
    ('[[rerank.rerankers]]\nname = "c"\ntrain = { distill_temperature = 0 }\n',
     "rerank.rerankers[0].train: distill_temperature must be > 0, got 0"),
    ('[[backends]]\nbackend = "faiss_sq"\nencoders = ["f"]\n', "backends[1].encoders names unknown encoder(s) ['f']"),
    ('[rerank]\nbackends = ["hnsw"]\n', "rerank.backends names backend(s) ['hnsw'] missing from the config's backends"),
    ('[[rerank.rerankers]]\nname = "c"\ntrain = { mine_from = "bm52" }\n',
     "rerank.rerankers[0].train: mine_from must be one of ('dense', 'bm25', 'dense+bm25'), got 'bm52'"),
    ('[[rerank.rerankers]]\nname = "c"\ntrain = { title_queries = -1 }\n',
     "rerank.rerankers[0].train: title_queries must be >= 0"),
    ('[[rerank.rerankers]]\nname = "c"\ntrain = { negatvies = 3 }\n', "rerank.rerankers[0].train: unknown key(s) ['negatvies']"),
    ('[[encoders]]\nname = "h"\ntype = "hybrid"\nhybrid = { dense = "e", depth = [0] }\n',
     "encoders[1].hybrid: depth must be a non-empty list of positive integers"),
])
def test_mistyped_options_fail_at_parse_time_with_one_line(tmp_path, capsys, extra, message):
    from bench.cli import main

    assert main(["run", str(_write(tmp_path, BASE + extra)), "--results", str(tmp_path / "r.parquet")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not (tmp_path / "r.parquet").exists()


def test_bad_run_inputs_fail_before_any_work(tmp_path, capsys, tiny_cross_encoder):
    from bench.cli import main

    (tmp_path / "file.txt").write_text("x")  # a file where the results folder should be
    assert main(["run", str(_write(tmp_path, BASE)), "--results", str(tmp_path / "file.txt" / "r.parquet")]) == 2
    assert "results cannot be written there" in capsys.readouterr().err
    deep = BASE + f'[rerank]\nr = [10]\n[[rerank.rerankers]]\nname = "c"\nmodel = "{tiny_cross_encoder}"\n'
    assert main(["run", str(_write(tmp_path, deep)), "--results", str(tmp_path / "r.parquet")]) == 2
    assert "rerank.r: R [10] exceeds every reranked K [5]" in capsys.readouterr().err
    assert not (tmp_path / "r.parquet").exists()


def test_a_trained_reranker_needs_train_queries_before_anything_is_measured(tmp_path, capsys):
    from bench.cli import main
    from test_splits import write_beir

    write_beir(tmp_path / "data" / "only-test", {"test": {"t1": "d1", "t2": "d2"}})
    text = BASE.replace('"synthetic"', '"data/only-test"') + \
        '[rerank]\nr = [5]\n[[rerank.rerankers]]\nname = "c"\ntrain = { loss = "listwise" }\n'
    assert main(["run", str(_write(tmp_path, text)), "--results", str(tmp_path / "r.parquet")]) == 2
    assert "has no train queries" in capsys.readouterr().err  # the dataset path was found next to the config
    assert not (tmp_path / "r.parquet").exists()


def test_summary_of_a_missing_file_says_so(tmp_path, capsys):
    from bench.cli import main

    assert main(["summary", str(tmp_path / "nope.parquet")]) == 2
    assert "nope.parquet: no such results file" in capsys.readouterr().err
