"""Norms watched (issue 31): for inner product without normalization, how far the vector norms spread, whether they
drift between the corpus a model serves, its queries (train, dev, test) and another corpus, and how much of the top
10 comes from the largest norms (popularity by norm).

`python -m bench norms CONFIG [--against DATASET] [--plot PNG]`: every vector encoder of the config, its vectors
from the embedding cache (encoded once otherwise). Normalized encoders read 1.0 everywhere: the figures say what
`normalize = false` changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

QUANTILES = (0.01, 0.5, 0.99)


def norm_rows(name: str, part: str, vectors: np.ndarray) -> dict:
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)
    q = np.quantile(norms, QUANTILES) if len(norms) else [np.nan] * len(QUANTILES)
    return {"encoder": name, "vectors": part, "n": len(norms), **{f"p{int(p * 100)}": v for p, v in zip(QUANTILES, q)},
            "p99 / p1": q[-1] / q[0] if len(norms) and q[0] > 0 else np.nan}


def top_norm_share(docs: np.ndarray, queries: np.ndarray, top: int = 10, share: float = 0.01) -> float:
    """The share of the exact inner-product top `top` results (over `queries`) that are among the `share` of
    documents with the largest norms (1% would be their share if norms did not matter)."""
    norms = np.linalg.norm(docs, axis=1)
    largest = set(np.argsort(-norms)[: max(1, int(round(share * len(docs))))].tolist())
    found = np.argsort(-(queries @ docs.T), axis=1)[:, :top]
    return float(np.mean([j in largest for j in found.ravel()]))


def norms_table(config_path: Path | str, against: str | None = None, data_root: Path | None = None) -> pd.DataFrame:
    """One row per (encoder, vector set): n, the 1st / 50th / 99th percentile of the norms and their ratio; the
    corpus rows also carry the top-10 share of its largest-norm 1%."""
    from bench.pipeline.config import load_config
    from bench.data.datasets import load_dataset
    from bench.models.encoders import embed_dataset
    from bench.run.prepare import resolve_encoder, sweep_splits
    from bench.pipeline.stages import kind_of

    config = load_config(config_path)
    splits = sweep_splits(config, data_root, distracted=False)
    rows = []
    for spec in config.encoders:
        if kind_of(spec.type).output != "vectors" or spec.chunk_tokens:
            continue
        resolved = resolve_encoder(spec, config, data_root)
        if resolved.tower is not None and not (Path(resolved.model) / "training.json").exists():
            rows.append({"encoder": spec.name, "vectors": "not trained yet (run the config first)", "n": 0})
            continue
        encoder = resolved.load()
        embeddings = embed_dataset(encoder, splits.test, spec.batch_size)
        corpus = norm_rows(spec.name, f"{config.dataset} corpus", embeddings.docs)
        corpus["top-10 share of the largest 1% norms"] = top_norm_share(embeddings.docs, embeddings.queries)
        rows += [corpus, norm_rows(spec.name, f"{config.dataset} test queries", embeddings.queries)]
        for part, dataset in (("dev", splits.dev), ("train", splits.train)):
            if dataset is not None:
                rows.append(norm_rows(spec.name, f"{config.dataset} {part} queries",
                                      encoder.encode_queries(list(dataset.query_texts), spec.batch_size)))
        if against:  # another corpus and its test queries: drift of both sides
            other = embed_dataset(encoder, load_dataset(against, "test", root=data_root), spec.batch_size)
            rows += [norm_rows(spec.name, f"{against} corpus", other.docs),
                     norm_rows(spec.name, f"{against} test queries", other.queries)]
    return pd.DataFrame(rows)


def norms_text(table: pd.DataFrame) -> str:
    lines = ["Vector norms per encoder (1st / 50th / 99th percentile; p99 / p1 = spread). The corpus line adds the "
             "share of the exact top 10 that comes from the 1% of documents with the largest norms (1% if norms did "
             "not matter):"]
    for _, row in table.iterrows():
        if not row["n"]:
            lines.append(f"  {row['encoder']:18s} {row['vectors']}")
            continue
        share = row.get("top-10 share of the largest 1% norms")
        lines.append(f"  {row['encoder']:18s} {row['vectors']:26s} n={row['n']:>6,d}  {row['p1']:.3f} / {row['p50']:.3f} / "
                     f"{row['p99']:.3f}  spread {row['p99 / p1']:.2f}"
                     + (f"  top-10 share {share:.1%}" if isinstance(share, float) and np.isfinite(share) else ""))
    return "\n".join(lines)
