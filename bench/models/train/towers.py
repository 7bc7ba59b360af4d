"""Train query/document encoders like for like: a shared-weight bi-encoder or a twin tower.

Both start from the same sentence-transformers backbone and see the same examples, batches, steps and
seeds; only weight sharing differs. A twin tower is one sentence-transformers model whose `Router`
sends queries and documents through separate modules, so anything that loads a sentence-transformers
model can serve it (`encode_query` / `encode_document`).

Modes:
- "heads": the backbone is frozen and a linear projection head (identity-initialized) is trained on
  top of it; a bi-encoder has one head, a twin one per side. Training runs on the backbone's cached
  vectors, so it takes seconds on a CPU, and the corpus is never re-encoded by the backbone.
- "full": every weight is fine-tuned; a twin starts as two copies of the backbone.

Loss: InfoNCE over in-batch negatives plus one mined hard negative per example (from ranks
[neg_rank_lo, neg_rank_hi) of the pretrained bi-encoder or BM25, skipping the top ranks, which in
sparsely judged collections hold unjudged positives), temperature `tau`. Optional distillation from
the harness's cross-encoder over the pretrained bi-encoder's top-`kd_depth`: KL between the teacher's
and the student's softmax, or MSE between per-list-centred scores, weighted by `kd_weight`.

Trained models are saved under the cache keyed by everything that defines them, with `training.json`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from bench.core.cache import atomic_write_bytes, cache_dir, content_key, folder_checked, write_folder_digest
from bench.data.datasets import Dataset
from bench.models.encoders import SentenceEncoder, embed_dataset, model_identity, resolve_model
from bench.search.indexes import exact_neighbors
from bench.core.env import cpu_count
from bench.data.splits import Protocol, QuerySplits, training_splits
from bench.models.train.options import TOWER_FIELDS_ADDED, TowerTrainConfig

log = logging.getLogger(__name__)

def info_nce(queries, docs, tau: float, mask=None):
    """InfoNCE: row i of `queries` should pick column i of `docs` among all columns (in-batch negatives
    and any extra hard negatives appended after the first len(queries) columns). `mask` (bool, same shape
    as the score matrix) removes columns, e.g. other copies of a query's positives."""
    import torch
    import torch.nn.functional as F

    logits = queries @ docs.T / tau
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(queries)))


def distillation_loss(student, teacher, kind: str):
    """Student scores (queries, candidates) against teacher scores of the same candidates."""
    import torch.nn.functional as F

    if kind == "kl":
        return F.kl_div(F.log_softmax(student, dim=1), F.log_softmax(teacher, dim=1), log_target=True,
                        reduction="batchmean")
    if kind == "mse":
        return F.mse_loss(student - student.mean(1, keepdim=True), teacher - teacher.mean(1, keepdim=True))
    raise ValueError(f"unknown distillation '{kind}'")


