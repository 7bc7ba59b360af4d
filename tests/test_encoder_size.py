"""The encoder-size lever: two pretrained bi-encoders of different size on one dataset, alone and in the BM25 hybrid,
paired per test query; the published figure beside each run where one exists."""

import dataclasses

import pytest

from bench.analysis.encoder_size import EncoderRows, encoder_rows, paired_delta
from bench.cli import main
from bench.pipeline.config import EncoderSpec, load_config
from bench.render.encoder_size import encoder_size_section
from bench.store.results import read_results
from bench.run.sweep import run_sweep


def test_the_larger_encoder_is_paired_against_the_smaller_alone_and_in_the_hybrid(tiny_model, wide_tiny_model, tmp_path,
                                                                                   capsys):
    wide = wide_tiny_model
    base = load_config("configs/tiny.toml")
    small = dataclasses.replace(base.encoders[0], name="small", model=tiny_model)
    large = dataclasses.replace(small, name="large", model=wide)

    def hybrid(name: str, dense: str) -> EncoderSpec:
        return EncoderSpec(name, type="hybrid", backends=["exact"],
                           hybrid={"dense": dense, "fusion": "convex", "weight": 0.5, "depth": [20]})

    config = dataclasses.replace(
        base, k=[10], results=str(tmp_path / "size.parquet"),
        encoders=[small, large, base.encoders[1], hybrid("h-small", "small"), hybrid("h-large", "large")],
        backends=[b for b in base.backends if b.backend in ("exact", "bm25s", "hnsw")])
    run_sweep(config)
    frame = read_results(config.results_path)

    found = encoder_rows(frame)["synthetic"]
    assert [e.exact["encoder"] for e in found] == ["small", "large"]  # the smaller network first
    assert [e.hybrid["encoder"] for e in found] == ["h-small", "h-large"]  # each model's own hybrid
    assert found[1].exact["dim"] == 64 and found[0].exact["dim"] == 32
    delta, half, p, queries = paired_delta(found[1].exact, found[0].exact)
    assert queries == 30 and delta == pytest.approx(found[1].exact["ndcg_at_10"] - found[0].exact["ndcg_at_10"])
    assert 0 <= p <= 1 and half >= 0
    # the published figure belongs to a model on a dataset: none for these, MTEB's for mpnet on SciFact
    assert found[1].published is None
    mpnet = found[1].exact.copy()
    mpnet["model"], mpnet["dataset"] = "sentence-transformers/all-mpnet-base-v2", "scifact"
    assert EncoderRows(mpnet, None, None).published == 0.6557

    text = encoder_size_section(frame)
    assert text.startswith("## The encoder-size lever")
    assert "| synthetic | st |" in text and "| synthetic | wide |" in text
    assert "synthetic (30 test, 8 dev queries): wide minus st, alone test " in text and "; in the hybrid test " in text
    # bytes per vector: float32, the width of each model
    assert "| 128 |" in text and "| 256 |" in text
    assert "Picked on dev from these rows" in text and "synthetic: 100 ms: " in text
    assert main(["encoder-size", str(config.results_path)]) == 0
    assert capsys.readouterr().out.startswith("## The encoder-size lever")

    one = dataclasses.replace(config, encoders=[small], results=str(tmp_path / "one.parquet"),
                              backends=[b for b in base.backends if b.backend == "exact"])
    run_sweep(one)
    assert encoder_size_section(read_results(one.results_path)) == ""
    assert main(["encoder-size", str(one.results_path)]) == 2  # one model: nothing to compare, said in one line
    assert "no dataset with two pretrained bi-encoders" in capsys.readouterr().err
