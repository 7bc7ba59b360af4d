import dataclasses

import pandas as pd
import pytest

from bench.analysis.series import architecture_table, spread_table
from bench.series.encode_latency import append_series, read_series, remeasure


def test_spread_per_encoder_and_per_shared_architecture():
    rows = pd.DataFrame({"round": [1, 1, 1, 2, 2, 2], "encoder": ["a", "b", "c"] * 2,
                         "architecture": ["x", "x", "y"] * 2, "p50_ms": [10.0, 11.0, 4.0, 11.0, 11.0, 4.0],
                         "p95_ms": [12.0] * 6, "kernel_ms": [0.5, 0.5, 0.5, 0.55, 0.55, 0.55], "samples": [300] * 6})
    table = spread_table(rows).set_index("encoder")
    assert table.loc["a", "p50 spread"] == pytest.approx(0.1) and table.loc["b", "p50 spread"] == 0
    assert table.loc["a", "p50/kernel spread"] == pytest.approx(0.0)  # the host was 10% slower in round 2
    shared = architecture_table(rows)
    assert list(shared["architecture"]) == ["x"] and shared["spread"].iloc[0] == pytest.approx(11 / 10.5 - 1)


def test_rounds_time_every_network_encoder(tiny_model):
    from bench.pipeline.config import load_config

    base = load_config("configs/tiny.toml")
    minilm = dataclasses.replace(base.encoders[0], model=tiny_model)
    config = dataclasses.replace(base, encoders=[minilm, dataclasses.replace(minilm, name="q8", query_precision="int8"),
                                                 *base.encoders[1:]],
                                 measure=dataclasses.replace(base.measure, encode_sample=5, encode_repeats=2))
    rows = remeasure(config, rounds=2)
    assert sorted(rows["encoder"].unique()) == ["minilm", "q8"]  # bm25 has no network
    assert rows["measured_at"].is_monotonic_increasing and rows["threads"].eq(1).all()
    assert len(rows) == 4 and rows["samples"].eq(10).all() and rows["kernel_ms"].gt(0).all()
    assert rows.groupby("encoder")["architecture"].nunique().eq(1).all()
    assert rows.set_index("encoder")["architecture"].groupby(level=0).first().nunique() == 2  # int8 is another shape
    interleaved = remeasure(config, rounds=2, interleave=True)
    assert interleaved["samples"].eq(10).all() and interleaved["order"].eq("interleaved").all()
    assert interleaved["kernel_ms"].gt(0).all() and interleaved["p50_ms"].gt(0).all()


def series_rows(p50, kernel):
    """One encoder's rounds as `remeasure` returns them."""
    n = len(p50)
    return pd.DataFrame({"round": range(1, n + 1), "encoder": ["a"] * n, "architecture": ["x"] * n, "p50_ms": p50,
                         "p95_ms": [14.0] * n, "kernel_ms": kernel, "samples": [300] * n, "passes": [3] * n,
                         "threads": [1] * n, "order": ["back to back"] * n, "host": ["h"] * n,
                         "measured_at": pd.Timestamp("2026-11-26 21:00", tz="UTC")})


def test_each_invocation_is_appended_as_the_next_series(tmp_path):
    path = tmp_path / "encode_latency.parquet"
    assert append_series(path, series_rows([10.0, 10.5], [0.5, 0.5]))["series"].eq(1).all()
    append_series(path, series_rows([11.0, 11.5], [0.5, 0.5]))
    stored = read_series(path)
    assert list(stored["series"]) == [1, 1, 2, 2] and list(stored["p50_ms"]) == [10.0, 10.5, 11.0, 11.5]


def test_the_report_section_counts_encoders_within_the_band_per_series(tmp_path):
    from bench.render import repeatability_section

    path = tmp_path / "encode_latency.parquet"
    for p50, kernel in (([10.0, 12.0], [0.5, 0.6]), ([10.0, 10.5], [0.5, 0.5])):
        append_series(path, series_rows(p50, kernel))
    from bench.render.markdown import Tables

    text = repeatability_section(read_series(path), Tables(tmp_path / "tables"))
    table = (tmp_path / "tables" / "encode-latency-series.csv").read_text()
    assert "1,2026-11-26 21:00,3,back to back,1,0 of 1,20.0%,1 of 1,0.0%,-,12.9% / 0.0%" in table  # host 20% slower
    assert "2,2026-11-26 21:00,3,back to back,1,1 of 1,5.0%,1 of 1,5.0%,-,3.4% / 3.4%" in table
    assert "the latest (2, back to back, 3 passes): 1 of 1 encoders within 10% raw (largest spread 5.0%)" in text
    assert "the latest (2, " in text and "per encoder and round: " in text


def test_a_file_of_another_kind_is_refused_by_name(tmp_path):
    from bench.store.results import SchemaError

    path = tmp_path / "other.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(path)
    with pytest.raises(SchemaError, match="other.parquet: not an encode-latency file"):
        read_series(path)
