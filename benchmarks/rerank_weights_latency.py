"""Does a cross-encoder's latency depend on its weights? `--retime` times a rerank child with the spec's model found
here when the stored row's weights are gone (`rerank_timed_identity`); that is only sound if two models of one
architecture and max_length cost the same per query.

Times the cached SciFact cross-encoder against the same architecture with freshly drawn weights (and against its own
weights with every parameter shuffled), on the same R pairs per query (MiniLM's exact top-R), one query per call,
one thread, the variants interleaved per query so host drift falls on both alike:

    python benchmarks/rerank_weights_latency.py [--model .cache/models/cross-listwise-...] [--r 20] [--queries 40]

Prints p50 / p95 per model, the ratio to the cached model and a Mann-Whitney p on the per-query times.
"""

from __future__ import annotations

import argparse
import copy
import glob
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import mannwhitneyu

from bench.data.datasets import load_beir
from bench.models.rerankers import CrossEncoderScorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=next(iter(sorted(p for p in glob.glob(".cache/models/cross-listwise-*")
                                                            if not p.endswith(".sha256"))), ""))
    parser.add_argument("--data-dir", default="../shared/datasets")
    parser.add_argument("--r", type=int, default=20)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--max-length", type=int, default=192)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_beir(Path(args.data_dir) / "scifact", "test")
    trained = CrossEncoderScorer(args.model, max_length=args.max_length)
    fresh = copy.copy(trained)
    fresh.model = type(trained.model)(trained.model.config).eval()  # the architecture, freshly drawn weights
    shuffled = copy.copy(trained)
    shuffled.model = copy.deepcopy(trained.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in shuffled.model.parameters():
            p.copy_(p.flatten()[torch.randperm(p.numel(), generator=generator)].view_as(p))
    rng = np.random.default_rng(0)
    docs = dict(zip(dataset.doc_ids, dataset.doc_texts))
    order = list(docs)
    models = {"cached (trained)": trained, "fresh weights": fresh, "shuffled weights": shuffled}
    times = {name: [] for name in models}
    for qi in range(args.queries):
        candidates = [docs[order[j]] for j in rng.choice(len(order), args.r, replace=False)]
        query = [dataset.query_texts[qi]] * args.r
        for scorer in models.values():  # warm this query's shapes for every model
            scorer.score(query[:2], candidates[:2])
        for name in rng.permutation(list(models)):
            start = time.perf_counter()
            models[name].score(query, candidates)
            times[name].append((time.perf_counter() - start) * 1e3)
    base = np.array(times["cached (trained)"])
    print(f"{args.queries} SciFact test queries x R={args.r} random abstracts, max_length {args.max_length}, 1 thread, "
          f"interleaved; model {args.model}")
    for name, ms in times.items():
        ms = np.array(ms)
        p = mannwhitneyu(ms, base).pvalue if ms is not base else float("nan")
        print(f"{name:18s} p50 {np.percentile(ms, 50):8.1f} ms  p95 {np.percentile(ms, 95):8.1f} ms  "
              f"ratio p50 {np.median(ms) / np.median(base):.3f}  paired median ratio "
              f"{np.median(ms / base):.3f}  Mann-Whitney p {p:.2f}")


if __name__ == "__main__":
    main()
