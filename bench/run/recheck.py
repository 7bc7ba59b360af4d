"""Re-check a decision on this host: the reference picks and the rows tied with them, measured here, decided again.

`python -m bench recheck [RESULTS...]` reads the committed reference results (default: SciFact's and NFCorpus's), takes
per dataset and budget the pick, the rows tied with it on dev and the dev-best (`recommend`'s rule and budgets), and
measures only those cells on this host in one run: first stages whole (their quality is cheap, and it may move with the
instruction set: NumPy's and faiss's kernels break ties their own way), rerank rows re-timed with their stored
quality, except those whose scores rest on int8 kernels other than this host's (bench.core.env.rescored_here), which are
scored again. A reranker the harness trains and this host has not trained yet is timed with its untrained backbone
(the same computation per pair). Rows go to their own files, `results/recheck-<host>-<config>.parquet`; then the
decision is taken again on them, under the same budgets, and printed beside the reference host's, with what changed
and why. Rows outside every reference budget stay outside: a host faster than the reference's could admit some of them
(the comparison line says which way the host differs, by the calibration kernel).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from bench.analysis import LATENCY_TIE, Budget, NothingFits, recommend, with_derived
from bench.pipeline.config import ConfigError, load_config

log = logging.getLogger(__name__)

QUALITY_MOVED = 1e-4  # a dev nDCG@10 that differs by more than this between hosts has moved (ties at 4 decimals)


@dataclass(frozen=True)
class Pick:
    """One dataset and budget's decision: the chosen row and the rows it rests on (tied on dev, the dev-best)."""

    dataset: str
    budget: Budget
    pick: pd.Series | None
    cells: frozenset[str]  # the pick, its ties and the dev-best
    why_none: str = ""
    dev_best: str = ""  # the dev-best row's cell id


def decide_all(frame: pd.DataFrame, budgets: list[Budget]) -> list[Pick]:
    """Per dataset (name order) and budget, `recommend`'s pick over `frame` (with_derived rows)."""
    found = []
    for dataset, rows in sorted(frame.groupby("dataset"), key=lambda g: g[0]):
        for budget in budgets:
            try:
                choice = recommend(rows, budget)
            except NothingFits as err:
                found.append(Pick(str(dataset), budget, None, frozenset(), str(err)))
                continue
            cells = {choice.pick["cell_id"], choice.dev_best["cell_id"], *choice.ties["cell_id"]}
            found.append(Pick(str(dataset), budget, choice.pick, frozenset(cells), dev_best=choice.dev_best["cell_id"]))
    return found


def cells_by_config(reference: pd.DataFrame, picks: list[Pick]) -> dict[str, set[str]]:
    """The cells to measure here, by the sweep config (configs/<config_name>.toml) that measured them."""
    wanted = set().union(*(p.cells for p in picks)) if picks else set()
    rows = reference[reference["cell_id"].isin(wanted)]
    return {str(name): set(group["cell_id"]) for name, group in rows.groupby("config_name")}


def results_path(folder: Path, host: str, config_name: str) -> Path:
    return folder / f"recheck-{host}-{config_name}.parquet"


def label(row: pd.Series) -> str:
    """A short readable name of a row's pipeline: encoder, backend and its search settings, K, reranker and R."""
    search = json.loads(row["search_params"]) if row["search_params"] else {}
    settings = " ".join(f"{k}={v}" for k, v in sorted(search.items()) if k not in ("fusion", "rrf_k"))
    text = f"{row['encoder']} · {row['backend']}{(' ' + settings) if settings else ''} · K={int(row['k'])}"
    if row["stage"] == "rerank":
        text += f" >> {row['reranker']} R={int(row['r'])} a={row['fusion_alpha']:g}"
    return text


@dataclass(frozen=True)
class Comparison:
    dataset: str
    budget: Budget
    reference: pd.Series | None
    here: pd.Series | None
    why: str

    @property
    def same(self) -> bool:
        return (self.reference is not None and self.here is not None
                and self.reference["cell_id"] == self.here["cell_id"])


