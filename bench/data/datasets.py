"""Datasets in BEIR layout (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), resolved by name.

`load_dataset("scifact", "test")` reads `$BENCH_DATA_DIR/scifact` (default `datasets/`), downloading
BEIR's public zip there when it is missing; `load_dataset("synthetic", ...)` builds a seeded
collection with known relevant documents, for tests and scale work.
"""

from __future__ import annotations

import dataclasses

import hashlib
import json
import logging
import os
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
DEFAULT_DATA_DIR = Path("datasets")


class DatasetError(ValueError):
    """A dataset that cannot be found or read; the message names the file and line."""


class SplitMissing(DatasetError):
    """A dataset without judgments for the asked split (or none with a positive one)."""


@dataclass(frozen=True)
class Dataset:
    """A corpus, the queries of one split that have judgments, and those judgments."""

    name: str
    split: str
    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    content_hash: str  # corpus, queries and this split's judgments
    corpus_hash: str  # the corpus alone: keys document embeddings, shared by every split
    warnings: list[str] = field(default_factory=list)
    doc_titles: list[str] = field(default_factory=list)  # per document where the corpus has titles, else empty

    @property
    def n_docs(self) -> int:
        return len(self.doc_ids)

    def subset(self, n_queries: int) -> "Dataset":
        """The first `n_queries` queries (same corpus): for quick runs."""
        qids = self.query_ids[:n_queries]
        return dataclasses.replace(self, query_ids=qids, query_texts=self.query_texts[:n_queries],
                                   qrels={q: self.qrels[q] for q in qids},
                                   content_hash=_hash_strings([self.content_hash, str(n_queries)]))


def data_dir() -> Path:
    """The data directory: `$BENCH_DATA_DIR`, else `datasets/`."""
    return Path(os.environ.get("BENCH_DATA_DIR", DEFAULT_DATA_DIR))


def load_dataset(name: str, split: str = "test", root: Path | None = None, **synthetic_args) -> Dataset:
    """Resolve a dataset by name: `synthetic`, a folder path, or a BEIR name under the data dir."""
    if name == "synthetic":
        return synthetic_dataset(split=split, **synthetic_args)
    if synthetic_args:
        raise DatasetError(f"options {sorted(synthetic_args)} apply only to the 'synthetic' dataset")
    path = Path(name)
    if not (path / "corpus.jsonl").exists():
        root = root or data_dir()
        path = root / name
        if not (path / "corpus.jsonl").exists():
            download_beir(name, root)
    return load_beir(path, split, name=Path(name).name)


def download_beir(name: str, root: Path) -> Path:
    """Fetch BEIR's public `<name>.zip` into `root`; offline, a clear error saying what to do (and no folder
    left behind that the attempt created)."""
    url = BEIR_URL.format(name=name)
    target = root / name
    zip_path = root / f"{name}.zip.part"
    created = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s to %s", url, root)
        urllib.request.urlretrieve(url, zip_path)
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(root)
    except (OSError, zipfile.BadZipFile) as err:
        zip_path.unlink(missing_ok=True)
        if created and root.exists() and not any(root.iterdir()):
            root.rmdir()
        raise DatasetError(
            f"dataset '{name}' is not under {root.resolve()} (pass --data-dir, or set BENCH_DATA_DIR, to the folder "
            f"that holds '{name}/corpus.jsonl') and downloading {url} failed: {err}. On a machine with internet, "
            f"download that zip and unzip it into the data dir."
        ) from err
    finally:
        zip_path.unlink(missing_ok=True)
    if not (target / "corpus.jsonl").exists():
        raise DatasetError(f"{url} unpacked, but {target / 'corpus.jsonl'} is missing")
    return target


def _read_jsonl(path: Path, kind: str) -> list[tuple[str, dict]]:
    """Rows of a BEIR jsonl file as (id, record), rejecting bad JSON, missing or duplicate ids."""
    if not path.exists():
        raise DatasetError(f"{path}: missing ({kind} file of a BEIR dataset)")
    rows: list[tuple[str, dict]] = []
    first_line: dict[str, int] = {}
    with path.open(encoding="utf-8-sig") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}:{lineno}: malformed JSON: {err.msg} (column {err.colno})") from None
            if not isinstance(record, dict) or "_id" not in record:
                raise DatasetError(f"{path}:{lineno}: a {kind} record needs an '_id' field")
            rid = str(record["_id"])
            if rid in first_line:
                raise DatasetError(f"{path}:{lineno}: duplicate {kind} id '{rid}' (first on line {first_line[rid]})")
            first_line[rid] = lineno
            rows.append((rid, record))
    if not rows:
        raise DatasetError(f"{path}: no {kind} records")
    return rows


def _read_qrels(path: Path) -> list[tuple[str, str, int, int]]:
    """(query id, doc id, grade, line) from a BEIR qrels tsv with its header."""
    if not path.exists():
        splits = sorted(p.stem for p in path.parent.glob("*.tsv")) if path.parent.exists() else []
        raise SplitMissing(f"{path}: missing; splits present: {splits or 'none'}")
    rows = []
    with path.open(encoding="utf-8-sig") as handle:
        for lineno, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").split("\t")
            if lineno == 1 and parts[:2] == ["query-id", "corpus-id"]:
                continue
            if not line.strip():
                continue
            if len(parts) != 3:
                raise DatasetError(f"{path}:{lineno}: expected 3 tab-separated columns, got {len(parts)}")
            try:
                grade = int(parts[2])
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: relevance grade '{parts[2]}' is not an integer") from None
            rows.append((parts[0], parts[1], grade, lineno))
    return rows


