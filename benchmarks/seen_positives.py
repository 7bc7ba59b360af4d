"""How much of a trained encoder's gain comes from documents it saw as training positives.

SciFact's train and test splits share documents: a test query whose relevant document was also a train
positive can be helped by a model that simply learned to pull that document up. This splits the test
queries into those with such a "seen" positive and the rest, and compares every encoder's exact-search
nDCG@10 (K=100 rows of a results file) on each group, with paired t-tests (Holm-corrected) against the
pretrained bi-encoder.

    .venv/bin/python benchmarks/seen_positives.py results/scifact.parquet --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from scipy import stats

from bench.datasets import load_dataset
from bench.report import holm, markdown_table
from bench.store import read_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--baseline", default="minilm-bi")
    args = parser.parse_args()
    frame = read_results(args.results)
    rows = frame[(frame["backend"] == "exact") & (frame["k"] == 100) & (frame["r"] == 0)
                 & (frame["encoder_type"] != "bm25")].drop_duplicates("encoder").set_index("encoder")
    first = rows.iloc[0]
    train = load_dataset(first["dataset"], "train", root=args.data_dir)
    test = load_dataset(first["dataset"], first["split"], root=args.data_dir)
    seen_docs = {d for judged in train.qrels.values() for d, g in judged.items() if g > 0}
    seen = {q for q in test.query_ids if any(d in seen_docs and g > 0 for d, g in test.qrels[q].items())}
    per_query = {name: pd.Series(row["q_ndcg_at_10"], index=row["query_ids"]) for name, row in rows.iterrows()}
    base = per_query[args.baseline]
    table = []
    for group, members in (("seen positive", sorted(seen)), ("unseen positives", sorted(set(base.index) - seen))):
        for name, scores in per_query.items():
            if name == args.baseline:
                continue
            p = float(stats.ttest_rel(scores[members], base[members]).pvalue)
            table.append({"queries": f"{group} ({len(members)})", "encoder": name,
                          "baseline nDCG@10": base[members].mean(), "nDCG@10": scores[members].mean(),
                          "delta": scores[members].mean() - base[members].mean(), "p": p})
    table = pd.DataFrame(table)
    table["p Holm"] = holm(table["p"].tolist())
    print(f"{len(seen)} of {len(base)} {first['split']} queries have a relevant document that is a train positive "
          f"({len(seen_docs)} train-positive documents)\n")
    print(markdown_table(table))


if __name__ == "__main__":
    main()
