"""The backends by name, without importing their libraries (faiss, hnswlib, ScaNN, bm25s): where each one's class
lives, what it searches (`input`: "vectors" or "text", an encoder's `output`) and the short names tables give its
parameters. Rendering and analysis read this; measuring loads the classes (bench.search.indexes.BACKENDS).
Adding a backend: its module and one line in LISTINGS."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Listing:
    name: str
    path: str  # "module:Class"
    input: str = "vectors"
    short_names: dict[str, str] = field(default_factory=dict)  # parameter -> its short name in tables
    served: str = ""  # the engine serving it over a socket (bench.search.services); "" in-process
    twin: str = ""  # a served backend's algorithm in-process: what the database layer's cost is measured against
    label: str = ""  # its name in pipeline names ("" : the name itself)
    complete: bool = False  # returns every document in score order: its top 10 is the same for every K >= 10


_HNSW = {"ef_construction": "efC"}
_PQ = {"k_factor": "kf"}
_INDEXES = "bench.search.indexes."
_POSTGRES = "PostgreSQL + pgvector"
LISTINGS = (
    Listing("exact", _INDEXES + "exact:ExactIndex", complete=True),
    Listing("faiss_ivf", _INDEXES + "faiss_ivf:FaissIVF", label="IVF"),
    Listing("hnsw", _INDEXES + "hnsw:HnswIndex", short_names=_HNSW, label="HNSW"),
    Listing("scann", _INDEXES + "scann_index:ScannIndex", label="ScaNN", short_names={
        "anisotropic_quantization_threshold": "aqt", "dimensions_per_block": "dpb",
        "num_leaves_to_search": "leaves_searched", "pre_reorder_num_neighbors": "pre_reorder"}),
    Listing("bm25s", _INDEXES + "bm25:Bm25Index", input="text", complete=True),
    Listing("faiss_sq", _INDEXES + "faiss_sq:FaissSQ", label="SQ"),
    Listing("faiss_ivfsq", _INDEXES + "faiss_ivfsq:FaissIVFSQ", label="IVF-SQ"),
    Listing("faiss_ivfpq", _INDEXES + "faiss_ivfpq:FaissIVFPQ", short_names=_PQ, label="IVF-PQ"),
    Listing("faiss_hnsw", _INDEXES + "faiss_hnsw:FaissHNSW", short_names=_HNSW, label="Faiss HNSW"),
    Listing("faiss_pq", _INDEXES + "faiss_pq:FaissPQ", short_names=_PQ, label="PQ"),
    Listing("usearch", _INDEXES + "usearch_hnsw:UsearchHNSW", label="USearch HNSW", short_names={
        "connectivity": "M", "expansion_add": "efC", "expansion_search": "ef"}),
    Listing("voyager", _INDEXES + "voyager_hnsw:VoyagerHNSW", short_names=_HNSW, label="Voyager HNSW"),
    Listing("qdrant_edge", _INDEXES + "qdrant_edge:QdrantEdgeHNSW", label="Qdrant Edge HNSW", short_names={"ef_construct": "efC", "hnsw_ef": "ef"}),
    Listing("pgvector_hnsw", _INDEXES + "pgvector:PgvectorHNSW", label="pgvector HNSW", short_names={"ef_construction": "efC",
                                                                              "ef_search": "ef"},
            served=_POSTGRES, twin="hnsw"),
    Listing("pgvector_ivfflat", _INDEXES + "pgvector:PgvectorIVFFlat", served=_POSTGRES, twin="faiss_ivf",
            label="pgvector IVFFlat"),
    Listing("lucene", _INDEXES + "lucene_bm25:LuceneBM25", input="text", label="Lucene", complete=True),
)
CATALOG: dict[str, Listing] = {listing.name: listing for listing in LISTINGS}


def load_registry(paths) -> dict[str, type]:
    """`"module:Class"` registry lines -> {cls.name: cls} (the backends, the fusion rules in bench.search.fusion)."""
    classes = [getattr(importlib.import_module(module), name) for module, name in (p.split(":") for p in paths)]
    return {cls.name: cls for cls in classes}


def backends_taking(input: str) -> list[str]:
    """The listed backends that search `input` ("vectors" or "text"), in the catalog's order."""
    return [name for name, listing in CATALOG.items() if listing.input == input]


def backend_label(backend: str) -> str:
    """`backend` as pipeline names call it (HNSW, IVF-PQ, pgvector HNSW ...)."""
    listing = CATALOG.get(backend)
    return listing.label or backend if listing else backend


def complete_order(backend: str) -> bool:
    """Whether `backend` ranks every document by its exact score, so that its top 10 does not depend on K."""
    listing = CATALOG.get(backend)
    return bool(listing and listing.complete)


def short_names(backend: str) -> dict[str, str]:
    """The short names tables give `backend`'s parameters ({} for a backend not listed)."""
    listing = CATALOG.get(backend)
    return listing.short_names if listing else {}
