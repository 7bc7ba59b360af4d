"""What does an R grid cost? Wall time of reranking at R = max alone vs at every R of a grid, fresh score caches.

    .venv/bin/python benchmarks/rerank_grid_cost.py MODEL_DIR [--queries 30] [--r 10 20 50 100]

Both runs start from an empty score cache; the grid run scores each pair once (at the largest R), so it
should cost about the same as the largest-R pass alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.data.datasets import load_dataset
from bench.models.encoders import SentenceEncoder, embed_dataset
from bench.search.indexes import exact_neighbors
from bench.data.metrics import per_query_quality
from bench.models.rerankers import CrossEncoderScorer, ScoreCache, cross_scores, rerank


def run(grid: list[int], scorer, dataset, first) -> tuple[float, int, dict]:
    with tempfile.TemporaryDirectory() as folder:
        cache = ScoreCache(Path(folder) / "scores.sqlite")
        started = time.perf_counter()
        scored, ndcg = 0, {}
        for r in sorted(grid, reverse=True):  # as the sweep does: the largest R first
            cross, n = cross_scores(scorer, cache, dataset, first.ids, r)
            scored += n
            ndcg[r] = float(per_query_quality(rerank(first, r, cross, 1.0), dataset)["ndcg_at_10"].mean())
        return time.perf_counter() - started, scored, ndcg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--r", type=int, nargs="+", default=[10, 20, 50, 100])
    parser.add_argument("--max-length", type=int, default=192)
    args = parser.parse_args()
    dataset = load_dataset(args.dataset, "test").subset(args.queries)
    embeddings = embed_dataset(SentenceEncoder(), dataset)
    first = exact_neighbors(embeddings.docs, embeddings.queries, max(args.r), threads=2)
    scorer = CrossEncoderScorer(args.model, max_length=args.max_length)
    alone, alone_pairs, _ = run([max(args.r)], scorer, dataset, first)
    grid, grid_pairs, ndcg = run(args.r, scorer, dataset, first)
    print(f"{args.queries} queries: R={max(args.r)} alone {alone:.1f}s ({alone_pairs} pairs); "
          f"R grid {args.r} {grid:.1f}s ({grid_pairs} pairs); ratio {grid / alone:.3f}")
    print("nDCG@10 (these queries, cross-encoder alone): " + ", ".join(f"R={r}: {v:.4f}" for r, v in sorted(ndcg.items())))


if __name__ == "__main__":
    main()
