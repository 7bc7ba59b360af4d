"""The store under faults: a writer killed (SIGKILL) at each named point of its phases and at random moments,
concurrent writers of different configs on one file, a results path that is a folder. After each: no row lost,
no wrong row stored, no corrupt file, the next run is not blocked."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.store.results import ResultStore, SchemaError, history_path, read_results

WRITER = Path(__file__).with_name("writer.py")
# (point, occurrence): after a part's temp file is written, after its rename, after the results file's temp write,
# after the compacted file is in place, between part deletions, after the last, after the history write
POINTS = [("part-temp-written", 1), ("part-temp-written", 3), ("part-renamed", 1), ("part-renamed", 4),
          ("results-temp-written", 1), ("compacted", 1), ("part-removed", 1), ("part-removed", 3),
          ("parts-removed", 1), ("history-written", 1)]


def write(path: Path, first: int, n: int, fault: str = "", *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_FAULT": fault} if fault else {k: v for k, v in os.environ.items() if k != "BENCH_FAULT"}
    return subprocess.run([sys.executable, str(WRITER), str(path), str(first), str(n), *extra], env=env,
                          capture_output=True, text=True, timeout=120)


def stored(path: Path) -> dict[str, float]:
    frame = read_results(path)
    return dict(zip(frame["cell_id"], frame["ndcg_at_10"]))


def expected(first: int, n: int) -> dict[str, float]:
    return {f"c{i:04d}": i / 10_000 for i in range(first, first + n)}


def check_after_kill(path: Path, first: int, n: int, killed: subprocess.CompletedProcess) -> None:
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    before = stored(path)  # readable: no corrupt file, whatever was in flight
    assert all(expected(first, n)[cell] == value for cell, value in before.items() if cell in expected(first, n))
    rerun = write(path, first, n)  # the next run: not blocked, and it completes the rows
    assert rerun.returncode == 0, rerun.stderr
    assert stored(path) == {**before, **expected(first, n)}
    leftovers = [p.name for p in path.parent.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers


@pytest.mark.parametrize("point, occurrence", POINTS)
def test_a_writer_killed_at_a_named_point_loses_nothing(tmp_path, point, occurrence):
    path = tmp_path / "r.parquet"
    assert write(path, 0, 3).returncode == 0  # rows already there
    assert write(path, 0, 2).returncode == 0  # superseding two: history exists, so every phase is reached
    killed = write(path, 2, 5, f"{point}:{occurrence}")  # c0002 again (superseded: history), then new cells
    check_after_kill(path, 2, 5, killed)
    assert set(stored(path)) == set(expected(0, 7))  # the earlier rows too


@pytest.mark.parametrize("seed", range(10))
def test_a_writer_killed_at_a_random_moment_loses_nothing(tmp_path, seed):
    path = tmp_path / "r.parquet"
    assert write(path, 0, 3).returncode == 0
    process = subprocess.Popen([sys.executable, str(WRITER), str(path), "10", "40"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    time.sleep(random.Random(seed).uniform(0.5, 2.5))  # imports take ~1 s here: before, during and after the adds
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = stored(path)
    assert set(expected(0, 3)) <= set(before)
    assert all(expected(10, 40)[cell] == value for cell, value in before.items() if cell in expected(10, 40))
    assert write(path, 10, 40).returncode == 0
    assert stored(path) == {**expected(0, 3), **expected(10, 40)}


def test_two_concurrent_writers_of_different_configs_keep_every_row(tmp_path):
    path = tmp_path / "r.parquet"
    runs = [subprocess.Popen([sys.executable, str(WRITER), str(path), str(first), "30"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for first in (0, 100)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    assert stored(path) == {**expected(0, 30), **expected(100, 30)}
    waited = [err for _, err in outputs if "waiting for" in err]
    assert len(waited) <= 1 and all(err.count("\n") == 1 for err in waited)  # one line while it waited


def test_compaction_folds_only_the_parts_it_read(tmp_path):
    """Without the lock (the library used directly), a compaction never deletes a part another writer added after it
    read the folder."""
    path = tmp_path / "r.parquet"
    assert write(path, 0, 5, "", "no-compact").returncode == 0
    mine = ResultStore(path)
    mine.load()
    assert write(path, 100, 5, "", "no-compact").returncode == 0  # another writer's parts, after this one loaded
    mine.compact()
    assert stored(path) == {**expected(0, 5), **expected(100, 5)}


def test_a_stray_temp_file_is_never_fatal(tmp_path):
    path = tmp_path / "r.parquet"
    assert write(path, 0, 2, "", "no-compact").returncode == 0
    parts = path.with_name(f".{path.name}.parts")
    (parts / ".00000000000000000001.parquet.999999.tmp").write_bytes(b"half a part")  # a killed writer's (pid gone)
    path.with_name(f".{path.name}.999998.tmp").write_bytes(b"")  # a killed compaction's
    assert write(path, 2, 2).returncode == 0
    assert stored(path) == expected(0, 4)
    assert not list(tmp_path.rglob("*.tmp"))


def test_superseded_rows_go_to_the_history_file(tmp_path):
    path = tmp_path / "r.parquet"
    assert write(path, 0, 3).returncode == 0
    assert write(path, 1, 1).returncode == 0  # c0001 again
    history = read_results(history_path(path))
    assert list(history["cell_id"]) == ["c0001"] and len(read_results(path)) == 3
    assert ResultStore(path).drop({"c0002"}, "h") == 1
    assert list(read_results(history_path(path))["cell_id"]) == ["c0001", "c0002"]
    assert set(stored(path)) == {"c0000", "c0001"}


def test_a_results_path_must_be_a_file(tmp_path, capsys):
    with pytest.raises(SchemaError, match="is a directory; a results path names a .parquet file"):
        ResultStore(tmp_path)
    from bench.cli import main

    for command in (["summary", str(tmp_path)], ["run", "configs/tiny.toml", "--results", str(tmp_path)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is a directory" in err[0]


def test_a_full_disk_loses_no_row_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """ENOSPC (simulated: a tmpfs needs root here) on the third part write, then on compaction's rewrite."""
    import errno

    import bench.store.results
    from faults.writer import row

    path = tmp_path / "r.parquet"
    real = bench.store.results.pq.write_table
    calls = []

    def filling(table, where, *args, **kwargs):
        calls.append(where)
        if len(calls) >= 3:
            Path(where).write_bytes(b"partial")  # a partial write, then the error
            raise OSError(errno.ENOSPC, "No space left on device", str(where))
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(bench.store.results.pq, "write_table", filling)
    store = ResultStore(path)
    store.add(row(1))
    store.add(row(2))
    with pytest.raises(OSError, match="No space left"):
        store.add(row(3))
    with pytest.raises(OSError, match="No space left"):
        store.compact()
    monkeypatch.setattr(bench.store.results.pq, "write_table", real)
    assert stored(path) == {"c0001": 1 / 10_000, "c0002": 2 / 10_000}  # the two written rows, nothing half-written
    assert not list(tmp_path.rglob("*.tmp"))
    store = ResultStore(path)  # space again: the next run completes
    store.add(row(3))
    store.compact()
    assert stored(path) == expected(1, 3)


