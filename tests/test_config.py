import pytest

from bench.config import ConfigError, load_config, parse_config

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
    assert {b.backend for b in scifact.backends} == {"exact", "faiss_ivf", "hnsw", "scann", "bm25s"}
    assert scifact.rerank.rerankers and max(scifact.rerank.r) == 50


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
