"""Fine-tune a cross-encoder on a dataset's train judgments, negatives mined by the first-stage bi-encoder.

Each training example is a query with one judged positive and `negatives` documents sampled from the
ranks [neg_rank_lo, neg_rank_hi) of the first stages in `mine_from` (the bi-encoder, BM25, or both: the
union of their candidates) that are not judged relevant (skipping the very top, which in sparsely judged
collections holds unjudged positives). `title_queries` adds that many documents' titles as pseudo-queries
whose positive is their own document (never a document a dev or test query judges relevant, under the
guard). `sentence_queries` adds that many inverse-cloze pairs: one sentence of a document's abstract asks for
the document with that sentence removed. Losses: pointwise BCE, pairwise margin ranking, listwise softmax
cross-entropy over the (1 + negatives) list; `distill` adds that weight times the KL divergence from the
first-stage bi-encoder's softmax over the same list (cosine / `distill_temperature`) to the cross-encoder's,
so the few labelled queries teach what the bi-encoder misses without losing what it ranks well.
Training checkpoints every CHECKPOINT_EVERY steps and resumes from the last checkpoint.

It trains on the protocol's training queries (bench.data.splits: dev queries held out, and the leakage guard's
drops); on the dev queries it fits Platt scaling (with the expected calibration error before and after)
and reports the best fusion weight alpha over the bi-encoder's top-`dev_r` (the sweep chooses its own alpha
per first-stage cell and R, on the same dev queries). The model is saved
in Hugging Face format under the cache, keyed by the content of everything that defines it, with
`training.json` beside it; a second call with the same settings returns the saved model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from bench.core.cache import atomic_write_bytes, cache_dir, content_key, folder_checked, write_folder_digest
from bench.data.datasets import Dataset, _hash_strings
from bench.models.encoders import SentenceEncoder, embed_dataset, model_identity, resolve_model
from bench.search.indexes import Neighbors, exact_neighbors
from bench.core.env import cpu_count
from bench.data.metrics import per_query_quality
from bench.models.rerankers import ALPHAS, CrossEncoderScorer, rerank
from bench.data.splits import Protocol, QuerySplits, judged_documents, merge_queries, training_splits
from bench.models.train.options import FIELDS_ADDED, CrossTrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 100  # optimizer steps between checkpoints (about 3 minutes on a 2-core CPU)


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


def distillation_loss(logits, teacher_cosines, temperature: float):
    """KL(teacher || student) over each list: the teacher's softmax of cosine / temperature, the student's of its
    logits; both (lists, 1 + negatives)."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(logits, dim=1), F.softmax(teacher_cosines / temperature, dim=1),
                    reduction="batchmean")


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


def first_stage(dataset: Dataset, model: str, depth: int) -> Neighbors:
    """Exact bi-encoder top-`depth` for every query of `dataset` (embeddings cached)."""
    embeddings = embed_dataset(SentenceEncoder(model), dataset)
    return exact_neighbors(embeddings.docs, embeddings.queries, depth, cpu_count())


def _pseudo_query_documents(splits: QuerySplits) -> set[str]:
    """Documents a pseudo-query may point at: under the leakage guard, none a dev or test query judges."""
    if splits.guard is not None and splits.guard.applied:
        return judged_documents(splits.test, splits.dev)
    return set()


SENTENCE_WORDS = (6, 40)  # a sentence becomes a pseudo-query when it has this many words (inclusive)


def sentence_queries(splits: QuerySplits, n: int, seed: int) -> tuple[Dataset, dict[str, str]]:
    """`n` inverse-cloze pairs: for a seeded choice of documents whose abstract has at least 3 sentences of
    SENTENCE_WORDS words, one such sentence is the query and the document without it is the positive.
    Returns the queries and, per query id, the positive's text."""
    import re

    train = splits.train
    banned = _pseudo_query_documents(splits)
    rng = np.random.default_rng(seed)
    candidates = []
    for i, (doc_id, text) in enumerate(zip(train.doc_ids, train.doc_texts)):
        title = train.doc_titles[i] if train.doc_titles else ""
        body = text[len(title):] if title and text.startswith(title) else text
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", body.strip())
                     if SENTENCE_WORDS[0] <= len(s.split()) <= SENTENCE_WORDS[1]]
        if doc_id not in banned and len(sentences) >= 3:
            candidates.append((i, sentences))
    ids, queries, positive_text = [], [], {}
    for c in sorted(rng.permutation(len(candidates))[:n]):
        row, sentences = candidates[c]
        sentence = sentences[rng.integers(len(sentences))]
        qid = f"sentence:{train.doc_ids[row]}"
        ids.append(qid)
        queries.append(sentence)
        positive_text[qid] = " ".join(train.doc_texts[row].replace(sentence, " ", 1).split())
    dataset = dataclasses.replace(train, split="sentences", query_ids=ids, query_texts=queries,
                                  qrels={q: {q.split(":", 1)[1]: 1} for q in ids},
                                  content_hash=_hash_strings([train.corpus_hash, "sentences", *ids, *queries]))
    return dataset, positive_text