def build_towers(config: TowerTrainConfig):
    """The untrained model of `config`: a sentence-transformers model (with a Router for twins)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Router

    base = SentenceTransformer(resolve_model(config.backbone), device="cpu")
    base.max_seq_length = config.max_seq_length
    backbone = list(base)
    if not config.normalize:  # a dot-product tower: the raw pooled vector is served
        backbone = [m for m in backbone if not isinstance(m, Normalize)]
        base = SentenceTransformer(modules=backbone, device="cpu")
        base.max_seq_length = config.max_seq_length
    if config.mode == "full":
        if config.architecture == "bi":
            return base
        return SentenceTransformer(modules=[Router.for_query_document(backbone, copy.deepcopy(backbone))],
                                   device="cpu")
    for parameter in base.parameters():
        parameter.requires_grad_(False)
    if not isinstance(backbone[-1], Normalize):  # the heads read the backbone's normalized (cached) vectors
        backbone.append(Normalize())
    dim = base.get_embedding_dimension()

    def head():
        return [Dense(dim, dim, bias=True, activation_function=torch.nn.Identity(), init_weight=torch.eye(dim),
                      init_bias=torch.zeros(dim)), Normalize()]

    tail = head() if config.architecture == "bi" else [Router.for_query_document(head(), head())]
    return SentenceTransformer(modules=backbone + tail, device="cpu")


def model_dir(config: TowerTrainConfig, splits: QuerySplits) -> Path:
    dataset = splits.train
    settings = {k: v for k, v in dataclasses.asdict(config).items() if TOWER_FIELDS_ADDED.get(k, object()) != v}
    key = content_key({**settings, "backbone": model_identity(config.backbone),
                       "teacher": config.teacher if config.kd != "none" else "", "dataset": dataset.content_hash})
    return cache_dir() / "models" / f"{config.architecture}-{config.mode}-{key}"


class _Towers:
    """Embeddings with gradients, by side ("query" / "document"), for a list of query or doc positions."""

    def __init__(self, model, config: TowerTrainConfig, dataset: Dataset, backbone_vectors):
        self.model, self.config, self.dataset = model, config, dataset
        self.n_backbone = len(list(model)) - (2 if config.architecture == "bi" else 1)
        self.vectors = backbone_vectors  # heads mode: {"query": tensor, "document": tensor}

    def embed(self, side: str, rows: list[int]):
        import torch.nn.functional as F

        if self.config.mode == "heads":
            features = {"sentence_embedding": self.vectors[side][rows], "task": side}
            for module in list(self.model)[self.n_backbone:]:
                features = module(features)
        else:
            texts = [(self.dataset.query_texts if side == "query" else self.dataset.doc_texts)[i] for i in rows]
            features = self.model.preprocess(texts, task=side)
            features["task"] = side
            features = self.model(features)
        vectors = features["sentence_embedding"]
        return F.normalize(vectors, dim=-1) if self.config.normalize else vectors


def _examples(dataset: Dataset) -> tuple[list[tuple[int, int]], list[set[int]]]:
    """(query position, positive doc row) for every judged pair, and each query's positive rows."""
    doc_pos = {d: i for i, d in enumerate(dataset.doc_ids)}
    positives = [{doc_pos[d] for d, g in dataset.qrels[q].items() if g > 0 and d in doc_pos} for q in dataset.query_ids]
    return [(qi, p) for qi, rows in enumerate(positives) for p in sorted(rows)], positives


def mine_negatives(dataset: Dataset, config: TowerTrainConfig, pretrained) -> np.ndarray | None:
    """Each query's ranked candidates from which hard negatives are drawn (ranks lo..hi), or None."""
    if config.hard_negatives == "none":
        return None
    if config.hard_negatives == "bm25":
        return exact_neighbors(np.array(dataset.doc_texts, dtype=object), np.array(dataset.query_texts, dtype=object),
                               config.neg_rank_hi, cpu_count(), "bm25s").ids
    return exact_neighbors(pretrained.docs, pretrained.queries, config.neg_rank_hi, cpu_count()).ids


def teacher_scores(config: TowerTrainConfig, splits: QuerySplits, candidates: np.ndarray,
                   data_root: Path | None) -> np.ndarray:
    """The cross-encoder's scores of each training query's candidates (cached per pair); a teacher the harness
    trains sees the same training queries as the student."""
    from bench.models.rerankers import CrossEncoderScorer, ScoreCache, cross_scores
    from bench.models.train.cross import train_cross_encoder
    from bench.models.train.options import CrossTrainConfig

    dataset = splits.train
    teacher = config.teacher
    if not Path(teacher).exists():
        teacher = str(train_cross_encoder(CrossTrainConfig(loss=config.teacher, dataset=config.dataset),
                                          data_root=data_root, splits=splits))
    scorer = CrossEncoderScorer(teacher, max_length=config.teacher_max_length)
    scores, scored = cross_scores(scorer, ScoreCache(), dataset, candidates, candidates.shape[1])
    log.info("teacher %s: %d pairs scored now", scorer.identity, scored)
    return np.stack(scores)


