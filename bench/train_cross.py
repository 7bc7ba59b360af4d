"""Fine-tune a cross-encoder on a dataset's train judgments, negatives mined by the first-stage bi-encoder.

Each training example is a query with one judged positive and `negatives` documents sampled from the
bi-encoder's ranks [neg_rank_lo, neg_rank_hi) that are not judged relevant (skipping the very top,
which in sparsely judged collections holds unjudged positives). Losses: pointwise BCE, pairwise
margin ranking, listwise softmax cross-entropy over the (1 + negatives) list.

A held-out fraction of the train queries is never trained on; on it we fit Platt scaling (with the
expected calibration error before and after) and choose the fusion weight alpha. The model is saved
in Hugging Face format under the cache, keyed by the content of everything that defines it, with
`training.json` beside it; a second call with the same settings returns the saved model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.cache import cache_dir, content_key
from bench.datasets import Dataset, load_dataset
from bench.encoders import DEFAULT_MODEL, SentenceEncoder, embed_dataset, model_identity, resolve_model
from bench.indexes import Neighbors, exact_neighbors
from bench.indexes.base import cpu_count
from bench.metrics import per_query_quality

log = logging.getLogger(__name__)

LOSSES = ("bce", "margin", "listwise")
ALPHAS = tuple(round(a, 2) for a in np.linspace(0, 1, 21))


@dataclass(frozen=True)
class CrossTrainConfig:
    backbone: str = DEFAULT_MODEL
    dataset: str = "scifact"
    split: str = "train"
    first_stage: str = DEFAULT_MODEL  # bi-encoder that mines negatives and gives the fusion's first-stage score
    loss: str = "listwise"
    epochs: int = 1
    lr: float = 5e-5
    batch_queries: int = 2  # lists per optimizer step; pairs per step = batch_queries * (1 + negatives)
    negatives: int = 7
    neg_rank_lo: int = 3
    neg_rank_hi: int = 40
    max_length: int = 192
    margin: float = 1.0
    heldout_fraction: float = 0.2
    heldout_r: int = 20  # first-stage depth reranked on held-out queries to fit calibration and alpha
    seed: int = 0

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got '{self.loss}'")
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        if not 0 <= self.neg_rank_lo < self.neg_rank_hi:
            raise ValueError(f"need 0 <= neg_rank_lo < neg_rank_hi, got {self.neg_rank_lo}, {self.neg_rank_hi}")


def ranking_loss(logits, loss: str, margin: float = 1.0):
    """Loss of a (lists, 1 + negatives) logit matrix whose column 0 is the positive."""
    import torch
    import torch.nn.functional as F

    if loss == "listwise":
        return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long))
    if loss == "bce":
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(logits, labels)
    if loss == "margin":
        pos = logits[:, :1].expand(-1, logits.shape[1] - 1)
        neg = logits[:, 1:]
        return F.margin_ranking_loss(pos.reshape(-1), neg.reshape(-1), torch.ones(neg.numel()), margin=margin)
    raise ValueError(f"unknown loss '{loss}'")


def warmup_then_decay(optimizer, total_steps: int):
    """Learning rate: linear warmup over the first 10% of `total_steps`, then linear decay to 0."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / max(1.0, 0.1 * total_steps), max(0.0, 1 - s / total_steps)))


def platt_fit(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) minimizing the log loss of sigmoid(a * score + b)."""
    from scipy.optimize import minimize

    def nll(params):
        z = params[0] * scores + params[1]
        return float(np.mean(np.logaddexp(0, z) - labels * z))

    result = minimize(nll, x0=np.array([1.0, 0.0]), method="L-BFGS-B")
    return float(result.x[0]), float(result.x[1])


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |accuracy - confidence| over equal-width probability bins."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            error += mask.mean() * abs(labels[mask].mean() - probs[mask].mean())
    return float(error)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def split_queries(dataset: Dataset, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) query positions, a seeded random split."""
    order = np.random.default_rng(seed).permutation(len(dataset.query_ids))
    n_heldout = max(1, int(round(fraction * len(order))))
    return sorted(order[n_heldout:].tolist()), sorted(order[:n_heldout].tolist())


def first_stage(dataset: Dataset, model: str, depth: int) -> Neighbors:
    """Exact bi-encoder top-`depth` for every query of `dataset` (embeddings cached)."""
    embeddings = embed_dataset(SentenceEncoder(model), dataset)
    return exact_neighbors(embeddings.docs, embeddings.queries, depth, cpu_count())


def model_dir(config: CrossTrainConfig, dataset: Dataset) -> Path:
    key = content_key({**dataclasses.asdict(config), "backbone": model_identity(config.backbone),
                       "first_stage": model_identity(config.first_stage), "dataset": dataset.content_hash})
    return cache_dir() / "models" / f"cross-{config.loss}-{key}"


