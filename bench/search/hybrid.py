"""The hybrid first stage: BM25 and a dense encoder each retrieve their own top-`depth`, fused into one top-K.

A config states it as an encoder of type "hybrid" whose `hybrid` table names the dense encoder (another
encoder of the same config) and the fusion rule (bench.search.fusion.RULES): reciprocal rank fusion with constant
`rrf_k`, a convex combination of min-max normalized scores, or any registered rule; a weighted rule puts `weight`
on the dense side, a number or "dev" (chosen on the dev queries, over exact dense search, per depth, before any
cell is measured). `depth` (K' per side) is a
grid dimension. The dense side runs through every vector backend of the sweep; the two searches run one
after the other on one thread, then the fusion: all of it inside the timed path. Memory is both indexes.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.search.fusion import METHODS, fuse, fuse_one, rule_of
from bench.search.indexes import exact_neighbors_at, make_index
from bench.search.indexes.base import AnnIndex, Neighbors, ParamError, require

WEIGHTS = tuple(round(w, 2) for w in np.arange(0.05, 1.0, 0.05))  # the fusion weights "dev" chooses from


@dataclass(frozen=True)
class HybridSpec:
    """An encoder's `hybrid` table."""

    dense: str  # the name of a (whole-document) vector encoder of the same config
    fusion: str = "rrf"  # a rule of bench.search.fusion.RULES
    rrf_k: float = 60.0
    weight: float | typing.Literal["dev"] = "dev"  # weighted rules: weight of the dense side
    depth: list[int] = field(default_factory=lambda: [100, 1000])  # K' retrieved by each side
    k1: float = 0.9  # BM25 side
    b: float = 0.4
    lexical: str = "bm25s"  # the BM25 library of the lexical side: a text backend of the catalog (bm25s, lucene)
    language: str | None = None  # the lexical side's language (bm25s's `language`; None: English)

    def lexical_build(self) -> dict:
        return {"k1": self.k1, "b": self.b, **({} if self.language is None else {"language": self.language})}

    def __post_init__(self):
        if self.fusion not in METHODS:
            raise ValueError(f"fusion must be one of {METHODS}, got '{self.fusion}'")
        if self.rrf_k <= 0:
            raise ValueError(f"rrf_k must be > 0, got {self.rrf_k}")
        if self.weight != "dev" and not 0 <= self.weight <= 1:
            raise ValueError(f"weight must be in [0, 1] or 'dev', got {self.weight!r}")
        if not self.depth or any(d < 1 for d in self.depth):
            raise ValueError(f"depth must be a non-empty list of positive integers, got {self.depth!r}")
        if not rule_of(self.fusion).weighted() and self.weight != "dev":
            raise ValueError(f"weight does not apply to fusion '{self.fusion}'")
        from bench.search.catalog import backends_taking

        lexical = backends_taking("text")
        if self.lexical not in lexical:
            raise ValueError(f"lexical must be one of {lexical}, got '{self.lexical}'")
        if self.language is not None and self.lexical != "bm25s":
            raise ValueError(f"language applies to the bm25s lexical side, not '{self.lexical}'")


