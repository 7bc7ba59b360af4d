"""A results writer for the fault tests, run as its own process: `python writer.py PATH FIRST N [COMPACT]` adds
rows c<FIRST>..c<FIRST+N-1> (each with its own nDCG@10, so a wrong row is seen) under the store's lock, then
compacts. BENCH_FAULT (bench.store.results.fault) kills it at a named point."""

import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.store.results import SCHEMA, ResultStore  # noqa: E402


def row(i: int) -> dict:
    values = {}
    for field in SCHEMA:
        kind = str(field.type)
        values[field.name] = ("x" if kind == "string" else [] if kind.startswith("list") else False if kind == "bool"
                              else datetime(2026, 1, 1, tzinfo=timezone.utc) if kind.startswith("timestamp") else 1)
    values.update(cell_id=f"c{i:04d}", host_id="h", ndcg_at_10=i / 10_000, build_params="{}")
    return values


if __name__ == "__main__":
    path, first, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    compact = len(sys.argv) < 5 or sys.argv[4] != "no-compact"
    store = ResultStore(path)
    with store.locked():
        for i in range(first, first + n):
            store.add(row(i))
        if compact:
            store.compact()
