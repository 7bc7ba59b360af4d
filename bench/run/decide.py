"""The decision mode (`python -m bench decide CONFIG...`, `make decide`): measure first what can change the decision
under the budgets, skip what cannot, and stop when every wave is measured or skipped.

`make bench` measures every cell of a config. This mode measures the same cells (same ids, same rows, into its own
results file, `results/decide-<config>.parquet`) in waves, cheapest first, and skips with a logged reason:

- a first-stage wave per encoder: the pretrained models' first (the likelier picks), then the ones the harness
  trains, each group in order of its estimated cost on this host (bench.run.estimate, the plan `run` prints);
- along an ANN grid line (one build, one K, the effort knob raised: ef, nprobe, leaves) a setting is skipped once a
  cheaper one on the line reached dev recall@K 1.0 (`recall_reached`: it returns exact search's top K already) or
  an end-to-end p95 above the largest budget (`over_every_budget`: a cheaper neighbour is a lower bound);
- then the rerank wave, last: a cross-encoder is trained only if a first stage it reranks fits a budget (dev recall
  at the rerank threshold, e2e p95 and memory within one: reranking only adds to both); each first stage's children
  are scored first on a seeded quarter, then half, of the dev queries (successive halving) and a child is dropped
  when, under every budget its first stage fits, its paired upper bound against that budget's current dev-best
  (a measured row) is below zero at PRUNE_ALPHA (one-sided 0.001); the survivors get every pair, test and dev;
- `--minutes`: a wave whose estimate does not fit the time left is not started, and a cell or child reached after
  the deadline is skipped: the decision is then over what was measured, and its last line says what was not.

bench.analysis.pruning replays each rule on the stored exhaustive grids (`python -m bench prune-replay`): none
prunes a pick or a tie there.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from bench.analysis import (ALPHA, DEFAULT_BUDGETS, Budget, NothingFits, candidates, paired_p, recommend, t_interval,
                            with_derived, within)
from bench.analysis.pruning import HALVING_SEED, HALVING_SHARES, PRUNE_ALPHA, effort_of, upper_bounds
from bench.core.cache import atomic_write_bytes
from bench.core.figures import ci
from bench.core.env import host_id
from bench.pipeline.config import SweepConfig
from bench.run.estimate import duration
from bench.run.plan import Cell, RerankCell, plan_cells
from bench.run.prepare import resolve_encoder, sweep_splits
from bench.run.sweep import run_sweep
from bench.store.results import ResultStore



@dataclass(frozen=True)
class Skip:
    config: str
    cell_id: str
    what: str  # the encoder (and reranker, R) of the cell
    rule: str  # recall_reached, over_every_budget, halving, time limit, no budget
    reason: str


class Pruner:
    """What one config's decision run skips, from the rows measured so far (this host's, in its results file).

    `skip(cell)` is asked before a first-stage cell is measured, `halve(...)` before a first stage's rerank children
    are scored; `record(row)` sees every row written. A cell already stored is never skipped (a resumed run measures
    again what it measured, and skips again what it skipped, from the same rows)."""

    def __init__(self, config: SweepConfig, store: ResultStore, budgets: list[Budget], deadline: float | None):
        self.config, self.store, self.budgets, self.deadline = config, store, budgets, deadline
        self.largest = max(b.p95_ms for b in budgets)
        self.lines: dict[str, tuple[tuple, str, float]] = {}  # cell id -> (line, knob, effort)
        self.members: dict[tuple, list[tuple[float, str]]] = {}
        self.skips: dict[str, Skip] = {}
        self.pairs_halving = 0
        frame = store.load()
        mine = frame[frame["host_id"] == host_id()]
        self.rows = {r["cell_id"]: (float(r["dev_recall_at_k"]), float(r["e2e_p95_ms"]))
                     for r in mine[["cell_id", "dev_recall_at_k", "e2e_p95_ms"]].to_dict("records")}
        self._derived: pd.DataFrame | None = None

    def plan(self, cells: list[Cell]) -> None:
        """Register the grid's cells on their effort lines."""
        for cell in cells:
            effort = effort_of(cell.search)
            if effort is None:
                continue
            knob, value, rest = effort
            line = (cell.encoder.name, cell.backend, json.dumps(cell.build, sort_keys=True), cell.k, knob, rest)
            self.lines[cell.cell_id] = (line, knob, value)
            self.members.setdefault(line, []).append((value, cell.cell_id))

    def late(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def record(self, row: dict) -> None:
        self.rows[row["cell_id"]] = (float(row["dev_recall_at_k"]), float(row["e2e_p95_ms"]))
        self.skips.pop(row["cell_id"], None)
        self._derived = None

    def _skip(self, cell_id: str, what: str, rule: str, reason: str) -> None:
        self.skips[cell_id] = Skip(self.config.name, cell_id, what, rule, reason)

    def order(self, group: list[Cell]) -> list[Cell]:
        """A build group's cells with each line's cheaper settings first."""
        return sorted(group, key=lambda c: self.lines.get(c.cell_id, ((), "", 0.0))[2])

    def skip(self, cell: Cell) -> bool:
        """Whether to leave this first-stage cell (and its children) unmeasured; the reason is logged."""
        if cell.cell_id in self.rows:
            return False
        what = f"{cell.encoder.name} {cell.backend} {json.dumps(cell.search, sort_keys=True)} K={cell.k}"
        if self.late():
            self._skip(cell.cell_id, what, "time limit", "reached after the deadline (--minutes)")
            return True
        if cell.cell_id not in self.lines:
            return False
        line, knob, effort = self.lines[cell.cell_id]
        for value, other in sorted(self.members[line]):
            if value >= effort or other not in self.rows:
                continue
            recall, p95 = self.rows[other]
            if recall >= 1.0:
                self._skip(cell.cell_id, what, "recall_reached", f"dev recall@K 1.0 already at {knob}={value:g}")
                return True
            if p95 > self.largest:
                self._skip(cell.cell_id, what, "over_every_budget",
                           f"e2e p95 {p95:.1f} ms at {knob}={value:g}, over the largest budget ({self.largest:g} ms)")
                return True
        return False

    def derived(self) -> pd.DataFrame:
        if self._derived is None:
            frame = self.store.load()
            frame = frame[frame["host_id"] == host_id()]
            self._derived = with_derived(frame) if len(frame) else frame
        return self._derived

    def incumbent(self, budget: Budget) -> pd.Series | None:
        """The measured row with the best dev nDCG@10 within `budget`, None when nothing fits yet."""
        rows = self.derived()
        fits = within(candidates(rows), budget) if len(rows) else rows
        return None if fits.empty else fits.loc[fits["dev_ndcg_at_10"].idxmax()]

    def halve(self, first_row: dict, children: list[RerankCell], reranker: str,
              score: Callable[[list[RerankCell], np.ndarray], tuple[dict[str, np.ndarray], int]]) -> list[RerankCell]:
        """Successive halving of one first stage's children over its dev queries; returns the survivors.

        `score(children, positions)` gives each child's per-query dev nDCG@10 on those dev query positions (scoring
        the pairs they need) and how many pairs it scored."""
        rows = self.derived()
        first = rows[rows["cell_id"] == first_row["cell_id"]]
        label = lambda ch: f"{first_row['encoder']} {first_row['backend']} K={first_row['k']} >> {reranker} R={ch.r} alpha={ch.alpha}"  # noqa: E731
        if self.late():
            for child in children:
                self._skip(child.cell_id, label(child), "time limit", "reached after the deadline (--minutes)")
            return []
        if first.empty or int(first["n_dev_queries"].iloc[0]) == 0:
            return children  # no dev queries: nothing to halve on (a choice on test is the report's to flag)
        first = first.iloc[0]
        fits = [b for b in self.budgets if first["e2e_p95_ms"] <= b.p95_ms and first["memory_mb"] <= b.memory_mb]
        if not fits:
            for child in children:
                self._skip(child.cell_id, label(child), "over_every_budget",
                           f"its first stage alone takes {first['e2e_p95_ms']:.1f} ms p95 / {first['memory_mb']:.0f} MB, "
                           "over every budget")
            return []
        dev_ids = list(first["dev_query_ids"])
        best = {}
        for budget in fits:
            row = self.incumbent(budget)
            if row is None or list(row["dev_query_ids"]) != dev_ids:
                return children  # a budget with nothing to compare against: every child goes on
            best[budget] = row
        order = np.random.default_rng(HALVING_SEED).permutation(len(dev_ids))
        alive = list(children)
        for share in HALVING_SHARES:
            if not alive:
                break
            positions = order[: max(2, int(round(share * len(dev_ids))))]
            quality, pairs = score(alive, positions)
            self.pairs_halving += pairs
            for child in list(alive):
                bounds = {b: float(upper_bounds(quality[child.cell_id]
                                                - np.asarray(row["dev_q_ndcg_at_10"], dtype=float)[positions])[0])
                          for b, row in best.items()}
                if all(u < 0 for u in bounds.values()):
                    alive.remove(child)
                    budget, u = max(bounds.items(), key=lambda item: item[1])
                    self._skip(child.cell_id, label(child), "halving",
                               f"on {len(positions)} of {len(dev_ids)} dev queries below {best[budget]['pipeline']} "
                               f"under every budget its first stage fits (upper bound {u:+.3f} at one-sided "
                               f"{PRUNE_ALPHA:g}, closest under {budget.p95_ms:g} ms / {budget.memory_mb:g} MB)")
        return alive


# ---------------------------------------------------------------- the run


@dataclass
class Wave:
    config: SweepConfig
    what: str  # an encoder's name, or "rerank"
    cells: set[str]  # the ids to measure (first stages; for the rerank wave, first stages and their children)
    seconds: float  # the plan's estimate on this host (an upper bound: pruning only removes work)
    trained: bool = False  # the encoder is trained by the harness (its wave comes after the pretrained ones)


@dataclass
class DecisionRun:
    frames: dict[str, pd.DataFrame]  # per config name, its rows measured here (derived)
    skips: list[Skip]
    waves_run: int
    waves_skipped: list[str]
    pairs_scored: int  # by the rows measured (their cross_pairs_scored), halving's dev subsets included
    pairs_halving: int  # of those, scored on dev subsets while halving (children dropped then are in no row)
    rows_measured: int
    seconds: float  # this call's wall time
    upper_bound_s: float  # `run` on every cell, by this host's plan
    skip_files: list[Path] = dataclasses.field(default_factory=list)


def results_path(config: SweepConfig, folder: Path) -> Path:
    return folder / f"decide-{config.name}.parquet"


def _first_stage_cells(config: SweepConfig, data_root: Path | None
                       ) -> tuple[dict[str, list[Cell]], set[str], set[str]]:
    """Every encoder's planned first-stage cells (with their children), as `run` plans them; the encoders the harness
    trains; and those distilled from the harness's cross-encoder (their training trains it first)."""
    dataset = sweep_splits(config, data_root).evaluation
    resolved = {spec.name: resolve_encoder(spec, config, data_root) for spec in config.encoders}
    towers = {name: r.tower or (r.dense.tower if r.dense is not None else None) for name, r in resolved.items()}
    trained = {name for name, tower in towers.items() if tower is not None}
    distilled = {name for name, tower in towers.items() if tower is not None and tower.kd != "none"}
    return ({name: plan_cells(config, dataset, r.spec, r.identity)[0] for name, r in resolved.items()}, trained,
            distilled)


def _estimate(config: SweepConfig, store: ResultStore, cells: set[str], data_root: Path | None) -> list:
    """The phases `run` would announce for these cells on this host (bench.run.estimate)."""
    return run_sweep(config, data_root=data_root, store=store, only_cells=cells, plan_only=True).phases


def _seconds(phases: list) -> float:
    return float(sum(p.seconds for p in phases))


def run_decision(configs: list[SweepConfig], budgets: list[Budget] | None = None, minutes: float | None = None,
                 folder: Path = Path("results"), data_root: Path | None = None,
                 announce: Callable[[str], None] = print, measure: bool = True) -> DecisionRun:
    """Decide under `budgets` for each config, measuring waves cheapest first and skipping what cannot change the
    pick (module docstring). Rows go to `folder/decide-<config>.parquet`, skips to `.skips.csv` and the run's
    figures to `.run.json` beside it; a second call resumes. `measure=False`: the stored rows and logs only."""
    budgets = budgets or DEFAULT_BUDGETS
    started = time.monotonic()
    deadline = started + 60 * minutes if minutes else None
    configs = [dataclasses.replace(c, results=str(results_path(c, folder))) for c in configs]
    stores = {c.name: ResultStore(c.results_path) for c in configs}
    if not measure:
        return _stored(configs, stores)
    pruners = {c.name: Pruner(c, stores[c.name], budgets, deadline) for c in configs}
    plans, trained, distilled = {}, {}, {}
    for config in configs:
        plans[config.name], trained[config.name], distilled[config.name] = _first_stage_cells(config, data_root)
        pruners[config.name].plan([cell for cells in plans[config.name].values() for cell in cells])

    upper, cross_training = 0.0, {}
    for config in configs:  # the exhaustive plan: what `run` would do, an upper bound on this mode's work
        phases = _estimate(config, stores[config.name], {i for cs in plans[config.name].values() for c in cs
                                                         for i in c.ids}, data_root)
        upper += _seconds(phases)
        cross_training[config.name] = _seconds([p for p in phases if "(cross-encoder" in p.what])
    waves = [Wave(c, name, {cell.cell_id for cell in cells}, 0.0, trained=name in trained[c.name])
             for c in configs for name, cells in plans[c.name].items() if cells]
    for wave in waves:
        wave.seconds = _seconds(_estimate(wave.config, stores[wave.config.name], wave.cells, data_root))
        if wave.what in distilled[wave.config.name]:  # its teacher, the cross-encoder, is trained first
            wave.seconds += cross_training[wave.config.name]
    waves.sort(key=lambda w: (w.trained, w.seconds))  # likely before unlikely: a pretrained model before one trained here
    announce(f"decision plan for {len(budgets)} budgets ({', '.join(f'{b.p95_ms:g} ms / {b.memory_mb:g} MB' for b in budgets)}): "
             f"at most {duration(upper)} on this host (every cell, as `run` would measure them: the upper bound)"
             + (f"; time limit {minutes:g} min" if minutes else ""))
    for wave in waves:
        announce(f"  first stages of {wave.config.name} {wave.what}: {len(wave.cells)} cells, at most {duration(wave.seconds)}")
    announce("  then each config's rerank wave: children of the first stages that fit a budget, halved over dev queries")

    ran, not_run = 0, []

    def run_wave(wave: Wave) -> None:
        nonlocal ran
        if deadline is not None:  # again now: what earlier waves encoded or trained is cached
            distill = cross_training[wave.config.name] if wave.what in distilled[wave.config.name] else 0.0
            wave.seconds = _seconds(_estimate(wave.config, stores[wave.config.name], wave.cells, data_root)) + distill
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and wave.seconds > left:
            not_run.append(f"{wave.config.name} {wave.what} (about {duration(wave.seconds)}, {duration(max(left, 0))} left)")
            pruner = pruners[wave.config.name]
            for cell_id in wave.cells - set(pruner.rows):
                pruner._skip(cell_id, wave.what, "time limit", f"its wave needs about {duration(wave.seconds)}, "
                             f"{duration(max(left, 0))} were left")
            return
        announce(f"[{(time.monotonic() - started) / 60:.1f} min] {wave.config.name}: {wave.what}, about "
                 f"{duration(wave.seconds)} at most")
        run_sweep(wave.config, data_root=data_root, store=stores[wave.config.name], only_cells=wave.cells,
                  announce=announce, pruner=pruners[wave.config.name])
        ran += 1
        announce(progress(configs, pruners, budgets, waves[waves.index(wave) + 1:] if wave in waves else []))

    for wave in waves:
        run_wave(wave)
    for config in configs:
        wave = rerank_wave(config, plans[config.name], pruners[config.name], budgets)
        if wave.cells:
            wave.seconds = _seconds(_estimate(config, stores[config.name], wave.cells, data_root))
            run_wave(wave)

    seconds = time.monotonic() - started
    for config in configs:
        pruner = pruners[config.name]
        write_skips(list(pruner.skips.values()), skips_path(config))
        record = {"minutes": seconds / 60, "time_limit_min": minutes, "waves_run": ran, "upper_bound_min": upper / 60,
                  "pairs_halving": pruner.pairs_halving, "host_id": host_id(),
                  "waves_not_started": [w for w in not_run if w.startswith(config.name + " ")]}
        atomic_write_bytes(run_path(config), lambda tmp: tmp.write_text(json.dumps(record, indent=1) + "\n"))
    return _stored(configs, stores, pairs_halving=sum(p.pairs_halving for p in pruners.values()), waves_run=ran,
                   not_run=not_run, seconds=seconds, upper=upper)


def skips_path(config: SweepConfig) -> Path:
    return Path(config.results_path).with_suffix(".skips.csv")


def run_path(config: SweepConfig) -> Path:
    return Path(config.results_path).with_suffix(".run.json")


def _stored(configs: list[SweepConfig], stores: dict[str, ResultStore], pairs_halving: int | None = None,
            waves_run: int = 0, not_run: list[str] | None = None, seconds: float = 0.0, upper: float = 0.0
            ) -> DecisionRun:
    """This host's stored rows and skip logs; without a run's own figures, those its last call recorded."""
    frames, measured, pairs, skips, halved, records = {}, 0, 0, [], 0, []
    for config in configs:
        stores[config.name].compact()
        frame = stores[config.name].load()
        frame = frame[frame["host_id"] == host_id()]
        measured += len(frame)
        pairs += int(frame["cross_pairs_scored"].fillna(0).sum())
        frames[config.name] = with_derived(frame) if len(frame) else frame
        if skips_path(config).exists():
            logged = pd.read_csv(skips_path(config), dtype=str, keep_default_na=False)
            skips += [Skip(**row) for row in logged.to_dict("records")]
        if run_path(config).exists():
            records.append(json.loads(run_path(config).read_text()))
    if pairs_halving is None:  # the last call's figures, as recorded
        halved = sum(r.get("pairs_halving", 0) for r in records)
        not_run = [w for r in records for w in r.get("waves_not_started", [])]
        waves_run = max((r.get("waves_run", 0) for r in records), default=0)
        seconds = 60 * max((r.get("minutes", 0.0) for r in records), default=0.0)
        upper = 60 * max((r.get("upper_bound_min", 0.0) for r in records), default=0.0)
    else:
        halved = pairs_halving
    return DecisionRun(frames, skips, waves_run, not_run or [], pairs + halved, halved, measured, seconds, upper,
                       [skips_path(c) for c in configs])


def rerank_wave(config: SweepConfig, plans: dict[str, list[Cell]], pruner: Pruner, budgets: list[Budget]) -> Wave:
    """The first stages whose children can still matter (measured, dev recall at the rerank threshold, within a
    budget's latency and memory), with those children; the others' children are logged as skipped."""
    rows = pruner.derived()
    by_id = rows.set_index("cell_id") if len(rows) else rows
    cells: set[str] = set()
    for encoder, planned in plans.items():
        for cell in planned:
            if not cell.children:
                continue
            what = f"{encoder} {cell.backend} K={cell.k} >> rerank"
            if cell.cell_id not in by_id.index:
                parent = pruner.skips.get(cell.cell_id)
                for child in cell.children if parent is not None else ():
                    pruner._skip(child.cell_id, what, parent.rule, "its first stage was skipped")
                continue
            first = by_id.loc[cell.cell_id]
            if first["dev_recall_at_k"] < config.rerank.min_recall_at_k:
                continue  # not planned by `run` either (the rerank threshold)
            if not any(first["e2e_p95_ms"] <= b.p95_ms and first["memory_mb"] <= b.memory_mb for b in budgets):
                for child in cell.children:
                    pruner._skip(child.cell_id, what, "over_every_budget",
                                 f"its first stage alone takes {first['e2e_p95_ms']:.1f} ms p95 / "
                                 f"{first['memory_mb']:.0f} MB, over every budget")
                continue
            cells.update(cell.ids)
    return Wave(config, "rerank", cells, 0.0)


def progress(configs: list[SweepConfig], pruners: dict[str, Pruner], budgets: list[Budget],
             left: list[Wave]) -> str:
    """Per dataset and budget, the current pick with its dev interval; what is left to measure."""
    lines = []
    for config in configs:
        rows = pruners[config.name].derived()
        if rows.empty:
            continue
        for budget in budgets:
            try:
                pick = recommend(rows, budget).pick
            except NothingFits:
                lines.append(f"  {config.name} {budget.p95_ms:g} ms / {budget.memory_mb:g} MB: nothing fits yet")
                continue
            lines.append(f"  {config.name} {budget.p95_ms:g} ms / {budget.memory_mb:g} MB: {pick['pipeline']} "
                         f"(dev {ci(*t_interval(pick['dev_q_ndcg_at_10']))})")
        lines.append(f"  {config.name}: {len(pruners[config.name].rows)} rows measured, "
                     f"{len(pruners[config.name].skips)} cells skipped so far")
    cells = sum(len(w.cells) for w in left)
    lines.append(f"  left: {len(left)} first-stage waves ({cells} cells, at most {duration(sum(w.seconds for w in left))}), "
                 "then the rerank waves")
    return "current decision:\n" + "\n".join(lines)


def write_skips(skips: list[Skip], path: Path) -> None:
    frame = pd.DataFrame([dataclasses.asdict(s) for s in skips], columns=[f.name for f in dataclasses.fields(Skip)])
    atomic_write_bytes(path, lambda tmp: frame.to_csv(tmp, index=False))


def decision_table(run: DecisionRun, budgets: list[Budget], reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per dataset and budget, the pick over the rows measured here; beside the reference's pick where given: the
    same pipeline, or tied with it on dev (one-sided paired t over the reference rows' per-query dev nDCG@10, p >=
    ALPHA, the rule `recommend` ties by)."""
    out = []
    for name, rows in run.frames.items():
        if rows.empty:
            continue
        dataset = str(rows["dataset"].iloc[0])
        ref_rows = None
        if reference is not None:
            ref_rows = reference[reference["dataset"] == dataset]
        for budget in budgets:
            entry = {"dataset": dataset, "budget": f"{budget.p95_ms:g} ms / {budget.memory_mb:g} MB"}
            try:
                choice = recommend(rows, budget)
            except NothingFits:
                out.append({**entry, "pick": "nothing fits"})
                continue
            pick = choice.pick
            entry.update({"pick": pick["pipeline"], "dev nDCG@10": ci(*choice.dev_interval()),
                          "test nDCG@10": ci(*choice.test_interval()), "e2e p95 ms": f"{pick['e2e_p95_ms']:.3g}",
                          "memory MB": f"{pick['memory_mb']:.0f}"})
            if ref_rows is not None and len(ref_rows):
                entry.update(_against(pick, ref_rows, budget))
            out.append(entry)
    return pd.DataFrame(out)


def _against(pick: pd.Series, reference: pd.DataFrame, budget: Budget) -> dict:
    try:
        theirs = recommend(reference, budget).pick
    except NothingFits:
        return {"reference pick": "nothing fits", "same or tied": "no"}
    if theirs["pipeline"] == pick["pipeline"]:  # one name: the same pipeline, at a K that does not change the top 10
        return {"reference pick": "(the same)", "same or tied": "same pipeline"
                + ("" if theirs["k"] == pick["k"] else f" (K={theirs['k']} there, {pick['k']} here)")}
    if list(theirs["dev_query_ids"]) != list(pick["dev_query_ids"]):
        return {"reference pick": theirs["pipeline"], "same or tied": "not comparable (other dev queries)"}
    diff = np.asarray(theirs["dev_q_ndcg_at_10"], dtype=float) - np.asarray(pick["dev_q_ndcg_at_10"], dtype=float)
    p = paired_p(diff, "t", "greater")
    return {"reference pick": theirs["pipeline"], "same or tied": f"tied (p = {p:.2f})" if p >= ALPHA
            else f"below it (p = {p:.3f})"}


def decision_text(run: DecisionRun, table: pd.DataFrame, budgets: list[Budget]) -> str:
    """The decision table first, then what was not measured and what the run cost."""
    return "\n".join([
        f"Decision on host {host_id()[:4]} under {len(budgets)} budgets, chosen on dev queries (test nDCG@10 reported "
        "once, 95% t-intervals; e2e p95 from this host's sweep rows):", "",
        table.to_string(index=False) if len(table) else "(nothing measured)", "",
        skipped_line(run) + f" Each skip with its rule and reason: {', '.join(str(p) for p in run.skip_files)}.",
        f"Measured {run.rows_measured} rows in {run.waves_run} waves and scored {run.pairs_scored:,} cross-encoder pairs "
        f"({run.pairs_halving:,} of them on dev subsets while halving) in {run.seconds / 60:.1f} min; `run` on every "
        f"cell: at most {run.upper_bound_s / 60:.0f} min by this host's plan." if run.seconds else
        f"{run.rows_measured} rows stored, {run.pairs_scored:,} cross-encoder pairs in them (no record of the measuring "
        "run's time: its decide-<config>.run.json is missing)."])


def skipped_line(run: DecisionRun) -> str:
    counts = Counter(s.rule for s in run.skips)
    text = ", ".join(f"{n} by {rule}" for rule, n in counts.most_common()) or "none"
    line = f"Not measured: {len(run.skips)} cells ({text})"
    if run.waves_skipped:
        line += f"; waves not started for the time limit: {'; '.join(run.waves_skipped)} (the decision is over what was measured)"
    return line + "."