def train_towers(config: TowerTrainConfig, data_root: Path | None = None, splits: QuerySplits | None = None,
                 protocol: Protocol = Protocol()) -> Path:
    """Train (or find already trained) the encoder of `config` on the protocol's training queries (bench.data.splits);
    returns its sentence-transformers folder."""
    import torch
    from tqdm import tqdm

    from bench.models.train.cross import warmup_then_decay

    splits = training_splits(config.dataset, data_root, protocol, splits, needs_dev=config.kd != "none")
    dataset = splits.train
    target = model_dir(config, splits)
    if (target / "training.json").exists() and folder_checked(target):
        log.info("towers already trained: %s", target)
        return target
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    examples, positives = _examples(dataset)
    if len(examples) < config.batch_size:
        raise ValueError(f"{dataset.name} {dataset.split}: {len(examples)} judged pairs, fewer than batch_size "
                         f"{config.batch_size}")
    pretrained = embed_dataset(SentenceEncoder(config.backbone, config.max_seq_length), dataset)
    ranked = mine_negatives(dataset, config, pretrained)
    candidates = teacher = None
    if config.kd != "none":
        candidates = exact_neighbors(pretrained.docs, pretrained.queries, config.kd_depth, cpu_count()).ids
        teacher = torch.from_numpy(teacher_scores(config, splits, candidates, data_root)).float()
    model = build_towers(config)
    towers = _Towers(model, config, dataset, {"query": torch.from_numpy(pretrained.queries),
                                              "document": torch.from_numpy(pretrained.docs)})
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr)
    steps_per_epoch = len(examples) // config.batch_size
    total = steps_per_epoch * config.epochs
    scheduler = warmup_then_decay(optimizer, total)
    losses, started = [], time.perf_counter()
    model.train()
    for epoch in range(config.epochs):
        order = rng.permutation(len(examples))
        for step in tqdm(range(steps_per_epoch), desc=f"train {config.architecture}-{config.mode} epoch {epoch + 1}",
                         unit="step", disable=config.mode == "heads"):
            batch = [examples[i] for i in order[step * config.batch_size:(step + 1) * config.batch_size]]
            query_rows = [qi for qi, _ in batch]
            doc_rows = [p for _, p in batch]
            if ranked is not None:
                for qi, _ in batch:
                    pool = [j for j in ranked[qi, config.neg_rank_lo:] if j >= 0 and j not in positives[qi]]
                    doc_rows.append(int(rng.choice(pool)) if pool else int(rng.integers(dataset.n_docs)))
            q = towers.embed("query", query_rows)
            d = towers.embed("document", doc_rows)
            # a column that is a judged positive of row i (other than its own) is not a negative for i
            mask = torch.tensor([[j != i and doc in positives[qi] for j, doc in enumerate(doc_rows)]
                                 for i, qi in enumerate(query_rows)])
            loss = info_nce(q, d, config.tau, mask)
            if candidates is not None:
                cand = candidates[query_rows]
                c = towers.embed("document", cand.reshape(-1).tolist()).view(len(batch), cand.shape[1], -1)
                student = torch.einsum("qd,qcd->qc", q, c) / config.tau
                loss = loss + config.kd_weight * distillation_loss(student, teacher[query_rows], config.kd)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    train_seconds = time.perf_counter() - started
    model.eval()
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(str(tmp))
    report = {
        "config": dataclasses.asdict(config), "protocol": splits.summary(), "train_queries": len(dataset.query_ids),
        "saw_eval_docs": splits.guard.saw_eval_docs, "backbone_identity": model_identity(config.backbone),
        "backbone_modules": towers.n_backbone, "train_examples": len(examples), "steps": len(losses),
        "train_seconds": train_seconds, "loss_first_10": float(np.mean(losses[:10])),
        "loss_last_10": float(np.mean(losses[-10:])), "losses": losses,
        "parameters": sum(p.numel() for p in model.parameters()), "trainable_parameters": sum(p.numel() for p in trainable),
    }
    atomic_write_bytes(tmp / "training.json", lambda p: p.write_text(json.dumps(report, indent=1)))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    write_folder_digest(target)
    log.info("trained %s in %.1f s (%d steps, loss %.3f -> %.3f)", target.name, train_seconds, len(losses),
             report["loss_first_10"], report["loss_last_10"])
    return target
