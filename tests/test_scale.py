import dataclasses
import json

import numpy as np
import pytest

from bench.data.datasets import synthetic_vectors
from bench.search.indexes import ParamError
from bench.render import scale_section
from bench.analysis.series import growth
from bench.series.scale import (MixtureGenerator, PooledSource, ScaleBackend, ScaleConfig, resolve_size_rule,
                         run_scale)
from bench.store.results import SCALE_SCHEMA, ResultStore, read_results


def test_size_rules():
    assert resolve_size_rule(64, 10_000, "x") == 64
    assert resolve_size_rule("sqrt(N)", 10_000, "x") == 100
    assert resolve_size_rule("4*sqrt(N)", 10_000, "x") == 400
    with pytest.raises(ParamError, match="faiss_ivf.build.nlist"):
        resolve_size_rule("log(N)", 10, "faiss_ivf.build.nlist")


def test_generator_keeps_the_spectrum_and_is_seeded():
    real, _, _ = synthetic_vectors(3000, 32, 1, n_clusters=8)
    generator = MixtureGenerator.fit(real, components=8, seed=0)
    sample = generator.sample(5000, seed=1, chunk=1000)
    assert sample.shape == (5000, 32) and sample.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(sample, axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(sample, generator.sample(5000, seed=1, chunk=1000))
    real_spectrum = np.linalg.svd(real - real.mean(0), compute_uv=False)[:5] ** 2 / len(real)
    fake_spectrum = np.linalg.svd(sample - sample.mean(0), compute_uv=False)[:5] ** 2 / len(sample)
    np.testing.assert_allclose(fake_spectrum, real_spectrum, rtol=0.2)


def test_scale_series_runs_resumes_and_fits_slopes(tiny_model, tmp_path):
    config = ScaleConfig(
        name="tiny-scale", dataset="synthetic", model=tiny_model, max_seq_length=32, sizes=[1000, 4000], k=5,
        components=4, backends=[ScaleBackend("hnsw", {"M": 8, "ef_construction": 40}, {"ef": [5, 20, 80, 400]}),
                                ScaleBackend("faiss_ivf", {"nlist": "sqrt(N)"}, {"nprobe": [1, 4, 16, 63]}),
                                ScaleBackend("hnsw", {"M": 12, "ef_construction": 40}, {"ef": [5, 20, 80, 400]},
                                             max_n=1000)],
        pooled=[PooledSource("synthetic"), PooledSource("synthetic", chunk_tokens=8, chunk_stride=6),
                PooledSource("synthetic", split="train", side="queries")])
    store = ResultStore(tmp_path / "scale.parquet", SCALE_SCHEMA)
    # real (500 docs) and the generator at 500, 1000, 4000, the pooled point and its generator: 6 points x 2
    # backends, and the second HNSW build up to N = 1000 only: at 500 (twice) and 1000
    assert run_scale(config, store=store) == 15
    frame = read_results(tmp_path / "scale.parquet", schema=SCALE_SCHEMA)
    assert set(frame["source"]) == {"real", "gmm", "pooled", "gmm-pooled"}
    pooled_n = frame.loc[frame["source"] == "pooled", "n"]
    assert pooled_n.nunique() == 1 and pooled_n.iloc[0] > 4000  # documents + their passages + train queries
    assert set(frame.loc[frame["source"] == "gmm-pooled", "n"]) == set(pooled_n)
    assert sorted(frame["n"].unique()) == sorted([500, 1000, 4000, pooled_n.iloc[0]])
    assert frame.loc[frame["variant"] == "hnsw M=12 ef_construction=40", "n"].max() <= 1000
    assert frame["reached"].all() and (frame["recall_at_k"] >= 0.95).all()
    ivf = frame[(frame["backend"] == "faiss_ivf") & (frame["n"] == 4000)].iloc[0]
    assert json.loads(ivf["build_params"]) == {"nlist": 63, "seed": 1234}  # as run: defaults filled in
    tried = json.loads(ivf["search_tried"])
    assert all(recall < 0.95 for _, recall in tried[:-1]) and tried[-1][1] >= 0.95  # the first point reaching it
    assert (frame["index_bytes"] / frame["predicted_index_bytes"]).between(0.99, 1.01).all()
    slopes = growth(frame).set_index("variant")
    assert slopes.loc["hnsw M=8 ef_construction=40", "slope index_bytes"] == pytest.approx(1.0, abs=0.05)  # bytes grow linearly with N
    from bench.render.markdown import Tables

    text = scale_section(frame, tables=Tables(tmp_path / "tables"))
    assert "Log-log slopes" in text and "The generator against real vectors" in text
    bias = (tmp_path / "tables" / "scale-generator-bias.csv").read_text()
    assert "real / gmm" in bias and "pooled / gmm-pooled" in bias
    assert "HNSW build grid" in text and "### Memory at 100M and 1B vectors" in text
    assert (tmp_path / "tables" / "scale-capacity.csv").exists() and "At 1B vectors, the index alone fits in" in text
    assert run_scale(config, store=ResultStore(tmp_path / "scale.parquet", SCALE_SCHEMA)) == 0


def test_a_real_vector_set_has_its_own_queries_and_a_mixture_control(monkeypatch, tmp_path):
    import bench.series.vectorsets as vectorsets
    from bench.render.markdown import Tables
    from bench.render.scale import real_sets_section
    from bench.series.scale import VectorSetSpec

    vectors, queries, _ = synthetic_vectors(3000, 16, 200, n_clusters=8)
    calls = []

    def blobs(n_queries, seed, data_root):
        calls.append(n_queries)
        return vectorsets.VectorSet("blobs", vectorsets.unit(vectors), vectorsets.unit(queries[:n_queries]),
                                    {"source": "synthetic blobs", "queries": f"{n_queries} held out"})

    monkeypatch.setitem(vectorsets.REGISTRY, "blobs", blobs)
    config = ScaleConfig(
        name="sets", real=False, sizes=[], k=5, components=4, latency_queries=50,
        sets=[VectorSetSpec("blobs", sizes=[1000, 10_000], queries=150)],
        backends=[ScaleBackend("hnsw", {"M": 8, "ef_construction": 40}, {"ef": [5, 20, 80, 400]}),
                  ScaleBackend("faiss_ivfpq", {"nlist": 16, "m": 5}, {"nprobe": [16]}, sets=["other"])])
    store = ResultStore(tmp_path / "real.parquet", SCALE_SCHEMA)
    # the set at 1,000 (a seeded prefix) and whole (3,000; 10,000 is capped), its mixture at the whole size only;
    # the IVF-PQ entry runs on set "other" only
    assert run_scale(config, store=store) == 3
    frame = read_results(tmp_path / "real.parquet", schema=SCALE_SCHEMA)
    assert sorted(zip(frame["source"], frame["n"])) == [("blobs", 1000), ("blobs", 3000), ("gmm-blobs", 3000)]
    assert (frame["n_queries"] == 150).all() and (frame["latency_samples"] == 50 * config.measure.repeats).all()  # its own queries
    assert frame["reached"].all() and set(frame["backend"]) == {"hnsw"}
    assert json.loads(frame.loc[frame["source"] == "gmm-blobs", "generator"].iloc[0])["fitted_on"].endswith("of blobs")
    text = real_sets_section(frame, Tables(tmp_path / "tables"))
    assert "blobs real N=3,000" in text and "blobs mixture N=3,000" in text and "hnsw M=8 efC=40 (ef)" in text
    assert (tmp_path / "tables" / "scale-real-slopes.csv").exists()
    assert run_scale(config, store=ResultStore(tmp_path / "real.parquet", SCALE_SCHEMA)) == 0  # resumes: nothing left


def test_the_glove_loader_gives_the_published_vectors_normalized_with_withheld_queries():
    from bench.series.vectorsets import GLOVE_THE, glove_50, glove_raw

    raw = glove_raw()  # checks the file's sha256, shape and the published first row ("the")
    assert raw.shape == (400_000, 50) and np.allclose(raw[0, :10], GLOVE_THE, atol=1e-6)
    glove = glove_50(queries=1000, seed=0)
    assert glove.vectors.shape == (399_000, 50) and glove.queries.shape == (1000, 50)
    np.testing.assert_allclose(np.linalg.norm(glove.queries, axis=1), 1.0, rtol=1e-5)
    # withheld: no query is a row of the index (the raw rows are distinct words)
    index_rows = {row.tobytes() for row in glove.vectors[:: 1]}
    assert not any(q.tobytes() in index_rows for q in glove.queries)


def _write_vecs(path, rows: np.ndarray) -> None:
    dim = np.full((len(rows), 1), rows.shape[1], dtype=np.int32)
    np.hstack([dim, rows.view(np.int32)]).tofile(path)


def test_your_own_vectors_by_config_npy_fvecs_and_ann_benchmarks_hdf5(tmp_path):
    """A set named by a file (no loader in code): .npy and .fvecs with queries withheld; an ann-benchmarks HDF5 file
    whose `neighbors` are the ground truth, checked against exact search (a wrong file is refused by name)."""
    import h5py

    from bench.data.datasets import DatasetError
    from bench.search.indexes import exact_neighbors
    from bench.series.scale import VectorSetSpec, load_scale_config
    from bench.series.vectorsets import for_metric, from_file, read_vectors, unit

    vectors, queries, _ = synthetic_vectors(2000, 16, 100, n_clusters=8)
    np.save(tmp_path / "v.npy", vectors)
    _write_vecs(tmp_path / "v.fvecs", vectors)
    assert np.array_equal(read_vectors(tmp_path / "v.fvecs"), vectors)
    top = exact_neighbors(unit(vectors), unit(queries), 100, 1)
    with h5py.File(tmp_path / "v.hdf5", "w") as f:
        f.attrs["distance"] = "angular"
        f.create_dataset("train", data=vectors)
        f.create_dataset("test", data=queries)
        f.create_dataset("neighbors", data=top.ids.astype(np.int32))
        f.create_dataset("distances", data=1 - top.scores)
    assert from_file("v", tmp_path / "v.npy", "angular", 100, 0).queries.shape == (100, 16)
    sets = [VectorSetSpec(f"own-{s}", queries=100, path=str(tmp_path / f"v.{s}"), mixture=False)
            for s in ("npy", "fvecs", "hdf5")]
    config = ScaleConfig(name="own", real=False, sizes=[], k=10, latency_queries=20, sets=sets,
                         backends=[ScaleBackend("hnsw", {"M": 8, "ef_construction": 40}, {"ef": [10, 40, 160]})])
    assert run_scale(config, store=ResultStore(tmp_path / "own.parquet", SCALE_SCHEMA)) == 3
    frame = read_results(tmp_path / "own.parquet", schema=SCALE_SCHEMA)
    assert frame["reached"].all() and sorted(frame["n"]) == [1900, 1900, 2000]  # 100 withheld from the matrices
    described = json.loads(frame.loc[frame["source"] == "own-hdf5", "generator"].iloc[0])
    assert described["ground_truth"].startswith("the file's neighbors (agree with exact search: recall@10 1.0")
    with h5py.File(tmp_path / "v.hdf5", "a") as f:  # another file's neighbours: refused, not used
        f["neighbors"][...] = np.roll(f["neighbors"][:], 1, axis=0)
    with pytest.raises(DatasetError, match="agree with exact search"):
        run_scale(dataclasses.replace(config, sets=[dataclasses.replace(sets[2], queries=99)]),
                  store=ResultStore(tmp_path / "bad.parquet", SCALE_SCHEMA))
    # euclidean as inner product over augmented vectors ranks as L2 does
    docs, asked = for_metric(vectors, queries, "euclidean")
    l2 = np.argsort(((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(-1), axis=1)[:, :10]
    assert (exact_neighbors(docs, asked, 10, 1).ids == l2).mean() > 0.99
    # a config names the file; a missing file or an unknown metric is one line naming the field
    (tmp_path / "c.toml").write_text(f'name = "c"\nreal = false\nsizes = []\n[[sets]]\nname = "x"\npath = '
                                     f'"{tmp_path / "v.hdf5"}"\nmetric = "cosine"\n[[backends]]\nbackend = "exact"\n')
    with pytest.raises(Exception, match=r"sets\[0\]\.metric"):
        load_scale_config(tmp_path / "c.toml")
