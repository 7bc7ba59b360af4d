"""Engines served over a socket (bench.search.services): started on a private unix socket with a password made for
the run, refused without it, a dead server named in a clear error instead of a hang, nothing left running; and the
tiny sweep through every served backend and the new in-process libraries."""

from __future__ import annotations

import dataclasses
import os
import signal

import psutil
import pandas as pd
import pytest

from bench.search.services.postgres import ENGINE, PostgresService, ServiceError


def running_servers() -> list:
    """The harness's postgres processes still running (a killed server's children may linger as zombies until
    reaped)."""
    return [p for p in psutil.process_iter(["name", "status", "cmdline"])
            if p.info["name"] == "postgres" and p.info["status"] != psutil.STATUS_ZOMBIE
            and "bench-postgres-" in " ".join(p.info["cmdline"] or [])]


def test_a_server_admits_only_the_harness_and_leaves_nothing_running():
    service = PostgresService()
    pid, folder = service.process.pid, service.folder
    assert (folder.stat().st_mode & 0o777) == 0o700  # only the server's user (and root) reach the socket
    with service.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)  # no TCP at all
    for password in ("", "not-this-run's"):
        with pytest.raises(Exception, match="password authentication failed|no password"):
            service.connect(password=password)
    other = PostgresService()  # a second server at the same time: its own folder and socket
    assert other.folder != folder and other.connect().execute("SELECT 2").fetchone() == (2,)
    other.stop()
    service.stop()
    assert not psutil.pid_exists(pid) and not folder.exists()


def test_a_server_that_dies_is_a_clear_error_naming_the_engine():
    service = PostgresService()
    os.killpg(service.process.pid, signal.SIGKILL)
    service.process.wait(timeout=10)
    with pytest.raises(ServiceError, match="PostgreSQL.*died"):
        service.connect()
    service.stop()
    assert not service.folder.exists()


def test_a_server_that_cannot_start_says_why_without_waiting():
    before = running_servers()
    with pytest.raises(ServiceError) as err:
        PostgresService({"shared_buffers": "not-a-size"}, ready_s=30)
    assert ENGINE in str(err.value) and "shared_buffers" in str(err.value)
    assert running_servers() == before


@pytest.mark.parametrize("backend, build, search", [
    ("pgvector_hnsw", {"m": [8], "ef_construction": [32]}, {"ef_search": [40]}),
    ("pgvector_ivfflat", {"lists": [10]}, {"probes": [1, 10]}),
    ("usearch", {"connectivity": [8]}, {"expansion_search": [40]}),
    ("voyager", {"M": [8]}, {"ef": [40]}),
    ("lucene", {"k1": [0.9], "b": [0.4]}, {}),
    ("qdrant_edge", {"m": [8], "ef_construct": [32]}, {"hnsw_ef": [40]}),
])
def test_the_tiny_sweep_runs_through_each_new_backend(backend, build, search, tmp_path):
    from bench.pipeline.config import BackendSpec, load_config
    from bench.run.sweep import run_sweep
    from bench.store.results import read_results

    before = running_servers()
    config = load_config("configs/tiny.toml")
    encoder = "bm25" if backend == "lucene" else "minilm"
    config = dataclasses.replace(config, encoders=[e for e in config.encoders if e.name == encoder],
                                 backends=[BackendSpec(backend, build, search)],
                                 results=str(tmp_path / "engine.parquet"))
    summary = run_sweep(config)
    rows = read_results(config.results_path)
    assert summary.computed == len(rows) > 0 and set(rows["backend"]) == {backend}
    assert rows["recall_at_k"].between(0.5, 1).all() and rows["search_p95_ms"].gt(0).all()
    assert rows["index_bytes"].gt(0).all()
    if backend.startswith("pgvector"):  # the served index's pages in shared buffers, at most the whole index
        assert (rows["index_cached_bytes"].between(8192, rows["index_bytes"])).all()
    else:
        assert rows["index_cached_bytes"].isna().all()
    assert running_servers() == before  # its server stopped with the run