def compare(reference: list[Pick], here_rows: pd.DataFrame, here: list[Pick]) -> list[Comparison]:
    """Each budget's reference pick beside this host's, and why they differ."""
    out = []
    by_key = {(p.dataset, p.budget): p for p in here}
    for ref in reference:
        mine = by_key.get((ref.dataset, ref.budget))
        pick_here = mine.pick if mine is not None else None
        rows = here_rows[here_rows["dataset"] == ref.dataset]
        why = _why(ref, pick_here, rows, mine)
        best = rows[rows["cell_id"] == ref.dev_best]
        if ref.pick is not None and len(best) and (best["e2e_p95_ms"].iloc[0] > ref.budget.p95_ms
                                                   or best["memory_mb"].iloc[0] > ref.budget.memory_mb):
            why += ("; provisional: the reference's dev-best no longer fits here, so rows below it on dev, not "
                    "re-measured, could tie with the new dev-best (a full run of the config settles it)")
        out.append(Comparison(ref.dataset, ref.budget, ref.pick, pick_here, why))
    return out


def _why(ref: Pick, pick_here: pd.Series | None, rows: pd.DataFrame, mine: Pick | None) -> str:
    if ref.pick is None:
        return "nothing fit on the reference host"
    if pick_here is None:
        return f"nothing fits here: {mine.why_none if mine else 'no rows measured'}"
    same_cell = rows[rows["cell_id"] == ref.pick["cell_id"]]
    if pick_here["cell_id"] == ref.pick["cell_id"]:
        return "same pick"
    if same_cell.empty:
        return "the reference pick was not measured here"
    old = same_cell.iloc[0]
    budget = ref.budget
    if old["e2e_p95_ms"] > budget.p95_ms:
        return f"the reference pick's e2e p95 here is {old['e2e_p95_ms']:.1f} ms > {budget.p95_ms:g} ms"
    if old["memory_mb"] > budget.memory_mb:
        return f"the reference pick needs {old['memory_mb']:.0f} MB here > {budget.memory_mb:g} MB"
    if mine is not None and old["cell_id"] not in mine.cells:
        return (f"the reference pick ties no more on dev here (dev nDCG@10 {old['dev_ndcg_at_10']:.4f}; "
                f"dev-best here {rows.loc[rows['dev_ndcg_at_10'].idxmax(), 'dev_ndcg_at_10']:.4f})")
    if same_ranking_but_k(old, pick_here):
        return (f"the same pipeline but for K (K={int(pick_here['k'])} against {int(old['k'])}), the same ranking at 10 "
                f"on every dev and test query; e2e p95 {pick_here['e2e_p95_ms']:.2f} against {old['e2e_p95_ms']:.2f} ms "
                "here: not a change of what to deploy")
    if old["e2e_p95_ms"] <= pick_here["e2e_p95_ms"] * (1 + LATENCY_TIE):
        return (f"both tie on dev and within {LATENCY_TIE:.0%} on e2e p95 ({pick_here['e2e_p95_ms']:.2f} against "
                f"{old['e2e_p95_ms']:.2f} ms here): the tie-breaks (memory, dev recall@K, dev nDCG@10, then the lower "
                "p95) fall the other way; a tie, not a change of what to deploy")
    but_k = " (the same pipeline but for K; a few queries rank otherwise at 10)" if same_pipeline_but_k(old, pick_here) else ""
    return (f"both tie on dev; cheaper here: e2e p95 {pick_here['e2e_p95_ms']:.1f} ms against the reference pick's "
            f"{old['e2e_p95_ms']:.1f} ms{but_k}")


PIPELINE_BUT_K = ["dataset", "encoder", "model_identity", "backend", "build_params", "search_params", "stage",
                  "reranker", "r", "fusion_alpha"]


def same_pipeline_but_k(a: pd.Series, b: pd.Series) -> bool:
    """Two rows of one pipeline that differ at most in K."""
    def same(column: str) -> bool:
        x, y = a.get(column), b.get(column)
        return x == y or (not isinstance(x, str) and not isinstance(y, str) and pd.isna(x) and pd.isna(y))

    return all(same(c) for c in PIPELINE_BUT_K if c in a.index and c in b.index)


