"""Which path encodes a large corpus fastest without changing rankings (issue 29): sentence-transformers on torch
(what `bench run` uses) against ONNX Runtime running the harness's exported network (bench.models.encoders.OnnxQueries:
the same modules and L2 normalization, dynamic batch and length), on a seeded sample of Wikipedia paragraphs
(whole articles, `wikipedia-2015`) at the collection's max_seq_length, on this host's torch threads.

Both paths get the texts sorted by length, as sentence-transformers batches them (less padding), and are timed in
alternating passes so that a change of host speed hits both. Printed: texts/s per pass and path, the largest
1 - cosine between the two paths' vectors, and over SciFact's test queries (encoded by torch) the share whose top 10
over the sample is identical in order, and the mean top-10 overlap.

    BENCH_DATA_DIR=../shared/datasets HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/doc_encode_paths.py [--n 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    from bench.data.datasets import load_dataset
    from bench.data.distractors import DistractorSpec, draw
    from bench.models.encoders import OnnxQueries, SentenceEncoder, model_identity

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="paragraphs (whole articles, seeded)")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--passes", type=int, default=2, help="timed passes per path, alternating")
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    args = parser.parse_args()

    _, texts = draw(DistractorSpec("wikipedia-2015", paragraphs=args.n, seed=1))
    texts = texts[: args.n]
    encoder = SentenceEncoder(args.model, args.max_seq_length)
    onnx = OnnxQueries(encoder.model, model_identity(args.model))
    lengths = [len(encoder.model.tokenizer(t, truncation=True, max_length=args.max_seq_length)["input_ids"])
               for t in texts]
    order = np.argsort(lengths)[::-1]  # longest first, as sentence-transformers sorts
    ordered = [texts[i] for i in order]

    def torch_path() -> np.ndarray:
        return encoder.encode_docs(texts, args.batch_size)

    def onnx_path() -> np.ndarray:
        vectors = onnx.encode(ordered, args.batch_size)
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

    paths = {"torch": torch_path, "onnxruntime": onnx_path}
    encoder.encode_docs(texts[:64], args.batch_size)  # warm-up: first-call allocations, the ONNX session
    onnx.encode(ordered[:64], args.batch_size)
    rates: dict[str, list[float]] = {name: [] for name in paths}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.passes):
        for name, run in paths.items():
            began = time.perf_counter()
            vectors[name] = run()
            rates[name].append(len(texts) / (time.perf_counter() - began))
    tokens = np.mean(lengths)
    print(f"{len(texts):,} Wikipedia paragraphs (mean {tokens:.0f} tokens at max_seq_length {args.max_seq_length}), "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads, {args.passes} alternating passes per path:")
    for name, values in rates.items():
        print(f"  {name:12s} texts/s per pass: {' / '.join(f'{v:.1f}' for v in values)} (mean {np.mean(values):.1f})")
    print(f"  onnxruntime / torch: {np.mean(rates['onnxruntime']) / np.mean(rates['torch']):.2f}x")
    cosine = np.sum(vectors["torch"] * vectors["onnxruntime"], axis=1)
    print(f"  largest 1 - cosine between the paths' vectors: {float(np.max(1 - cosine)):.2e}")
    queries = load_dataset("scifact", split="test").query_texts
    q = encoder.encode_queries(list(queries), args.batch_size)
    tops = {name: np.argsort(-(q @ v.T), axis=1)[:, :10] for name, v in vectors.items()}
    same = np.mean([np.array_equal(a, b) for a, b in zip(tops["torch"], tops["onnxruntime"])])
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(tops["torch"], tops["onnxruntime"])])
    print(f"  {len(queries)} SciFact test queries over the sample: top 10 identical in order for {same:.1%}, "
          f"mean top-10 overlap {overlap:.4f}")


if __name__ == "__main__":
    main()
