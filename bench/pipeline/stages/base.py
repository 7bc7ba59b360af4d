"""What every stage kind provides (see bench.pipeline.stages)."""

from __future__ import annotations

import json
import re
from typing import ClassVar, Protocol

HIDDEN = {"seed", "random_init", "training_sample_size"}  # in the key, not in names


class Retriever(Protocol):
    kind: ClassVar[str]
    output: ClassVar[str]  # what its encoder hands the index: "vectors", "text" or "hybrid"

    @classmethod
    def of_row(cls, row) -> "Retriever": ...

    def key(self) -> dict:
        """What makes two runs the same stage on any dataset (JSON-able; hashed into the pipeline id)."""

    def name(self) -> str:
        """Readable, the same on every dataset."""

    def tuned(self) -> dict[str, float]:
        """The values its tuned settings took on this run (results, not identity)."""


def params(text: str) -> dict:
    return json.loads(text) if text else {}


def params_name(values: dict, short: dict[str, str] | None = None) -> str:
    short = short or {}
    return " ".join(f"{short.get(k, k)}={v}" for k, v in sorted(values.items()) if k not in HIDDEN and v is not None)


_TRAINED = re.compile(r"^(?:.*/)?(?P<base>.+?)(?:-[0-9a-f]{16,})?$")


def model_name(identity: str) -> str:
    """A model's identity (`<path or hub name>@sha256:<digest>[|variant]`) as a short readable name that still
    tells models apart: the name without its folder or cache hash, the digest's first 8 characters, the variant
    (`all-MiniLM-L6-v2@83c1a1b1`, `cross-listwise@9dee9ac8|max_length=192`)."""
    head, _, variant = identity.partition("|")
    path, _, digest = head.partition("@")
    base = _TRAINED.match(path).group("base") if path else head
    digest = digest.removeprefix("sha256:")[:8]
    return base + (f"@{digest}" if digest else "") + (f"|{variant}" if variant else "")


class FirstStageKind:
    """What a kind of first stage does beyond describing a row, with a dense retriever's behaviour as the default:
    check its config entry, resolve its model, plan its grid, wrap its index, compute its ground truth. The sweep,
    the planner, the config and the encoders ask the registry (bench.pipeline.stages.KINDS), never the kind's name."""

    output: ClassVar[str] = "vectors"
    searched: ClassVar[str] = "vectors"  # the `input` of the backends its index runs on (bench.search.indexes)

    @classmethod
    def made_of(cls, spec) -> str | None:
        """The config encoder (its name) a stage of this kind is built on and identified by, or None: its own model."""
        return None

    @classmethod
    def make_encoder(cls, model: str, max_seq_length, **runs):
        """The encoder of `model`; `runs`: how its network runs (bench.pipeline.config.HOW_IT_RUNS's fields but the search's)."""
        from bench.models.encoders import SentenceEncoder

        return SentenceEncoder(model, max_seq_length, **runs)

    @classmethod
    def depths(cls, spec) -> list:
        """Extra grid dimension of its search (a fusion's depth per side); [None] for none."""
        return [None]

    @classmethod
    def wrap_index(cls, spec, index, weights):
        """The first stage's index around the backend's (`weights`: tuned fusion weights)."""
        return index

    @classmethod
    def ground_truth(cls, measurer, cells: list, depth: int):
        """(exact top-`depth` documents of every query, a function cell -> the exact top-K that cell's recall@K is
        measured against): exact inner-product search, or BM25 with default parameters for text backends."""
        from bench.search.indexes import BACKENDS, exact_neighbors, exact_neighbors_at
        from bench.search.indexes.base import Neighbors

        exact_backend = "bm25s" if BACKENDS[cells[0].backend].input == "text" else "exact"
        docs, queries = measurer.embeddings.docs, measurer.embeddings.queries
        exact = exact_neighbors(docs, queries, depth, measurer.build_threads, exact_backend)
        if exact_backend == "bm25s":  # equal BM25 scores are common: which of them a top-K keeps at its cut is the
            # library's own (and its selection's, which differs between instruction sets), so the truth at each K is a
            # search at K, as the cell's is, not a cut of a deeper one
            searched = exact_neighbors_at(docs, queries, sorted({c.k for c in cells}), measurer.build_threads,
                                          exact_backend)
            truth_at = {k: measurer.to_documents(hits, k).ids for k, hits in searched.items()}
        else:
            truth_at = {k: measurer.to_documents(Neighbors(exact.ids[:, :k], exact.scores[:, :k]), k).ids
                        for k in {c.k for c in cells}}
        return measurer.to_documents(exact, depth).ids, lambda cell: truth_at[cell.k]

    @classmethod
    def scale_note(cls, dense_note: str) -> str:
        """The cost table's note on how it grows with N, given the scale series' note for a dense index."""
        return dense_note