class HybridItems:
    """Texts and their dense vectors, row-aligned: what a hybrid index indexes and is queried with."""

    def __init__(self, texts, vectors: np.ndarray):
        self.texts = np.asarray(texts, dtype=object)
        self.vectors = vectors
        if len(self.texts) != len(self.vectors):
            raise ValueError(f"{len(self.texts)} texts vs {len(self.vectors)} vectors")

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return HybridItems(self.texts[index], self.vectors[index])
        return self.texts[index], self.vectors[index]

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class HybridIndex(AnnIndex):
    """A dense index (any vector backend) and a BM25 index; search params: the dense backend's, plus `depth`."""

    name = "hybrid"

    def __init__(self, dense: AnnIndex, spec: HybridSpec, weights: dict[int, float] | None = None):
        """`weights`: the fusion weight per depth when the spec's weight is "dev" (chosen by `choose_weights`)."""
        self.dense, self.spec, self.weights = dense, spec, weights if weights is not None else {}
        # "dev", or "test" where the dataset has no dev queries (prepare.hybrid_weights; a plain dict: "dev")
        chosen_on = getattr(self.weights, "chosen_on", "dev")
        self.weight_chosen_on = chosen_on if rule_of(spec.fusion).weighted() and spec.weight == "dev" else ""
        self.sparse = make_index(spec.lexical, **spec.lexical_build())
        self.build = dense.build
        self.n = 0
        self.k = 0
        self.depth = 0

    def check_build(self, n: int) -> None:
        self.dense.check_build(n)

    def check_search(self, k: int, search: dict[str, Any]) -> dict[str, Any]:
        search = dict(search)
        depth = search.pop("depth", None)
        require(isinstance(depth, int) and depth >= 1, f"hybrid: search needs an integer depth >= 1, got {depth!r}")
        require(k <= depth, f"hybrid: K ({k}) exceeds the depth ({depth}) each side retrieves")
        return {**self.dense.check_search(depth, search), "depth": depth}

    def search_description(self, search: dict[str, Any]) -> dict[str, Any]:
        values = {"rrf_k": self.spec.rrf_k, "weight": fusion_weight(self.spec, self.weights, search["depth"])}
        lexical = {} if self.spec.lexical == "bm25s" else {"lexical": self.spec.lexical}  # rows before it: bm25s
        if self.spec.language is not None:
            lexical["language"] = self.spec.language
        return {**search, "fusion": self.spec.fusion, **{s: values[s] for s in rule_of(self.spec.fusion).settings},
                **lexical}

    def fit(self, items: HybridItems, threads: int) -> None:
        self.check_build(len(items))
        self.n = len(items)
        self.dense.fit(items.vectors, threads)
        self.sparse.fit(items.texts, threads)

    def _fit(self, vectors, threads) -> None:  # fit is overridden: texts and vectors
        raise ParamError("hybrid indexes texts and vectors")

    def set_search(self, k: int, **search: Any) -> None:
        checked = self.check_search(k, search)
        self.k, self.depth = k, checked.pop("depth")
        self.dense.set_search(self.depth, **checked)
        self.sparse.set_search(self.depth)

    def _set_search(self, k, search) -> None:  # set_search is overridden
        pass

    def query(self, item) -> np.ndarray:
        text, vector = item
        dense = self.dense.batch_query(vector[None, :], 1)
        sparse = self.sparse.batch_query([text], 1)
        return fuse_one(dense.ids[0], dense.scores[0], sparse.ids[0], sparse.scores[0], self.spec.fusion, self.k,
                        fusion_weight(self.spec, self.weights, self.depth), self.spec.rrf_k)[0]

    def batch_query(self, items: HybridItems, threads: int) -> Neighbors:
        return fused(self.spec, self.weights, self.dense.batch_query(items.vectors, threads),
                     self.sparse.batch_query(items.texts, threads), self.depth, self.k)

    def size_bytes(self) -> int:
        return self.dense.size_bytes() + self.sparse.size_bytes()

    def close(self) -> None:
        try:
            self.dense.close()
        finally:
            self.sparse.close()


class ChosenWeights(dict):
    """A fusion weight per depth, and the queries it was chosen on: "dev", or "test" where there are none."""

    def __init__(self, weights: dict[int, float], chosen_on: str = "dev", encoded: bool = False):
        super().__init__(weights)
        self.chosen_on = chosen_on
        self.encoded = encoded  # choosing encoded the dense side's corpus (it was not cached)


def fusion_weight(spec: HybridSpec, weights: dict[int, float], depth: int) -> float:
    """The dense side's weight at `depth`: the spec's number, or the dev-chosen one (unweighted rules: 0.5)."""
    if not rule_of(spec.fusion).weighted():
        return 0.5
    if spec.weight != "dev":
        return float(spec.weight)
    if depth not in weights:
        raise ParamError(f"hybrid: no dev-chosen weight for depth {depth} (prepare the sweep first)")
    return weights[depth]


def fused(spec: HybridSpec, weights: dict[int, float], dense: Neighbors, sparse: Neighbors, depth: int,
          k: int) -> Neighbors:
    """The top-`k` of the spec's fusion of each side's top-`depth`."""
    cut = [Neighbors(n.ids[:, :depth], n.scores[:, :depth]) for n in (dense, sparse)]
    return fuse(*cut, spec.fusion, k, fusion_weight(spec, weights, depth), spec.rrf_k)


def exact_hybrid(spec: HybridSpec, items: HybridItems, queries: HybridItems, depths,
                 threads: int) -> dict[int, tuple[Neighbors, Neighbors]]:
    """Per depth, the exact dense and the BM25 top-`depth` of `queries` (fuse them with `fused`): each index built
    once and searched at every depth as a hybrid cell of that depth searches it (a deeper search cut to `depth` may
    hold other members of a tie at the cut, and which of several equal scores a library keeps differs between
    instruction sets)."""
    dense = exact_neighbors_at(items.vectors, queries.vectors, depths, threads)
    sparse = exact_neighbors_at(items.texts, queries.texts, depths, threads, spec.lexical, **spec.lexical_build())
    return {d: (dense[d], sparse[d]) for d in dense}


def choose_weights(spec: HybridSpec, items: HybridItems, queries: HybridItems, dev, threads: int) -> dict[int, float]:
    """For a weighted rule with weight "dev": per depth, the weight with the best mean nDCG@10 on `dev` (a dataset of the
    same queries as `queries`), over exact dense search; ties go to the weight nearest 0.5."""
    from bench.data.metrics import per_query_quality

    if not rule_of(spec.fusion).weighted() or spec.weight != "dev":
        return {}
    chosen = {}
    searched = exact_hybrid(spec, items, queries, spec.depth, threads)
    for depth in spec.depth:
        dense, sparse = searched[depth]
        quality = {w: float(per_query_quality(fused(spec, {depth: w}, dense, sparse, depth, 10).ids, dev)
                            ["ndcg_at_10"].mean()) for w in WEIGHTS}
        chosen[depth] = max(WEIGHTS, key=lambda w: (round(quality[w], 10), -abs(w - 0.5)))
    return chosen
