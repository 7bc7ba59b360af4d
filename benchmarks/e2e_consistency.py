"""How many sweep rows have an end-to-end tail below one of its own stages' (or a p99 below its p95), by how their
e2e was made (`e2e_method`): `python benchmarks/e2e_consistency.py results/scifact.parquet results/nfcorpus.parquet`.

A pipeline's p95 cannot be below its query encoding's p95 when both come from the same samples; rows whose e2e was
summed from per-query medians can (the tails of the stages do not add)."""

import sys

import pandas as pd

from bench.store.results import read_results


def main(paths: list[str]) -> None:
    frame = read_results(*paths)
    frame["encode_p95_above_e2e_p95"] = frame["e2e_p95_ms"] < frame["query_encode_p95_ms"]
    frame["p99_below_p95"] = frame["e2e_p99_ms"] < frame["e2e_p95_ms"]
    table = frame.groupby(["dataset", "e2e_method"]).agg(
        rows=("cell_id", "size"), e2e_p95_below_encode_p95=("encode_p95_above_e2e_p95", "sum"),
        e2e_p99_below_p95=("p99_below_p95", "sum"))
    pd.set_option("display.width", 200)
    print(table.to_string())


if __name__ == "__main__":
    main(sys.argv[1:] or ["results/scifact.parquet", "results/nfcorpus.parquet"])