def load_beir(path: Path, split: str, name: str | None = None) -> Dataset:
    """Load and validate a BEIR-layout folder. Judgments naming unknown ids are dropped and counted."""
    path = Path(path)
    corpus = _read_jsonl(path / "corpus.jsonl", "corpus")
    queries = dict(_read_jsonl(path / "queries.jsonl", "query"))
    qrels_path = path / "qrels" / f"{split}.tsv"
    doc_index = {doc_id: i for i, (doc_id, _) in enumerate(corpus)}
    qrels: dict[str, dict[str, int]] = {}
    unknown_queries, unknown_docs = set(), set()
    for qid, did, grade, _line in _read_qrels(qrels_path):
        if qid not in queries:
            unknown_queries.add(qid)
        elif did not in doc_index:
            unknown_docs.add(did)
        else:
            qrels.setdefault(qid, {})[did] = grade
    warnings = []
    if unknown_queries:
        warnings.append(f"{qrels_path}: {len(unknown_queries)} judged query ids not in queries.jsonl (dropped)")
    if unknown_docs:
        warnings.append(f"{qrels_path}: {len(unknown_docs)} judged doc ids not in corpus.jsonl (dropped)")
    for warning in warnings:
        log.warning(warning)
    qids = [qid for qid in queries if qid in qrels and any(g > 0 for g in qrels[qid].values())]
    if not qids:
        raise SplitMissing(f"{qrels_path}: split '{split}' has no query with a positive judgment")
    doc_texts = [(str(rec.get("title") or "") + " " + str(rec.get("text") or "")).strip() for _, rec in corpus]
    files = [path / "corpus.jsonl", path / "queries.jsonl", qrels_path]
    return Dataset(
        name=name or path.name,
        split=split,
        doc_ids=[doc_id for doc_id, _ in corpus],
        doc_texts=doc_texts,
        query_ids=qids,
        query_texts=[str(queries[q].get("text") or "") for q in qids],
        qrels={q: qrels[q] for q in qids},
        content_hash=_hash_files(files),
        corpus_hash=_hash_files(files[:1]),
        warnings=warnings,
        doc_titles=[str(rec.get("title") or "").strip() for _, rec in corpus],
    )


def _hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _hash_strings(parts: list[str]) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def synthetic_dataset(
    n_docs: int = 500, n_queries: int = 50, n_topics: int = 10, doc_len: int = 40, query_len: int = 6,
    seed: int = 0, split: str = "test",
) -> Dataset:
    """Documents drawn from topic vocabularies; query i copies words of document `i * step`, its one relevant doc.

    Splits: "test" and "train", as SciFact; "train" has its own queries (ids `train-q<i>`), made from the
    documents halfway between the test queries' sources, so the two splits never judge the same document.

    Each topic owns a disjoint vocabulary of pseudo-words, so a query shares its words with its source
    document and that document's topic, and nothing else: a sensible encoder ranks the source first.
    """
    if split not in ("test", "train"):
        raise SplitMissing(f"synthetic: qrels/{split}.tsv missing; splits present: ['test', 'train']")
    if n_docs < 1 or n_queries < 1 or n_queries > n_docs:
        raise DatasetError(f"synthetic: need 1 <= n_queries ({n_queries}) <= n_docs ({n_docs})")
    rng = np.random.default_rng(seed)
    vocab = [[f"t{t}w{w}" for w in range(200)] for t in range(n_topics)]
    topics = rng.integers(0, n_topics, size=n_docs)
    doc_words = [rng.choice(vocab[t], size=doc_len) for t in topics]
    doc_texts = [" ".join(words) for words in doc_words]
    step = n_docs // n_queries
    offset = 0 if split == "test" or step < 2 else step // 2
    sources = [i * step + offset for i in range(n_queries)]
    if split != "test":
        rng = np.random.default_rng([seed, *split.encode()])  # same corpus, other queries
    query_texts = [" ".join(rng.choice(doc_words[s], size=query_len, replace=False)) for s in sources]
    doc_ids = [f"d{i}" for i in range(n_docs)]
    query_ids = [f"q{i}" if split == "test" else f"{split}-q{i}" for i in range(n_queries)]
    qrels = {qid: {doc_ids[s]: 1} for qid, s in zip(query_ids, sources)}
    params = f"{n_docs},{n_queries},{n_topics},{doc_len},{query_len},{seed}"
    return Dataset("synthetic", split, doc_ids, doc_texts, query_ids, query_texts, qrels,
                   _hash_strings(["synthetic", params, split]), _hash_strings(["synthetic", params]),
                   doc_titles=[" ".join(words[:query_len]) for words in doc_words])


def synthetic_vectors(
    n: int, dim: int, n_queries: int, n_clusters: int = 16, noise: float = 0.05, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors in Gaussian clusters, and queries that are slight perturbations of known base vectors.

    Returns (base, queries, source) where `source[i]` is the base row query i was made from, its
    nearest neighbor by construction when `noise` is small.
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, dim)).astype(np.float32)
    base = centers[rng.integers(0, n_clusters, size=n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    source = rng.choice(n, size=n_queries, replace=False)
    queries = base[source] + noise * rng.standard_normal((n_queries, dim)).astype(np.float32) / np.sqrt(dim)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return base.astype(np.float32), queries.astype(np.float32), source
