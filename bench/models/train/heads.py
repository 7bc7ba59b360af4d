"""Linear heads over frozen vectors: a bi-encoder (one head shared by queries and documents) or a twin tower (a head
per side), trained like for like.

The vectors come from any encoder (cached like a corpus): a twin's two sides may start from different encoders (a
multilingual one for queries, an English one for documents). Every architecture starts from the same point (each
head the identity, no bias: the untrained model scores exactly as its encoders do), sees the same examples in the same
seeded batches for the same steps, and is trained with InfoNCE over in-batch negatives (other copies of a query's
positive document masked out, as in bench.models.train.towers). Only weight sharing differs. The heads' weights are
kept at each checkpoint epoch so that the number of epochs can be chosen on dev queries afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.models.train.towers import info_nce

ARCHITECTURES = ("bi", "twin")


@dataclass(frozen=True)
class HeadsTraining:
    """How the heads are trained (a config's `[train]` table)."""

    checkpoints: tuple[int, ...] = (0, 1, 2, 5, 10, 20)  # epochs at which the heads are kept (0: untrained)
    batch_size: int = 64
    lr: float = 1e-3
    tau: float = 0.05
    seed: int = 0

    def __post_init__(self):
        if not self.checkpoints or sorted(set(self.checkpoints)) != list(self.checkpoints) or self.checkpoints[0] < 0:
            raise ValueError(f"checkpoints must be increasing epoch counts >= 0, got {list(self.checkpoints)!r}")
        if self.batch_size < 2 or self.lr <= 0 or self.tau <= 0:
            raise ValueError("batch_size >= 2, lr > 0 and tau > 0 are required")


@dataclass(frozen=True)
class Heads:
    """One checkpoint: a (dim_in, dim) matrix per side (the same object on both sides of a bi-encoder)."""

    query: np.ndarray
    document: np.ndarray

    def project(self, vectors: np.ndarray, side: str) -> np.ndarray:
        out = vectors @ (self.query if side == "query" else self.document)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def train_heads(architecture: str, queries: np.ndarray, docs: np.ndarray, pairs: list[tuple[int, int]],
                training: HeadsTraining) -> dict[int, Heads]:
    """Heads at each checkpoint epoch, trained on `pairs` (query row, positive doc row) of `queries` and `docs`."""
    import torch

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if architecture == "bi" and queries.shape[1] != docs.shape[1]:
        raise ValueError(f"a bi-encoder's head reads one space: query vectors {queries.shape[1]}-d, documents "
                         f"{docs.shape[1]}-d")
    if len(pairs) < training.batch_size:
        raise ValueError(f"{len(pairs)} training pairs, fewer than batch_size {training.batch_size}")
    torch.manual_seed(training.seed)
    rng = np.random.default_rng(training.seed)
    q_all, d_all = torch.from_numpy(np.ascontiguousarray(queries)), torch.from_numpy(np.ascontiguousarray(docs))
    dim = min(queries.shape[1], docs.shape[1])
    query_head = torch.nn.Parameter(torch.eye(queries.shape[1], dim))
    doc_head = query_head if architecture == "bi" else torch.nn.Parameter(torch.eye(docs.shape[1], dim))
    optimizer = torch.optim.AdamW([query_head] if architecture == "bi" else [query_head, doc_head], lr=training.lr)
    positives: dict[int, set[int]] = {}
    for qi, doc in pairs:
        positives.setdefault(qi, set()).add(doc)

    def kept() -> Heads:
        q = query_head.detach().numpy().copy()
        return Heads(q, q if architecture == "bi" else doc_head.detach().numpy().copy())

    out = {0: kept()} if training.checkpoints[0] == 0 else {}
    steps = len(pairs) // training.batch_size
    for epoch in range(1, training.checkpoints[-1] + 1):
        order = rng.permutation(len(pairs))
        for step in range(steps):
            batch = [pairs[i] for i in order[step * training.batch_size:(step + 1) * training.batch_size]]
            rows, docs_in = [qi for qi, _ in batch], [doc for _, doc in batch]
            q = torch.nn.functional.normalize(q_all[rows] @ query_head, dim=-1)
            d = torch.nn.functional.normalize(d_all[docs_in] @ doc_head, dim=-1)
            mask = torch.tensor([[j != i and doc in positives[qi] for j, doc in enumerate(docs_in)]
                                 for i, qi in enumerate(rows)])
            loss = info_nce(q, d, training.tau, mask)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        if epoch in training.checkpoints:
            out[epoch] = kept()
    return out
