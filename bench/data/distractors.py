"""A distractor collection: a BEIR dataset plus N paragraphs of another corpus that nothing judges.

A config states it as `distractors = { source = "wikipedia-2015", paragraphs = 100000, seed = 0 }`: whole articles
are drawn in a seeded order until at least `paragraphs` paragraphs are in (an article's paragraphs stay together,
so a near-duplicate of a judged document is as likely as in the source). The dataset keeps its queries, splits and
qrels; only its corpus grows, and its content and corpus hashes change with the draw, so every cell id, cache entry
and results row of a distractor collection is its own. The source is read as BEIR corpus lines, plain or zstd-
compressed (`corpus.jsonl.zst`, read by the `zstandard` package), ids `<article>-<paragraph>`; the draw is cached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.cache import atomic_write_bytes, cache_dir, content_key
from bench.data.datasets import Dataset, DatasetError, data_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistractorSpec:
    """A config's `distractors` table."""

    source: str  # a folder under the data dir (or a path) holding corpus.jsonl.zst or corpus.jsonl
    paragraphs: int  # at least this many, whole articles at a time
    seed: int = 0
    # a TSV under the data dir (or a path) whose `article` column names articles never to draw (by title, "_" read as
    # a space, case ignored): the articles the collection's own documents come from (XQuAD's paragraphs.tsv)
    exclude: str | None = None

    def key(self) -> dict:
        """What identifies the draw (a spec without `exclude` keys as it always did)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def __post_init__(self):
        if not isinstance(self.paragraphs, int) or self.paragraphs < 1:
            raise ValueError(f"paragraphs must be a positive integer, got {self.paragraphs!r}")


def corpus_file(spec: DistractorSpec, root: Path | None = None) -> Path:
    folder = Path(spec.source) if Path(spec.source).is_dir() else Path(root or data_dir()) / spec.source
    for name in ("corpus.jsonl.zst", "corpus.jsonl"):
        if (folder / name).exists():
            return folder / name
    raise DatasetError(f"{folder}: no corpus.jsonl.zst or corpus.jsonl (distractors.source = '{spec.source}')")


def _lines(path: Path):
    """The file's lines as text, decompressing zstd on the fly."""
    if path.suffix == ".zst":
        try:
            import zstandard
        except ImportError:  # pragma: no cover - a dependency of the package
            raise DatasetError(f"{path}: reading .zst needs the `zstandard` package") from None
        with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            yield from io.TextIOWrapper(reader, encoding="utf-8-sig")
    else:
        with path.open(encoding="utf-8-sig") as handle:
            yield from handle


def _article(doc_id: str) -> str:
    return doc_id.rsplit("-", 1)[0]


def _title(text: str) -> str:
    return text.replace("_", " ").strip().casefold()


def excluded_titles(spec: DistractorSpec, root: Path | None = None) -> set[str]:
    """The titles `spec.exclude` names (read from its `article` column), normalized as `_title` does."""
    if spec.exclude is None:
        return set()
    path = Path(spec.exclude) if Path(spec.exclude).is_file() else Path(root or data_dir()) / spec.exclude
    if not path.is_file():
        raise DatasetError(f"distractors.exclude: {path} is not a file")
    header, *lines = path.read_text(encoding="utf-8").splitlines()
    columns = header.split("\t")
    if "article" not in columns:
        raise DatasetError(f"distractors.exclude: {path} has no 'article' column (header: {header!r})")
    column = columns.index("article")
    return {_title(line.split("\t")[column]) for line in lines if line.strip()}


def draw(spec: DistractorSpec, root: Path | None = None) -> tuple[list[str], list[str]]:
    """(ids, texts) of the drawn paragraphs, in the source's order: whole articles in a seeded order until at least
    `paragraphs`. Two passes over the source (counts, then texts); cached by the source's size and the spec."""
    path = corpus_file(spec, root)
    excluded = excluded_titles(spec, root)
    key = content_key({"source": str(path.name), "bytes": path.stat().st_size, **spec.key(),
                       **({"excluded": sorted(excluded)} if excluded else {})})
    cached = cache_dir() / "distractors" / f"{key}.jsonl"
    if cached.exists():
        rows = [json.loads(line) for line in cached.read_text().splitlines()]
        return [r[0] for r in rows], [r[1] for r in rows]
    counts: dict[str, int] = {}
    left_out: set[str] = set()
    for line in _lines(path):
        if line.strip():
            record = json.loads(line)
            article = _article(record["_id"])
            if excluded and _title(record.get("title") or "") in excluded:
                left_out.add(article)
                continue
            counts[article] = counts.get(article, 0) + 1
    articles = sorted(counts)
    order = np.random.default_rng(spec.seed).permutation(len(articles))
    chosen, total = set(), 0
    for i in order:
        if total >= spec.paragraphs:
            break
        chosen.add(articles[i])
        total += counts[articles[i]]
    if total < spec.paragraphs:
        raise DatasetError(f"{path}: {total} paragraphs in all, fewer than distractors.paragraphs = {spec.paragraphs}")
    ids, texts = [], []
    for line in _lines(path):
        if line.strip():
            record = json.loads(line)
            if _article(record["_id"]) in chosen:
                ids.append(str(record["_id"]))
                texts.append(((record.get("title") or "") + " " + record.get("text", "")).strip())
    atomic_write_bytes(cached, lambda tmp: tmp.write_text("".join(json.dumps([i, t]) + "\n" for i, t in zip(ids, texts))))
    log.info("distractors: %d paragraphs of %d articles from %s (seed %d; %d articles excluded by title)", len(ids),
             len(chosen), path, spec.seed, len(left_out))
    return ids, texts


def paragraph_texts(path: Path, ids: set[str]) -> dict[str, str]:
    """The `text` field (no title) of the paragraphs `ids` of a corpus file, in one pass."""
    out = {}
    for line in _lines(path):
        if line.strip():
            record = json.loads(line)
            if str(record["_id"]) in ids:
                out[str(record["_id"])] = record.get("text", "")
    return out


def with_distractors(dataset: Dataset, ids: list[str], texts: list[str], spec: DistractorSpec) -> Dataset:
    """The dataset with the drawn paragraphs appended to its corpus (queries and judgments unchanged)."""
    clash = set(ids) & set(dataset.doc_ids)
    if clash:
        raise DatasetError(f"distractors from '{spec.source}' reuse {len(clash)} document ids of '{dataset.name}'")
    digest = hashlib.sha256(json.dumps([spec.key(), len(ids), ids[:5], ids[-5:]]).encode()).hexdigest()[:16]
    titles = (dataset.doc_titles + [""] * len(ids)) if dataset.doc_titles else []
    return dataclasses.replace(dataset, name=f"{dataset.name}+{Path(spec.source).name}-{len(ids)}",
                               doc_ids=dataset.doc_ids + ids, doc_texts=dataset.doc_texts + texts, doc_titles=titles,
                               content_hash=hashlib.sha256(f"{dataset.content_hash}|{digest}".encode()).hexdigest()[:16],
                               corpus_hash=hashlib.sha256(f"{dataset.corpus_hash}|{digest}".encode()).hexdigest()[:16])