def same_ranking_but_k(a: pd.Series, b: pd.Series) -> bool:
    """Two rows of one pipeline that differ only in K, with the same nDCG@10 on every dev and test query: K beyond the
    top 10 did not change what the user sees (a first stage's top 10 does not depend on how deep it searches, unless
    the library keeps other members of a tie at another depth)."""
    return same_pipeline_but_k(a, b) and all(np.array_equal(np.asarray(a[c], dtype=float), np.asarray(b[c], dtype=float))
               for c in ("q_ndcg_at_10", "dev_q_ndcg_at_10"))


def moved_qualities(reference: pd.DataFrame, here: pd.DataFrame) -> pd.DataFrame:
    """Per re-measured cell: dev nDCG@10 and e2e p95 on the reference host and here, whether its quality rests on int8
    kernels, and whether it moved (by more than QUALITY_MOVED)."""
    from bench.core.instruction_sets import isa_dependent_runtimes

    figures = ["dev_ndcg_at_10", "e2e_p95_ms"]
    merged = here[["cell_id", "encoder", "stage", *figures]].merge(
        reference[["cell_id", *figures]].rename(columns={f: f"{f}_reference" for f in figures}), on="cell_id")
    merged = merged.rename(columns={f: f"{f}_here" for f in figures})
    int8 = {row["cell_id"]: bool(isa_dependent_runtimes(row)) for row in here.to_dict("records")}
    merged["int8"] = merged["cell_id"].map(int8)
    merged["moved"] = (merged["dev_ndcg_at_10_here"] - merged["dev_ndcg_at_10_reference"]).abs() > QUALITY_MOVED
    return merged