@pytest.mark.parametrize("fault", ["part-temp-written:2", "part-renamed:3"])
def test_a_sweep_killed_mid_run_resumes_with_only_the_cell_in_flight(tiny_model, tmp_path, fault):
    """The whole sweep, killed by SIGKILL at its n-th row: the next run measures exactly the rows not stored."""
    tiny = Path(__file__).parents[2] / "configs" / "tiny.toml"
    text = tiny.read_text().replace('model = "sentence-transformers/all-MiniLM-L6-v2"', f'model = "{tiny_model}"')
    text = text.split('[[backends]]\nbackend = "faiss_ivf"')[0]  # exact and BM25: seconds
    config = tmp_path / "tiny.toml"
    config.write_text(text.replace('split = "test"', f'split = "test"\nresults = "{tmp_path / "r.parquet"}"'))
    command = [sys.executable, "-m", "bench", "run", str(config)]
    killed = subprocess.run(command, env={**os.environ, "BENCH_FAULT": fault, "HF_HUB_OFFLINE": "1"},
                            capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    kept = read_results(tmp_path / "r.parquet")
    survivors = int(fault.split(":")[1]) - (1 if fault.startswith("part-temp") else 0)
    assert len(kept) == survivors
    env = {k: v for k, v in os.environ.items() if k != "BENCH_FAULT"}
    rerun = subprocess.run(command, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
                           cwd=Path(__file__).parents[2])
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = read_results(tmp_path / "r.parquet")
    assert after["cell_id"].is_unique and set(kept["cell_id"]) <= set(after["cell_id"])
    assert f"{len(after) - survivors} rows measured and 0 re-timed" in rerun.stdout  # only what was not stored
    assert not list(tmp_path.rglob("*.tmp"))