def test_the_database_layer_is_priced_against_the_same_algorithm_in_process(tmp_path, capsys):
    from bench.analysis.engines import engine_table
    from bench.cli import main
    from bench.pipeline.config import BackendSpec, load_config
    from bench.run.sweep import run_sweep
    from bench.store.results import read_results

    config = load_config("configs/tiny.toml")
    graph = ({"M": [8], "ef_construction": [32]}, {"ef": [10, 40]})
    config = dataclasses.replace(config, encoders=[e for e in config.encoders if e.name == "minilm"], k=[5],
                                 backends=[BackendSpec("hnsw", *graph), BackendSpec(
                                     "pgvector_hnsw", {"m": [8], "ef_construction": [32]}, {"ef_search": [10, 40]})],
                                 results=str(tmp_path / "engines.parquet"))
    run_sweep(config)
    table = engine_table(read_results(config.results_path), k=5, target=0.5).set_index("backend")
    served = table.loc["pgvector_hnsw"]
    assert served["twin"] == "hnsw" and served["served by"] == "PostgreSQL + pgvector"
    assert served["p95 / twin"] == pytest.approx(served["p95 ms"] / table.loc["hnsw", "p95 ms"])
    assert table.loc["hnsw", "twin"] == ""  # in-process: no ratio of its own
    assert pd.isna(table.loc["hnsw", "cached bytes"]) and 0 < served["cached bytes"] <= served["index bytes"]
    assert main(["engines", str(config.results_path), "--k", "5", "--target", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "pgvector_hnsw (PostgreSQL + pgvector, over a unix socket) against hnsw in-process" in out
    assert "cached MB" in out
    from bench.render.engines import engines_section
    from bench.render.markdown import Tables

    text = engines_section([table.reset_index()], Tables(tmp_path / "tables", "tables/"), k=5, target=0.5)
    assert text.startswith("## The stacks users deploy") and "pgvector_hnsw" in text and "x hnsw's" in text
    assert list((tmp_path / "tables").glob("engines-synthetic-*.csv"))


def test_a_hybrid_takes_lucene_as_its_lexical_side_by_config(tmp_path):
    """`lexical = "lucene"` in a hybrid table: the BM25 side runs through Lucene (its ground truth too, so the exact
    dense side reproduces it), the pipeline's name and identity say so, a hybrid over bm25s keeps its id."""
    from bench.analysis import with_derived
    from bench.pipeline.config import ConfigError, EncoderSpec, load_config, parse_config
    from bench.run.sweep import run_sweep
    from bench.store.results import read_results

    base = load_config("configs/tiny.toml")
    hybrids = [EncoderSpec(name, type="hybrid", backends=["exact"],
                           hybrid={"dense": "minilm", "fusion": "rrf", "depth": [20], **extra})
               for name, extra in (("hyb-bm25s", {}), ("hyb-lucene", {"lexical": "lucene"}))]
    config = dataclasses.replace(base, encoders=[base.encoders[0], *hybrids], backends=base.backends[:1],
                                 results=str(tmp_path / "lucene-hybrid.parquet"))
    run_sweep(config)
    rows = with_derived(read_results(config.results_path)).set_index(["encoder", "k"])
    lucene, bm25s = rows.loc["hyb-lucene"], rows.loc["hyb-bm25s"]
    assert (lucene["recall_at_k"] == 1.0).all()  # against the same fusion over exact dense and Lucene's BM25
    assert lucene["pipeline_name"].str.contains("+ BM25 (Lucene),", regex=False).all()
    assert bm25s["pipeline_name"].str.contains("+ BM25,", regex=False).all()
    assert "lexical" not in bm25s["search_params"].iloc[0]  # the default writes what rows always had
    assert set(lucene["pipeline_id"]).isdisjoint(bm25s["pipeline_id"])
    assert lucene["ndcg_at_10"].values == pytest.approx(bm25s["ndcg_at_10"].values, abs=0.05)
    with pytest.raises(ConfigError, match=r"lexical must be one of \['bm25s', 'lucene'\], got 'solr'"):
        parse_config({"name": "h", "dataset": "synthetic", "split": "test", "k": [5], "backends": [{"backend": "exact"}],
                      "encoders": [{"name": "dense"}, {"name": "h", "type": "hybrid",
                                                        "hybrid": {"dense": "dense", "lexical": "solr"}}]}, "x.toml")