def render(comparisons: list[Comparison], moved: pd.DataFrame, reference: pd.DataFrame, here: pd.DataFrame) -> str:
    """The two decision tables side by side (first), then what the comparison rests on."""
    lines = ["| dataset | budget (p95 ms / MB) | reference host: pick | e2e p95 | this host: pick | e2e p95 | "
             "changed? why |", "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        ref = label(c.reference) if c.reference is not None else "nothing fits"
        mine = label(c.here) if c.here is not None else "nothing fits"
        ref_ms = f"{c.reference['e2e_p95_ms']:.1f}" if c.reference is not None else "-"
        here_ms = f"{c.here['e2e_p95_ms']:.1f}" if c.here is not None else "-"
        lines.append(f"| {c.dataset} | {c.budget.p95_ms:g} / {c.budget.memory_mb:g} | {ref} | {ref_ms} | {mine} | "
                     f"{here_ms} | {'no' if c.same else 'yes'}: {c.why} |")
    changed = sum(not c.same for c in comparisons)
    tied = sum(not c.same and "a tie, not a change" in c.why for c in comparisons)
    k_only = sum(not c.same and "the same ranking at 10 on every" in c.why for c in comparisons)
    kernel_ref = float(reference.loc[reference["cell_id"].isin(here["cell_id"]), "calibration_ms"].median())
    kernel_here = float(here["calibration_ms"].median())
    ratio = (moved["e2e_p95_ms_here"] / moved["e2e_p95_ms_reference"]).median() if len(moved) else np.nan
    lines += [
        "",
        f"{changed} of {len(comparisons)} picks change on this host ({tied} of them to a row tied with the reference "
        f"pick on dev and on latency, {k_only} to the same pipeline at another K with the same ranking at 10). "
        f"{changed - tied - k_only} change what to deploy. Rows re-measured here: {len(here)} "
        f"({(here['stage'] == 'first').sum()} first stages measured whole, {(here['stage'] == 'rerank').sum()} rerank "
        "rows re-timed or re-scored).",
        f"Host speed: calibration kernel median {kernel_here:.3f} ms here against {kernel_ref:.3f} ms on the reference "
        f"host ({kernel_here / kernel_ref:.2f}x); e2e p95 here over the reference's, median over the re-measured rows: "
        f"{ratio:.2f}x." + (" This host is faster: rows outside a reference budget were not re-measured and could "
                            "fit here." if kernel_here < kernel_ref else ""),
        "Qualities: " + "; ".join(_moved_text(moved[moved["int8"] == kind], what) for kind, what in
                                  ((False, "rows without int8 networks"), (True, "rows on int8 kernels")))
        + " (first stages are measured whole here; fp32 rerank rows keep the reference's quality).",
        f"Measured here between {here['measured_at'].min():%Y-%m-%d %H:%M} and {here['measured_at'].max():%H:%M} UTC "
        f"({here['timestamp'].nunique()} runs), latencies on {int(here['latency_threads'].max())} thread, "
        f"{int(here['latency_samples'].median())} samples per row.",
        f"Instruction set here: {here['cpu_flags'].iloc[0]}; int8 kernels {here['int8_level'].iloc[0]}; reference "
        f"rows: {_reference_isa(reference)}.",
    ]
    return "\n".join(lines)


def _moved_text(rows: pd.DataFrame, what: str) -> str:
    if rows.empty:
        return f"no {what}"
    delta = (rows["dev_ndcg_at_10_here"] - rows["dev_ndcg_at_10_reference"]).abs()
    moved = sorted(set(rows.loc[rows["moved"], "encoder"]))
    return (f"{int(rows['moved'].sum())} of {len(rows)} {what} moved their dev nDCG@10 by more than {QUALITY_MOVED:g} "
            f"(largest {float(delta.max()):.4f}{'; ' + ', '.join(moved) if moved else ''})")


def _reference_isa(reference: pd.DataFrame) -> str:
    if "int8_level" not in reference or reference["int8_level"].isna().all():
        return "instruction set not recorded (rows from before the columns existed)"
    return ", ".join(sorted(set(reference["int8_level"].dropna())))


def recheck(paths: list[Path], budgets: list[Budget], folder: Path, data_root: Path | None,
            announce: Callable[[str], None], plan_only: bool = False, configs: Path = Path("configs")) -> str | None:
    """Measure the reference decision's rows here and compare (see the module's text); `configs`: where the sweep
    configs named by the rows' `config_name` are. Returns the comparison text (None with `plan_only`)."""
    from bench.core.env import host_id
    from bench.store.results import ResultStore, read_results
    from bench.run.sweep import run_sweep

    stored = pd.concat([read_results(p) for p in paths], ignore_index=True)  # the rows as stored (what is reused)
    reference = with_derived(stored)
    picks = decide_all(reference, budgets)
    wanted = cells_by_config(reference, picks)
    host = host_id()
    folder_of_configs, configs = configs, {}
    for name, cells in sorted(wanted.items()):
        path = folder_of_configs / f"{name}.toml"
        if not path.exists():
            raise ConfigError(f"{path}: the sweep config that measured {len(cells)} reference rows is missing")
        configs[name] = (dataclasses.replace(load_config(path), results=str(results_path(folder, host, name))), cells)
    phases = []
    for name, (config, cells) in configs.items():  # one plan for the whole re-check, before any work
        phases += run_sweep(config, data_root=data_root, only_cells=cells, reuse=stored, stand_in=True,
                            plan_only=True).phases
    from bench.run.estimate import render as render_plan

    announce(render_plan(phases, f"recheck of {len(picks)} decisions ({sum(len(c) for _, c in configs.values())} "
                                 f"reference rows in {len(configs)} configs) on host {host}"))
    if plan_only:
        return None
    for name, (config, cells) in configs.items():
        store = ResultStore(config.results_path)
        with store.locked(announce):
            try:
                run_sweep(config, data_root=data_root, store=store, only_cells=cells, reuse=stored, stand_in=True)
            finally:
                store.compact()
    here = with_derived(pd.concat([read_results(Path(c.results_path)) for c, _ in configs.values()],
                                  ignore_index=True))
    wanted_ids = set().union(*wanted.values())
    here = here[here["cell_id"].isin(wanted_ids) & (here["host_id"] == host)]
    return render(compare(picks, here, decide_all(here, budgets)), moved_qualities(reference, here), reference, here)


__all__ = ["Pick", "compare", "decide_all", "recheck", "render"]
