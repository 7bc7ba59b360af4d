"""The memory frontier and the 100M / 1B projection: bytes per vector from the serialized index, per backend."""

import dataclasses
import json

import numpy as np
import pytest

from bench.pipeline.config import BackendSpec, load_config
from bench.search.indexes import make_index
from bench.analysis.series import capacity, search_effort, smallest_at_recall, with_bytes_per_vector
from bench.store.results import read_results
from bench.run.sweep import run_sweep

COMPRESSED = [
    BackendSpec("exact"),
    BackendSpec("faiss_sq", {"storage": ["fp16", "sq8"]}, encoders=["minilm"]),
    BackendSpec("faiss_ivfsq", {"nlist": [4], "storage": ["sq8"]}, {"nprobe": [1, 4]}, encoders=["minilm"]),
    BackendSpec("faiss_ivfpq", {"nlist": [4], "m": [8], "nbits": [4], "refine": ["none", "sq8"]},
                {"nprobe": [4], "k_factor": [1, 4]}, encoders=["minilm"]),
    BackendSpec("faiss_hnsw", {"M": [8], "ef_construction": [40], "storage": ["sq8"]}, {"ef": [40]}, encoders=["minilm"]),
]


def test_compressed_backends_through_the_sweep_and_the_memory_frontier(tiny_model, tmp_path):
    base = load_config("configs/tiny.toml")
    config = dataclasses.replace(base, encoders=[dataclasses.replace(base.encoders[0], model=tiny_model)],
                                 backends=COMPRESSED, results=str(tmp_path / "m.parquet"))
    summary = run_sweep(config)
    # exact 2 K; sq 2 builds x 2 K; ivfsq 2 nprobe x 2 K; ivfpq (none: kf 1; sq8: kf 1, 4) x 2 K; hnsw 2 K
    assert summary.computed == 2 + 4 + 4 + 6 + 2 and summary.skipped_invalid == 2  # k_factor 4 without refine
    frame = read_results(config.results_path)
    first = with_bytes_per_vector(frame)
    dim = int(frame["dim"].iloc[0])
    per_vector = first.groupby("backend")["bytes_per_vector"].min()
    assert per_vector["exact"] == pytest.approx(4 * dim, rel=0.01)
    assert (per_vector.drop("exact") < per_vector["exact"]).all()  # (300 documents: codebooks weigh in)
    sq = first[first["backend"] == "faiss_sq"].groupby("build_params")["bytes_per_vector"].min()
    assert sq[json.dumps({"storage": "sq8"})] == pytest.approx(sq[json.dumps({"storage": "fp16"})] / 2, rel=0.1)
    # rows record the parameters as run, defaults included
    pq = frame[frame["backend"] == "faiss_ivfpq"].iloc[0]
    assert json.loads(pq["build_params"])["fast_scan"] is False and "k_factor" in json.loads(pq["search_params"])
    from bench.analysis import with_derived

    picks = smallest_at_recall(with_derived(frame), 5, target=0.0)
    assert picks["bytes_per_vector"].is_monotonic_increasing and picks["backend"].is_unique
    from conftest import render_report

    text, tables = render_report(frame, tmp_path / "report")
    assert "memory_k5.png" in text and "memory-k5.csv" in text
    smallest = "".join(text for name, text in tables.items() if name.startswith("memory-k"))
    assert "\nfaiss_sq," in smallest and "vs exact" in tables["memory-k5.csv"]
    assert (tmp_path / "report" / "plots" / "memory_k5.png").exists()


def test_search_effort_names_the_knob_the_grid_varied():
    tried = json.dumps([[{"ef": 10}, 0.5], [{"ef": 64}, 0.97]])
    assert search_effort(tried) == ("ef", 64.0)
    tried = json.dumps([[{"k_factor": 8, "nprobe": 1}, 0.5], [{"k_factor": 8, "nprobe": 12}, 0.96]])
    assert search_effort(tried) == ("nprobe", 12.0)
    assert np.isnan(search_effort(json.dumps([[{}, 1.0]]))[1])


def test_capacity_projects_with_the_backend_memory_model():
    import pandas as pd

    rows = []
    for backend, build, n in [("faiss_ivf", {"nlist": 1000, "seed": 1234}, 10**6),
                              ("faiss_ivfpq", {"nlist": 1000, "m": 48, "nbits": 8, "refine": "sq6"}, 10**6)]:
        index_bytes = make_index(backend, **build).memory_bytes(n, 384)
        rows.append({"source": "gmm", "n": n, "dim": 384, "backend": backend, "variant": backend,
                     "build_params": json.dumps(build), "index_bytes": index_bytes, "recall_at_k": 0.96,
                     "reached": True, "search_p95_ms": 1.0, "build_s": 1.0, "host_id": "h",
                     "timestamp": pd.Timestamp("2026-01-01", tz="UTC")})
    table = capacity(pd.DataFrame(rows)).set_index("variant")
    flat = (384 * 4 + 8) * 10**9 / 1e9  # vectors + ids, in GB, at 1B
    assert table.loc["faiss_ivf", "1B GB"] == pytest.approx(flat, rel=0.01)
    assert not table.loc["faiss_ivf", "1B in 256 GB"] and table.loc["faiss_ivf", "100M in 256 GB"]
    assert table.loc["faiss_ivfpq", "1B GB"] == pytest.approx((48 + 288 + 8), rel=0.01)
    assert not table.loc["faiss_ivfpq", "1B in 256 GB"]  # 344 GB
    assert table.loc["faiss_ivfpq", "100M in 64 GB"]
