"""Does the cost of reranking depend on which candidates a first stage found? Token counts of the (query, doc) pairs
a cross-encoder scores, for the dense (MiniLM exact) and the BM25 top-R of the same test queries.

    .venv/bin/python benchmarks/rerank_pair_lengths.py configs/scifact.toml configs/nfcorpus.toml [--queries 50]

The sweep times reranking once per (reranker, R) on one first stage's top R, not per cell (README, "Reranking"),
on the argument that a pair's cost is set by its token count, capped at `max_length`. Pairs are tokenized as
`bench.models.rerankers.CrossEncoderScorer` does (longest-first truncation, batches of 32 padded to their longest pair);
"padded tokens per query" is what the network computes over.
"""

from __future__ import annotations

import argparse

import numpy as np
from transformers import AutoTokenizer

from bench.pipeline.config import load_config
from bench.models.encoders import DEFAULT_MODEL, resolve_model
from bench.search.indexes import make_index
from bench.run.prepare import sweep_splits
from bench.models.train.cross import first_stage

BATCH = 32  # CrossEncoderScorer's default batch size


def pair_tokens(tokenizer, query: str, docs: list[str], max_length: int) -> tuple[np.ndarray, int]:
    """Tokens of each pair, and the padded tokens the scorer's batches hold."""
    lengths = np.array([len(ids) for ids in tokenizer([query] * len(docs), docs, truncation="longest_first",
                                                      max_length=max_length)["input_ids"]])
    padded = sum(len(chunk) * int(chunk.max()) for chunk in np.array_split(lengths, -(-len(lengths) // BATCH)))
    return lengths, padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--queries", type=int, default=50, help="first test queries (the sweep times 50)")
    parser.add_argument("--r", type=int, nargs="+", default=[10, 20, 50, 100])
    parser.add_argument("--max-length", type=int, default=192)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    print("| dataset | R | first stage | mean tokens per pair | pairs at the cap | padded tokens per query | vs dense |")
    print("|---|---|---|---|---|---|---|")
    for path in args.configs:
        test = sweep_splits(load_config(path), None).test
        bm25 = make_index("bm25s")
        bm25.fit(list(test.doc_texts), 2)
        bm25.set_search(max(args.r))
        stages = {"dense (MiniLM exact)": first_stage(test, DEFAULT_MODEL, max(args.r)).ids,
                  "bm25": bm25.batch_query(list(test.query_texts), 2).ids}
        for r in args.r:
            base = None
            for name, ids in stages.items():
                lengths, padded = [], []
                for qi in range(min(args.queries, len(test.query_ids))):
                    docs = [test.doc_texts[j] for j in ids[qi, :r] if j >= 0]
                    got, pad = pair_tokens(tokenizer, test.query_texts[qi], docs, args.max_length)
                    lengths.append(got)
                    padded.append(pad)
                every = np.concatenate(lengths)
                per_query = float(np.mean(padded))
                base = base or per_query
                print(f"| {test.name} | {r} | {name} | {every.mean():.1f} | {np.mean(every == args.max_length):.0%} | "
                      f"{per_query:.0f} | {per_query / base - 1:+.1%} |")


if __name__ == "__main__":
    main()
