"""The one cell-id migration: ids from the cell alone (2026-12-06).

Before it, a cell's id hashed its encoder's whole backend list and a hybrid's whole depth list, and a rerank child's
id its reranker's whole alpha list, so adding a sibling to a config orphaned rows that had not changed. Ids now hash
what the cell measures only (bench.run.plan._spec_key, _reranker_key). This rewrites stored ids without measuring:
every sweep config's cells are planned under the old rule and the new one, and every id the old rule gave is
replaced by the new one wherever it is stored: the `cell_id` and `sweep_cell_id` columns of the results files and
their history files, the `cells` of pipeline blocks, the pipeline gate's baseline. A row keeps its old id in
`cell_id_before_migration`. An id no config plans (a row orphaned before) is left as it is.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd

from bench.core.cache import atomic_write_bytes
from bench.pipeline.config import ConfigError, load_config
from bench.run import plan

OLD_COLUMN = "cell_id_before_migration"


def _old_spec_key(encoder) -> dict:
    """The rule before: the encoder's grids (backend list, a hybrid's depth list) in the key."""
    return plan.without_added_defaults(dataclasses.asdict(encoder), plan.SPEC_FIELDS_ADDED)


def _old_reranker_key(reranker) -> dict:
    """The rule before: the reranker's alpha list in the key."""
    return plan.without_added_defaults(dataclasses.asdict(reranker), plan.RERANKER_FIELDS_ADDED)


def _identity(spec, config, data_root) -> str:
    """The identity its cells hash: resolved here, or, for a model not installed here (all-mpnet-base-v2 without
    `make mpnet`), the one its stored rows were measured with."""
    from bench.run.prepare import resolve_encoder
    from bench.search.indexes.base import ParamError

    try:
        return resolve_encoder(spec, config, data_root).identity
    except (ParamError, ConfigError):
        stored = pd.read_parquet(config.results_path, columns=["encoder", "model_identity"])
        return stored.loc[stored["encoder"] == spec.name, "model_identity"].iloc[-1]


def _ids(config, data_root) -> list[str]:
    from bench.run.prepare import sweep_splits

    dataset = sweep_splits(config, data_root).evaluation
    ids = []
    for spec in config.encoders:
        cells, _ = plan.plan_cells(config, dataset, spec, _identity(spec, config, data_root))
        ids += [i for cell in cells for i in cell.ids]
    return ids


def id_map(configs: list[Path], data_root: Path | None, announce=print) -> dict[str, str]:
    """Old id -> new id over the sweep configs (each config's cells planned under both rules, in the same order)."""
    mapping: dict[str, str] = {}
    for path in configs:
        try:
            config = load_config(path)
        except (ConfigError, TypeError, KeyError, ValueError):
            continue  # a series config, not a sweep
        if not config.encoders:
            continue
        new = _ids(config, data_root)
        saved = plan._spec_key, plan._reranker_key
        plan._spec_key, plan._reranker_key = _old_spec_key, _old_reranker_key
        try:
            old = _ids(config, data_root)
        finally:
            plan._spec_key, plan._reranker_key = saved
        assert len(old) == len(new), path
        changed = {o: n for o, n in zip(old, new) if o != n}
        announce(f"{path}: {len(new)} cells planned, {len(changed)} ids change")
        mapping.update(changed)
    return mapping


def migrate(results: Path, mapping: dict[str, str], baselines: list[Path], announce=print) -> None:
    """Rewrite the ids in every parquet file and pipeline block under `results` and in the gate `baselines`."""
    for path in sorted(results.glob("*.parquet")):
        frame = pd.read_parquet(path)
        if "cell_id" not in frame or OLD_COLUMN in frame:
            continue
        columns = [c for c in ("cell_id", "sweep_cell_id") if c in frame]
        moved = sum(int(frame[c].isin(mapping.keys()).sum()) for c in columns)
        if not moved:
            continue  # a series' own cells, or rows whose ids stay: the file is left as it is
        frame[OLD_COLUMN] = frame["cell_id"]
        for column in columns:
            frame[column] = frame[column].map(lambda i: mapping.get(i, i))
        atomic_write_bytes(path, lambda tmp: frame.to_parquet(tmp, index=False))
        announce(f"{path}: {len(frame)} rows, {moved} ids rewritten")
    pattern = re.compile("|".join(map(re.escape, mapping))) if mapping else None
    for path in [*sorted((results / "pipelines").glob("*.toml")), *baselines]:
        text = path.read_text()
        new = pattern.sub(lambda m: mapping[m.group(0)], text) if pattern else text
        if new != text:
            atomic_write_bytes(path, lambda tmp: Path(tmp).write_text(new))
            announce(f"{path}: ids rewritten")


def main(configs: list[Path], results: Path, baselines: list[Path], data_root: Path | None) -> int:
    mapping = id_map(configs, data_root)
    (results / "cell_id_migration.json").write_text(json.dumps(mapping, indent=0, sort_keys=True))
    migrate(results, mapping, baselines)
    return 0
