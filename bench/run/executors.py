"""Where a sweep's build groups run: in this process, or as Ray tasks (`python -m bench run --executor ray`).

A build group is one index build and the cells searched on it; groups are independent, so they can
run anywhere. On Ray each group is one task that reserves as many CPUs as the sweep's build /
throughput threads, so concurrent tasks never share those cores (Ray reserves logically; it does not
pin threads to cores). Rows come back to the driver, which writes them to the same store, with the same
schema, as a local run: the hardware columns (host_id, cpu_model, ...) are the worker's own.
"""

from __future__ import annotations

import copy
import os
from typing import Protocol

from tqdm import tqdm

from bench.core.cache import cache_dir
from bench.core.env import ISA_COLUMNS, run_metadata

HARDWARE_COLUMNS = ("host_id", "cpu_model", "n_cpus", "memory_gb", "platform", *ISA_COLUMNS)


class Executor(Protocol):
    def run(self, measurer, groups: list, desc: str, total: int) -> int:
        """Measure every group with `measurer`; each row ends in `measurer.sink` here. Returns rows written."""


class LocalExecutor:
    """Groups one after another in this process; rows are written as they are measured."""

    def run(self, measurer, groups: list, desc: str, total: int) -> int:
        progress = tqdm(total=total, desc=desc, unit="cell")
        try:
            return sum(measurer.measure_group(group, progress) for group in groups)
        finally:
            progress.close()


def _measure_on_worker(measurer, group: list) -> list[dict]:
    rows: list[dict] = []
    measurer = copy.copy(measurer)
    measurer.sink = rows.append
    measurer.measure_group(group)
    hardware = {k: v for k, v in run_metadata("").items() if k in HARDWARE_COLUMNS}
    return [{**row, **hardware} for row in rows]


class RayExecutor:
    """One Ray task per build group; `address` None starts a local Ray, else joins that cluster."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address, self.num_cpus = address, num_cpus
        self._started = False

    def _init(self) -> None:
        import ray

        if ray.is_initialized():
            return
        env = {name: os.environ[name] for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "BENCH_DATA_DIR")
               if name in os.environ}
        env["BENCH_CACHE_DIR"] = str(cache_dir().resolve())
        options = {"address": self.address} if self.address else {"num_cpus": self.num_cpus}
        ray.init(**options, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
        self._started = True

    def run(self, measurer, groups: list, desc: str, total: int) -> int:
        import ray

        self._init()
        cpus = max(measurer.build_threads, measurer.batch_threads, measurer.online_threads)
        task = ray.remote(num_cpus=cpus)(_measure_on_worker)
        shipped = ray.put(measurer.portable())
        pending = [task.remote(shipped, group) for group in groups]
        written = 0
        progress = tqdm(total=total, desc=f"{desc} on ray", unit="cell")
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for rows in ray.get(done):
                    for row in rows:
                        measurer.sink(row)
                    written += len(rows)
                    progress.update(sum(1 for row in rows if row["stage"] == "first"))
        finally:
            progress.close()
            for ref in pending:
                ray.cancel(ref)
        return written

    def close(self) -> None:
        import ray

        if self._started:
            ray.shutdown()
            self._started = False