def train_cross_encoder(config: CrossTrainConfig, data_root: Path | None = None, dataset: Dataset | None = None) -> Path:
    """Train (or find already trained) the cross-encoder of `config`; returns its folder."""
    dataset = dataset or load_dataset(config.dataset, config.split, root=data_root)
    target = model_dir(config, dataset)
    if (target / "training.json").exists():
        log.info("cross-encoder already trained: %s", target)
        return target
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bench.cache import atomic_write_bytes
    from bench.rerank import CrossEncoderScorer, rerank

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    train_q, heldout_q = split_queries(dataset, config.heldout_fraction, config.seed)
    ranked = first_stage(dataset, config.first_stage, max(config.neg_rank_hi, config.heldout_r))
    text = dataset.doc_texts
    doc_pos = {d: i for i, d in enumerate(dataset.doc_ids)}
    examples = []  # (query position, positive doc row, negative pool)
    for qi in train_q:
        positives = {doc_pos[d] for d, g in dataset.qrels[dataset.query_ids[qi]].items() if g > 0}
        pool = [j for j in ranked.ids[qi, config.neg_rank_lo:config.neg_rank_hi] if j >= 0 and j not in positives]
        examples.extend((qi, p, pool) for p in sorted(positives))
    path = resolve_model(config.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    steps_per_epoch = (len(examples) + config.batch_queries - 1) // config.batch_queries
    scheduler = warmup_then_decay(optimizer, steps_per_epoch * config.epochs)
    losses, started = [], time.perf_counter()
    model.train()
    from tqdm import tqdm

    for epoch in range(config.epochs):
        order = rng.permutation(len(examples))
        for step in tqdm(range(steps_per_epoch), desc=f"train {config.loss} epoch {epoch + 1}", unit="step"):
            batch = [examples[i] for i in order[step * config.batch_queries:(step + 1) * config.batch_queries]]
            queries, docs = [], []
            for qi, pos, pool in batch:
                negs = rng.choice(pool, size=config.negatives, replace=len(pool) < config.negatives)
                for j in [pos, *negs]:
                    queries.append(dataset.query_texts[qi])
                    docs.append(text[j])
            encoded = tokenizer(queries, docs, truncation="longest_first", max_length=config.max_length,
                                padding=True, return_tensors="pt")
            logits = model(**encoded).logits[:, 0].view(len(batch), 1 + config.negatives)
            loss = ranking_loss(logits, config.loss, config.margin)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    train_seconds = time.perf_counter() - started
    tmp = target.with_name(target.name + ".partial")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)

    # Held-out train queries: calibration and the fusion weight.
    scorer = CrossEncoderScorer(str(tmp), max_length=config.max_length)
    held = dataclasses.replace(dataset, query_ids=[dataset.query_ids[q] for q in heldout_q],
                               query_texts=[dataset.query_texts[q] for q in heldout_q],
                               qrels={dataset.query_ids[q]: dataset.qrels[dataset.query_ids[q]] for q in heldout_q})
    held_first = Neighbors(ranked.ids[heldout_q, :config.heldout_r], ranked.scores[heldout_q, :config.heldout_r])
    cross = [scorer.score([held.query_texts[i]] * config.heldout_r, [text[j] for j in row])
             for i, row in enumerate(held_first.ids)]
    labels = np.concatenate([[float(dataset.doc_ids[j] in held.qrels[qid]) for j in row]
                             for qid, row in zip(held.query_ids, held_first.ids)])
    raw = np.concatenate(cross)
    a, b = platt_fit(raw, labels)
    ndcg_by_alpha = {alpha: float(per_query_quality(rerank(held_first, config.heldout_r, cross, alpha), held)
                                  ["ndcg_at_10"].mean()) for alpha in ALPHAS}
    best_alpha = max(ALPHAS, key=lambda al: (ndcg_by_alpha[al], al))
    report = {
        "config": dataclasses.asdict(config), "train_examples": len(examples), "steps": len(losses),
        "train_seconds": train_seconds, "loss_first_50": float(np.mean(losses[:50])),
        "loss_last_50": float(np.mean(losses[-50:])), "losses": losses,
        "heldout_queries": len(heldout_q), "heldout_r": config.heldout_r,
        "platt": {"a": a, "b": b},
        "ece_before": expected_calibration_error(_sigmoid(raw), labels),
        "ece_after": expected_calibration_error(_sigmoid(a * raw + b), labels),
        "heldout_ndcg_at_10_by_alpha": {str(k): v for k, v in ndcg_by_alpha.items()},
        "alpha": best_alpha, "heldout_ndcg_first_stage": ndcg_by_alpha[0.0],
        "heldout_ndcg_cross_only": ndcg_by_alpha[1.0], "heldout_ndcg_fused": ndcg_by_alpha[best_alpha],
    }
    atomic_write_bytes(tmp / "training.json", lambda p: p.write_text(json.dumps(report, indent=1)))
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)
    return target


def read_training(model: Path | str) -> dict:
    path = Path(model) / "training.json"
    return json.loads(path.read_text()) if path.exists() else {}