def title_queries(splits: QuerySplits, n: int, seed: int) -> Dataset:
    """`n` documents (seeded choice among those with a title) as queries: the title asks for its document.
    Under the leakage guard, documents a dev or test query judges relevant are never chosen."""
    train = splits.train
    banned = _pseudo_query_documents(splits)
    candidates = [i for i, title in enumerate(train.doc_titles) if title and train.doc_ids[i] not in banned]
    chosen = sorted(np.random.default_rng(seed).permutation(len(candidates))[:n])
    rows = [candidates[i] for i in chosen]
    ids = [f"title:{train.doc_ids[i]}" for i in rows]
    return dataclasses.replace(train, split="titles", query_ids=ids, query_texts=[train.doc_titles[i] for i in rows],
                               qrels={q: {train.doc_ids[i]: 1} for q, i in zip(ids, rows)},
                               content_hash=_hash_strings([train.corpus_hash, "titles", *ids]))


def training_examples(dataset: Dataset, config: CrossTrainConfig) -> list[tuple[int, int, list[int]]]:
    """(query position, positive document row, negative pool) per judged positive: the pool is the union of
    the `mine_from` first stages' ranks [neg_rank_lo, neg_rank_hi), judged positives removed."""
    ranked = []
    if "dense" in config.mine_from:
        ranked.append(first_stage(dataset, config.first_stage, config.neg_rank_hi).ids)
    if "bm25" in config.mine_from:
        from bench.search.indexes import make_index

        bm25 = make_index("bm25s")
        bm25.fit(dataset.doc_texts, cpu_count())
        bm25.set_search(config.neg_rank_hi)
        ranked.append(bm25.batch_query(dataset.query_texts, cpu_count()).ids)
    doc_pos = {d: i for i, d in enumerate(dataset.doc_ids)}
    examples = []
    for qi in range(len(dataset.query_ids)):
        relevant = {doc_pos[d] for d, g in dataset.qrels[dataset.query_ids[qi]].items() if g > 0}
        pool = list(dict.fromkeys(int(j) for ids in ranked for j in ids[qi, config.neg_rank_lo:config.neg_rank_hi]
                                  if j >= 0 and j not in relevant))
        examples.extend((qi, p, pool) for p in sorted(relevant))
    return examples


def model_dir(config: CrossTrainConfig, splits: QuerySplits) -> Path:
    settings = {k: v for k, v in dataclasses.asdict(config).items() if FIELDS_ADDED.get(k, object()) != v}
    key = content_key({**settings, "backbone": model_identity(config.backbone),
                       "first_stage": model_identity(config.first_stage), "dataset": splits.train.content_hash,
                       "dev": splits.dev.content_hash})
    return cache_dir() / "models" / f"cross-{config.loss}-{key}"


