"""The reranker's speed levers (issue 30): each reranker variant against a reference reranker measured in the same
run, over the same first-stage lists at the same R and alpha: pairs per second and rerank p50/p95 as served (one
query's R pairs per call), and the dev nDCG@10 delta with a paired 95% interval (test figures only for a pick).

A variant is a model identity (bench.models.rerankers.CrossEncoderScorer): its precision and runtime are read back from it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bench.analysis import Budget, paired_p, per_query, t_interval, with_derived, within

REFERENCE_RERANKER = "ce-fp32-192"  # configs/rerank-variants.toml's reference: torch fp32 at 192 tokens


def variant_of(identity: str) -> dict:
    """precision, runtime and max_length of a reranker identity ('<model>|max_length=L[|int8][|onnxruntime]')."""
    parts = identity.split("|")
    length = next((int(p.split("=", 1)[1]) for p in parts if p.startswith("max_length=")), 0)
    return {"precision": "int8" if "int8" in parts else "fp32",
            "runtime": "onnxruntime" if "onnxruntime" in parts else "torch", "max_length": length}


def variant_table(frame: pd.DataFrame, reference: str) -> pd.DataFrame:
    """One row per (reranker, R, first stage, alpha, threads) of `frame`'s rerank rows, with the paired dev and test
    deltas against the `reference` reranker's row over the same first stage, R, alpha and threads (the reference's own
    row: 0). An alpha chosen on dev pairs with the reference's alpha chosen on dev, whatever value each chose."""
    rows = frame[frame["stage"] == "rerank"].copy()
    if rows.empty or reference not in set(rows["reranker"]):
        raise ValueError(f"no rerank rows of the reference reranker '{reference}'")
    parent = "first_stage_id" if "first_stage_id" in rows else "cell_id"
    chosen = rows["fusion_alpha_chosen_on"].fillna("") if "fusion_alpha_chosen_on" in rows else ""
    rows["alpha_rule"] = np.where(chosen == "dev", "dev", rows["fusion_alpha"].map("{:g}".format))
    out = []
    for (first, r, _, _), group in rows.groupby([parent, "r", "alpha_rule", "rerank_threads"], sort=False):
        base = group[(group["reranker"] == reference) & (group["rerank_depth"] == "fixed")]
        if base.empty:
            continue
        base = base.iloc[0]
        for _, row in group.iterrows():
            pairs = np.asarray(row["q_rerank_pairs"] if row["rerank_depth"] == "adaptive" else [r] * len(row["query_ids"]),
                               dtype=float)
            rule = json.loads(row["rerank_depth_rule"]) if row["rerank_depth"] == "adaptive" else {}
            entry = {"reranker": row["reranker"], **variant_of(row["reranker_identity"]), "R": int(r),
                     "depth": f"adaptive: {rule['rule']} {rule['param']:g}" if rule else "fixed",
                     "pairs/query mean": float(pairs.mean()), "pairs/query p95": float(np.percentile(pairs, 95)),
                     "top 10 changed vs full depth": row["top10_changed_share"] if rule else 0.0,
                     "e2e p95 ms": row["e2e_p95_ms"],
                     "alpha": (f"{row['fusion_alpha']:g} (dev)" if row["alpha_rule"] == "dev"
                               else row["alpha_rule"]), "first stage": row.get("pipeline_name", first) if "pipeline_name" in row
                     else first,
                     "pairs/s": pairs.mean() / (row["rerank_mean_ms"] / 1e3) if row["rerank_mean_ms"] > 0 else float("nan"),
                     "rerank p50 ms": row["rerank_p50_ms"], "rerank p95 ms": row["rerank_p95_ms"],
                     "timed queries x threads": f"{int(row['rerank_latency_queries'])} x {int(row['rerank_threads'])}",
                     "speed-up p50": base["rerank_p50_ms"] / row["rerank_p50_ms"]}
            for split in ("dev", "test"):
                a, b = per_query(row, split=split), per_query(base, split=split)
                diff = (a - b.reindex(a.index)).to_numpy()
                mean, half = t_interval(diff)
                entry.update({f"{split} nDCG@10": float(a.mean()), f"{split} delta": mean, f"{split} delta ci": half,
                              f"{split} p (worse)": paired_p(-diff, "t", "greater") if np.any(diff) else 1.0})
            out.append(entry)
    return pd.DataFrame(out)


INT8_TIE_ALPHA = 0.05  # int8 "holds" on a host where its dev delta against fp32 is not significantly negative


def int8_by_isa(frames: list[pd.DataFrame], r: int = 20) -> pd.DataFrame:
    """Each int8 reranker variant against fp32 torch at the same max_length, at R = `r`, over the same first stage,
    alpha and threads, per host of `frames` (one results file each: rerank-variants on one host, rerank-int8-isa on
    another): the instruction set it ran on, the paired dev delta with its 95% interval, and the rerank latency."""
    out = []
    for frame in frames:
        frame = with_derived(frame)  # first_stage_id pairs each variant with fp32 over the same first stage
        rows = frame[(frame["stage"] == "rerank") & (frame["r"] == r) & (frame["rerank_depth"] == "fixed")]
        for host, on_host in rows.groupby("host_id", sort=False):
            lengths = {variant_of(i)["max_length"] for i in on_host["reranker_identity"]}
            for length in sorted(lengths):
                fp32 = on_host[on_host["reranker_identity"].map(lambda i: variant_of(i) == {
                    "precision": "fp32", "runtime": "torch", "max_length": length})]
                if fp32.empty:
                    continue
                table = variant_table(on_host, str(fp32["reranker"].iloc[0]))
                table = table[(table["max_length"] == length) & (table["depth"] == "fixed")]
                isa = on_host["int8_level"].iloc[0] if "int8_level" in on_host else None
                for _, entry in table.iterrows():
                    out.append({"host": host, "int8 kernels": isa if isinstance(isa, str) and isa else
                                "not recorded", "calibration ms": float(on_host["calibration_ms"].median()),
                                **entry.to_dict()})
    table = pd.DataFrame(out)
    if table.empty:
        return table
    table["int8 holds"] = np.where(table["precision"] == "fp32", "",
                                   np.where(table["dev p (worse)"] < INT8_TIE_ALPHA, "no: worse on dev",
                                            "yes: ties on dev"))
    return table


def fixed_r_at_equal_quality(table: pd.DataFrame, row: pd.Series) -> pd.Series | None:
    """The cheapest fixed-R row (by e2e p95) of `row`'s variant, threads and alpha in `variant_table`'s `table` whose
    dev nDCG@10 is at least `row`'s (equal dev quality): what an adaptive depth has to beat; None when none is."""
    same = table[(table["depth"] == "fixed") & (table["reranker"] == row["reranker"])
                 & (table["threads"] == row["threads"])
                 & (table["alpha"].str.split(" ").str[-1] == row["alpha"].split(" ")[-1])]
    match = same[same["dev nDCG@10"] >= row["dev nDCG@10"] - 1e-12].sort_values("e2e p95 ms")
    return match.iloc[0] if len(match) else None


def dev_best_within(rows: pd.DataFrame, budget: Budget) -> pd.Series | None:
    """The row of `rows` (derived) with the best dev nDCG@10 within `budget` (what would have to beat a pick)."""
    fits = within(rows, budget) if len(rows) else rows
    return None if fits.empty else fits.loc[fits["dev_ndcg_at_10"].idxmax()]
