"""How the run measures each stage kind (bench.pipeline.stages describes them): the encoder a config's encoder
builds, the index around the backend's, the ground truth its recall@K is measured against. Keyed by the kind's
`kind`; a kind without an entry measures as a dense retriever. Adding a stage kind: its description file, its
line in bench.pipeline.stages.RETRIEVERS, and here a class and a line in HOOKS where it measures otherwise."""

from __future__ import annotations

from bench.pipeline.stages import kind_of
from bench.data.rankings import Neighbors
from bench.models.encoders import SentenceEncoder, TextPassthrough, engine_module
from bench.search.hybrid import HybridIndex, exact_hybrid, fused
from bench.search.indexes import exact_neighbors, exact_neighbors_at


class Measuring:
    """A dense retriever's: a sentence encoder, the backend's index as is, exact inner-product search (or BM25 with
    default parameters on a text backend) as the truth."""

    @staticmethod
    def make_encoder(model: str, max_seq_length, **runs):
        """The encoder of `model`; `runs`: how its network runs (bench.pipeline.config.HOW_IT_RUNS's fields but the
        search's)."""
        engine = engine_module(model)  # a model its own engine serves (bench.models.encoders.ENGINES)
        if engine is not None:
            return engine.Encoder(max_seq_length, **runs)
        return SentenceEncoder(model, max_seq_length, **runs)

    @staticmethod
    def wrap_index(spec, index, weights):
        """The first stage's index around the backend's (`weights`: tuned fusion weights)."""
        if spec.mips_reduction:
            from bench.search.mips import ReducedIndex

            return ReducedIndex(index)
        return index

    @staticmethod
    def ground_truth(measurer, cells: list, depth: int):
        """(exact top-`depth` documents of every query, a function cell -> the exact top-K that cell's recall@K is
        measured against)."""
        docs, queries = measurer.embeddings.docs, measurer.embeddings.queries
        exact = exact_neighbors(docs, queries, depth, measurer.build_threads)
        truth_at = {k: measurer.to_documents(Neighbors(exact.ids[:, :k], exact.scores[:, :k]), k).ids
                    for k in {c.k for c in cells}}
        return measurer.to_documents(exact, depth).ids, lambda cell: truth_at[cell.k]


class LexicalMeasuring(Measuring):
    """BM25: the texts pass through untouched (tokenizing is the index's, in the timed path)."""

    @staticmethod
    def make_encoder(model, max_seq_length, **runs):
        return TextPassthrough()

    @staticmethod
    def ground_truth(measurer, cells, depth):
        """BM25 against itself: bm25s at its defaults in each cell's `language`, searched at each K (equal BM25 scores
        are common: which of them a top-K keeps at its cut is the library's own, and its selection's, which differs
        between instruction sets, so the truth at K is a search at K, as the cell's is, not a cut of a deeper one)."""
        docs, queries = measurer.embeddings.docs, measurer.embeddings.queries
        ks = sorted({c.k for c in cells} | {depth})
        truth = {}
        for language in dict.fromkeys(c.build.get("language") for c in cells):
            searched = exact_neighbors_at(docs, queries, ks, measurer.build_threads, "bm25s",
                                          **({} if language is None else {"language": language}))
            truth[language] = {k: measurer.to_documents(hits, k).ids for k, hits in searched.items()}
        return truth[cells[0].build.get("language")][depth], lambda cell: truth[cell.build.get("language")][cell.k]


class FusionMeasuring(Measuring):
    """A fusion: the hybrid index around the dense backend's; the truth is the same fusion of BM25 and exact dense
    search, each side searched at each cell's depth (as the cell searches)."""

    @staticmethod
    def wrap_index(spec, index, weights):
        return HybridIndex(index, spec.hybrid_spec, weights)

    @staticmethod
    def ground_truth(measurer, cells, depth):
        spec = measurer.encoder.hybrid_spec
        depths = sorted({c.search["depth"] for c in cells})
        searched = exact_hybrid(spec, measurer.embeddings.docs, measurer.embeddings.queries, depths,
                                measurer.build_threads)
        truth = {d: fused(spec, measurer.weights, *searched[d], d, d).ids for d in depths}
        return truth[max(depths)][:, :depth], lambda cell: truth[cell.search["depth"]][:, :cell.k]


HOOKS: dict[str, type[Measuring]] = {"bm25": LexicalMeasuring, "fusion": FusionMeasuring}


def hooks_of(type_name: str) -> type[Measuring]:
    """How a config's encoder `type` is measured."""
    return HOOKS.get(kind_of(type_name).kind, Measuring)


def make_encoder(type_name: str, model: str, max_seq_length: int | None, **runs):
    """The encoder of a config's encoder `type`; `runs`: device, query_precision, doc_precision, query_runtime,
    doc_runtime, normalize (bench.models.encoders.SentenceEncoder's)."""
    return hooks_of(type_name).make_encoder(model, max_seq_length, **runs)