def train_cross_encoder(config: CrossTrainConfig, data_root: Path | None = None, splits: QuerySplits | None = None,
                        protocol: Protocol = Protocol()) -> Path:
    """Train (or find already trained) the cross-encoder of `config` on the protocol's training queries,
    calibrated and its fusion weight chosen on the dev queries; returns its folder."""
    splits = training_splits(config.dataset, data_root, protocol, splits, needs_dev=True)
    dataset, dev = splits.train, splits.dev
    target = model_dir(config, splits)
    if (target / "training.json").exists() and folder_checked(target):
        log.info("cross-encoder already trained: %s", target)
        return target
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if config.title_queries:
        dataset = merge_queries(dataset, title_queries(splits, config.title_queries, config.seed))
    positive_text: dict[str, str] = {}
    if config.sentence_queries:
        sentences, positive_text = sentence_queries(splits, config.sentence_queries, config.seed)
        dataset = merge_queries(dataset, sentences)
    text = dataset.doc_texts
    examples = training_examples(dataset, config)
    teacher = embed_dataset(SentenceEncoder(config.first_stage), dataset) if config.distill else None
    path = resolve_model(config.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    steps_per_epoch = (len(examples) + config.batch_queries - 1) // config.batch_queries
    total_steps = steps_per_epoch * config.epochs
    scheduler = warmup_then_decay(optimizer, total_steps)
    tmp = target.with_name(target.name + ".partial")
    checkpoint = tmp / "checkpoint.pt"
    losses, done, order, seconds_before = [], 0, None, 0.0
    if checkpoint.exists():  # an interrupted run: go on from its last checkpoint
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        losses, done, order, seconds_before = state["losses"], state["step"], state["order"], state["seconds"]
        log.info("cross-encoder training resumes at step %d of %d", done, total_steps)
    started = time.perf_counter()
    model.train()
    from tqdm import tqdm

    for step in tqdm(range(done, total_steps), initial=done, total=total_steps, desc=f"train {config.loss}",
                     unit="step"):
        within = step % steps_per_epoch
        if within == 0:
            order = rng.permutation(len(examples))
        batch = [examples[i] for i in order[within * config.batch_queries:(within + 1) * config.batch_queries]]
        queries, docs, lists = [], [], []
        for qi, pos, pool in batch:
            negs = rng.choice(pool, size=config.negatives, replace=len(pool) < config.negatives)
            lists.append([pos, *negs])
            queries.extend([dataset.query_texts[qi]] * (1 + config.negatives))
            docs.extend([positive_text.get(dataset.query_ids[qi], text[pos]), *(text[j] for j in negs)])
        encoded = tokenizer(queries, docs, truncation="longest_first", max_length=config.max_length,
                            padding=True, return_tensors="pt")
        logits = model(**encoded).logits[:, 0].view(len(batch), 1 + config.negatives)
        loss = ranking_loss(logits, config.loss, config.margin)
        if teacher is not None:
            cosines = np.stack([teacher.docs[row] @ teacher.queries[qi] for row, (qi, _, _) in zip(lists, batch)])
            loss = loss + config.distill * distillation_loss(logits, torch.from_numpy(cosines).float(),
                                                             config.distill_temperature)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        if (step + 1) % CHECKPOINT_EVERY == 0 and step + 1 < total_steps:
            tmp.mkdir(parents=True, exist_ok=True)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "rng": rng.bit_generator.state,
                     "torch_rng": torch.get_rng_state(), "losses": losses, "step": step + 1, "order": order,
                     "seconds": seconds_before + time.perf_counter() - started}
            torch.save(state, checkpoint.with_suffix(".tmp"))
            checkpoint.with_suffix(".tmp").replace(checkpoint)
            # what the plan reads of a resumable training without loading the checkpoint (bench.run.estimate)
            atomic_write_bytes(tmp / "progress.json", lambda path: path.write_text(json.dumps(
                {"step": step + 1, "total_steps": total_steps})))
    train_seconds = seconds_before + time.perf_counter() - started
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)

    # Dev queries: calibration and the fusion weight.
    scorer = CrossEncoderScorer(str(tmp), max_length=config.max_length)
    dev_first = first_stage(dev, config.first_stage, config.dev_r)
    cross = [scorer.score([dev.query_texts[i]] * config.dev_r, [text[j] for j in row])
             for i, row in enumerate(tqdm(dev_first.ids, desc="score dev queries (calibration, alpha)", unit="query"))]
    labels = np.concatenate([[float(dev.qrels[qid].get(dataset.doc_ids[j], 0) > 0) for j in row]
                             for qid, row in zip(dev.query_ids, dev_first.ids)])
    raw = np.concatenate(cross)
    a, b = platt_fit(raw, labels)
    ndcg_by_alpha = {alpha: float(per_query_quality(rerank(dev_first, config.dev_r, cross, alpha), dev)
                                  ["ndcg_at_10"].mean()) for alpha in ALPHAS}
    best_alpha = max(ALPHAS, key=lambda al: (ndcg_by_alpha[al], al))
    report = {
        "config": dataclasses.asdict(config), "protocol": splits.summary(),
        "train_queries": len(splits.train.query_ids), "title_queries": len(dataset.query_ids) - len(splits.train.query_ids) - len(positive_text),
        "sentence_queries": len(positive_text),
        "saw_eval_docs": splits.guard.saw_eval_docs, "train_examples": len(examples), "steps": len(losses),
        "train_seconds": train_seconds, "loss_first_50": float(np.mean(losses[:50])),
        "loss_last_50": float(np.mean(losses[-50:])), "losses": losses,
        "dev_queries": len(dev.query_ids), "dev_r": config.dev_r,
        "platt": {"a": a, "b": b},
        "ece_before": expected_calibration_error(_sigmoid(raw), labels),
        "ece_after": expected_calibration_error(_sigmoid(a * raw + b), labels),
        "dev_ndcg_at_10_by_alpha": {str(k): v for k, v in ndcg_by_alpha.items()},
        "alpha": best_alpha, "dev_ndcg_first_stage": ndcg_by_alpha[0.0],
        "dev_ndcg_cross_only": ndcg_by_alpha[1.0], "dev_ndcg_fused": ndcg_by_alpha[best_alpha],
    }
    checkpoint.unlink(missing_ok=True)
    atomic_write_bytes(tmp / "training.json", lambda p: p.write_text(json.dumps(report, indent=1)))
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)
    write_folder_digest(target)
    return target


def read_training(model: Path | str) -> dict:
    path = Path(model) / "training.json"
    return json.loads(path.read_text()) if path.exists() else {}
