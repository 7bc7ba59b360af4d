"""Long documents: split into token windows, index every passage, aggregate passage hits to documents.

Passages are windows of `tokens` tokens every `stride` tokens of the encoder's own tokenizer, cut from
the original text by character offsets. A search returns K passages; `aggregate` turns them into at most
K documents: `max` (a document scores its best retrieved passage, MaxP), `sum` (the sum of its retrieved
passages' scores, SumP) or `first` (only first passages count, FirstP).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.data.rankings import Neighbors

AGGREGATIONS = ("max", "sum", "first")


@dataclass(frozen=True)
class Chunking:
    tokens: int  # window length in tokens
    stride: int  # tokens between window starts (< tokens: overlapping windows)
    aggregate: str = "max"

    def __post_init__(self):
        if self.tokens < 1 or not 1 <= self.stride:
            raise ValueError(f"chunking needs tokens >= 1 and stride >= 1, got {self.tokens}, {self.stride}")
        if self.aggregate not in AGGREGATIONS:
            raise ValueError(f"aggregate must be one of {AGGREGATIONS}, got '{self.aggregate}'")


@dataclass(frozen=True)
class Passages:
    texts: list[str]
    doc: np.ndarray  # passage row -> document row
    position: np.ndarray  # passage row -> its index within the document (0 = first)


def split_passages(texts: list[str], tokenizer, chunking: Chunking) -> Passages:
    """Token windows of every text (a text shorter than one window is one passage, an empty text too)."""
    out, doc, position = [], [], []
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
    for row, (text, offsets) in enumerate(zip(texts, encoded["offset_mapping"])):
        n = len(offsets)
        starts = list(range(0, max(n - chunking.tokens, 0) + 1, chunking.stride))
        if n and starts[-1] + chunking.tokens < n:
            starts.append(n - chunking.tokens)  # the tail gets a full window too
        for i, start in enumerate(starts):
            end = min(start + chunking.tokens, n) - 1
            out.append(text[offsets[start][0]:offsets[end][1]] if n else text)
            doc.append(row)
            position.append(i)
    return Passages(out, np.array(doc, dtype=np.int64), np.array(position, dtype=np.int64))


def aggregate(hits: Neighbors, passages: Passages, how: str, k: int) -> Neighbors:
    """Per query, the documents of the retrieved passages ranked by `how`, padded with -1 to `k`."""
    ids = np.full((len(hits.ids), k), -1, dtype=np.int64)
    scores = np.full((len(hits.ids), k), np.nan, dtype=np.float32)
    for qi, (row, row_scores) in enumerate(zip(hits.ids, hits.scores)):
        valid = row >= 0
        rows, values = row[valid], row_scores[valid].astype(np.float64)
        if how == "first":
            keep = passages.position[rows] == 0
            rows, values = rows[keep], values[keep]
        docs = passages.doc[rows]
        if how == "sum":
            unique, inverse = np.unique(docs, return_inverse=True)
            totals = np.bincount(inverse, weights=values)
            order = np.argsort(-totals, kind="stable")
            ranked, ranked_scores = unique[order], totals[order]
        else:  # max / first: passages arrive best first, so a document's first hit is its best
            unique, first_seen = np.unique(docs, return_index=True)
            order = np.sort(first_seen)
            ranked, ranked_scores = docs[order], values[order]
        n = min(k, len(ranked))
        ids[qi, :n], scores[qi, :n] = ranked[:n], ranked_scores[:n]
    return Neighbors(ids, scores)


def first_documents(passage_ids: np.ndarray, passages: Passages) -> np.ndarray:
    """The latency path's aggregation: distinct documents of one query's passages, in rank order."""
    docs = passages.doc[passage_ids[passage_ids >= 0]]
    _, first_seen = np.unique(docs, return_index=True)
    return docs[np.sort(first_seen)]
