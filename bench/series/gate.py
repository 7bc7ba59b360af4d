"""The latency regression gate: a fixed, seeded workload per backend, compared with a committed baseline.

Noise handling. Each repetition times every query once (one thread) and keeps the median; the
backend's repetition medians are divided by the median of a fixed numpy kernel timed in the same
run (a matrix-vector product over the same corpus), so a uniformly slower or faster machine cancels
out. A backend fails when its normalized median is more than `tolerance` times the baseline's AND a
one-sided Mann-Whitney U test on the repetition medians says the slowdown is not noise (p < alpha).
Quality is part of the gate: recall@K against exact search and nDCG@10 against the planted
neighbors must equal the baseline's (the workload and builds are seeded and single-threaded).

`BENCH_SLOWDOWN=hnsw=1.5` (comma-separated, backend=factor) stretches each timed query of that
backend by busy-waiting inside the timed region: the documented way to check that the gate fires.

Hosts. Normalizing by the kernel does not make machines interchangeable: the same code on two 2-core "AMD EPYC"
machines gave backend/kernel ratios 1.3-1.5x apart. So `--against REV` (what `make check-latency` and CI use)
measures the baseline here, now: the gate of commit REV (the one that last accepted a baseline) runs in a
temporary worktree on this host, then this code's gate, and the two are compared. A host that slows between the
two reads as a regression (once here: every backend 1.1-1.6x slower, 0.9-1.1x on the rerun), so a failing round is
confirmed in the other order (this code, then the baseline): a backend fails only if it is slower in both. The committed
`latency_baseline.json` stays the record of the accepted numbers on the host that wrote it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.stats import mannwhitneyu
from threadpoolctl import threadpool_limits

from bench.data.datasets import Dataset, synthetic_vectors
from bench.search.indexes import BACKENDS, make_index
from bench.data.metrics import per_query_quality, recall_vs_exact
from bench.core.cache import atomic_write_bytes
from bench.core.env import cpu_model, versions

BASELINE_PATH = Path("benchmarks/latency_baseline.json")


@dataclass(frozen=True)
class GateWorkload:
    n: int = 20000
    dim: int = 128
    n_queries: int = 200
    k: int = 10
    seed: int = 42
    repetitions: int = 15
    warmup: int = 0  # queries per untimed warmup pass; 0 = all


# Fixed parameters per backend (each backend's `gate_params`): mid-recall settings where the search itself
# dominates the time.
GATE_BACKENDS: dict[str, tuple[dict, dict]] = {name: cls.gate_params for name, cls in BACKENDS.items()
                                               if cls.gate_params is not None}


@dataclass(frozen=True)
class BackendTiming:
    backend: str
    normalized_medians: list[float]  # per repetition: median query latency / calibration median
    median_ms: float
    recall_at_k: float
    ndcg_at_10: float


def parse_slowdown(spec: str) -> dict[str, float]:
    """`"hnsw=1.5,scann=2"` -> {"hnsw": 1.5, "scann": 2.0}."""
    factors = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition("=")
        try:
            factors[name] = float(value)
        except ValueError:
            raise ValueError(f"BENCH_SLOWDOWN: '{part}' is not backend=factor") from None
        if factors[name] < 1:
            raise ValueError(f"BENCH_SLOWDOWN: factor for '{name}' must be >= 1, got {value}")
    return factors


def slowed(call: Callable, factor: float) -> Callable:
    """`call`, made `factor` times slower by spinning after it (inside whatever times it)."""
    if factor == 1:
        return call

    def slow(*args):
        start = time.perf_counter_ns()
        result = call(*args)
        until = start + (time.perf_counter_ns() - start) * factor
        while time.perf_counter_ns() < until:
            pass
        return result

    return slow


def _median_pass_ns(call: Callable, queries: np.ndarray) -> float:
    samples = np.empty(len(queries), dtype=np.int64)
    for i, q in enumerate(queries):
        start = time.perf_counter_ns()
        call(q)
        samples[i] = time.perf_counter_ns() - start
    return float(np.median(samples))


def run_workload(workload: GateWorkload = GateWorkload(), slowdown: dict[str, float] | None = None,
                 backends: dict[str, tuple[dict, dict]] = GATE_BACKENDS) -> dict[str, BackendTiming]:
    """Build every gate backend on the seeded workload and time it, interleaved with the calibration kernel."""
    slowdown = slowdown or {}
    base, queries, source = synthetic_vectors(workload.n, workload.dim, workload.n_queries, seed=workload.seed)
    exact_ids = np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, : workload.k]
    planted = Dataset("gate", "test", [str(i) for i in range(workload.n)], [], [f"q{i}" for i in range(len(queries))],
                      [], {f"q{i}": {str(s): 1} for i, s in enumerate(source)}, "gate", "gate")
    calibration = lambda q: base @ q  # noqa: E731  the fixed numpy kernel
    indexes = {}
    for name, (build, search) in backends.items():
        index = make_index(name, **build)
        index.fit(base, threads=1)
        index.set_search(workload.k, **search)
        indexes[name] = index
    for _ in range(2):  # two untimed passes: caches, branch predictors and CPU clocks settle
        for call in [calibration, *(ix.query for ix in indexes.values())]:
            _median_pass_ns(call, queries[: workload.warmup] if workload.warmup else queries)
    calls = {"calibration": calibration,
             **{name: slowed(ix.query, slowdown.get(name, 1.0)) for name, ix in indexes.items()}}
    medians: dict[str, list[float]] = {name: [] for name in indexes}
    for _ in range(workload.repetitions):
        # Interleaved per query, so the kernel and every backend see the same machine state.
        samples = {name: np.empty(len(queries), dtype=np.int64) for name in calls}
        for i, q in enumerate(queries):
            for name, call in calls.items():
                start = time.perf_counter_ns()
                call(q)
                samples[name][i] = time.perf_counter_ns() - start
        calib = float(np.median(samples["calibration"]))
        for name in indexes:
            medians[name].append(float(np.median(samples[name])) / calib)
    results = {}
    calib_ms = _median_pass_ns(calibration, queries) / 1e6
    for name, index in indexes.items():
        found = index.batch_query(queries, threads=1).ids
        results[name] = BackendTiming(
            backend=name, normalized_medians=medians[name],
            median_ms=float(np.median(medians[name]) * calib_ms),
            recall_at_k=round(recall_vs_exact(found, exact_ids), 6),
            ndcg_at_10=round(float(per_query_quality(found, planted)["ndcg_at_10"].mean()), 6),
        )
    return results


@dataclass(frozen=True)
class Verdict:
    backend: str
    ratio: float  # normalized median now / baseline
    p_value: float
    slower: bool
    quality_ok: bool
    detail: str

    @property
    def ok(self) -> bool:
        return not self.slower and self.quality_ok


def slowdown_test(now: list[float], then: list[float], tolerance: float, alpha: float) -> tuple[float, float, bool]:
    """(ratio of medians now / then, one-sided Mann-Whitney p of "now is greater", slower): slower only if the
    ratio is past `tolerance` and the test significant at `alpha`."""
    ratio = float(np.median(now) / np.median(then))
    p_value = float(mannwhitneyu(now, then, alternative="greater").pvalue)
    return ratio, p_value, ratio > tolerance and p_value < alpha


def compare(now: dict[str, BackendTiming], baseline: dict, tolerance: float = 1.3, alpha: float = 0.01) -> list[Verdict]:
    """Judge every baseline backend: slower only if past `tolerance` and significant at `alpha`."""
    verdicts = []
    for name, reference in baseline["backends"].items():
        if name not in now:
            verdicts.append(Verdict(name, float("nan"), float("nan"), True, False, "missing from this run"))
            continue
        timing = now[name]
        ratio, p_value, slower = slowdown_test(timing.normalized_medians, reference["normalized_medians"],
                                               tolerance, alpha)
        quality_ok = (timing.recall_at_k == reference["recall_at_k"] and timing.ndcg_at_10 == reference["ndcg_at_10"])
        detail = (f"recall@k {timing.recall_at_k} (baseline {reference['recall_at_k']}), "
                  f"nDCG@10 {timing.ndcg_at_10} (baseline {reference['ndcg_at_10']})")
        verdicts.append(Verdict(name, ratio, p_value, slower, quality_ok, detail))
    for name in sorted(set(now) - set(baseline["backends"])):
        verdicts.append(Verdict(name, float("nan"), float("nan"), False, True,
                                "new: not in the baseline, not judged (`make update-baseline` records it)"))
    return verdicts


def save_baseline(results: dict[str, BackendTiming], workload: GateWorkload, path: Path = BASELINE_PATH) -> None:
    payload = {"workload": asdict(workload), "cpu_model": cpu_model(), "versions": versions(),
               "backends": {name: asdict(t) for name, t in results.items()}}
    atomic_write_bytes(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1) + "\n"))


def load_baseline(path: Path = BASELINE_PATH) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no latency baseline; create one with `make update-baseline`")
    return json.loads(path.read_text())


def baseline_at(rev: str) -> dict:
    """The gate of commit `rev`, run on this host in a temporary worktree, as a baseline (no injected slowdown)."""
    with tempfile.TemporaryDirectory() as folder:
        tree, out = Path(folder) / "tree", Path(folder) / "baseline.json"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], check=True, capture_output=True, text=True)
        try:
            env = {k: v for k, v in os.environ.items() if k != "BENCH_SLOWDOWN"}
            env["PYTHONPATH"] = str(tree)
            # the gate's module where commit `rev` has it (bench/gate.py before the layout of 2026-12-06)
            module = "bench.series.gate" if (tree / "bench" / "series" / "gate.py").exists() else "bench.gate"
            subprocess.run([sys.executable, "-m", module, "--update-baseline", "--baseline", str(out)],
                           cwd=tree, env=env, check=True, capture_output=True, text=True)
            return json.loads(out.read_text())
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.series.gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--update-baseline", action="store_true", help="accept this run as the new baseline")
    parser.add_argument("--baseline", type=Path, default=BASELINE_PATH)
    parser.add_argument("--against", metavar="REV", help="measure the baseline on this host from commit REV's gate")
    parser.add_argument("--tolerance", type=float, default=1.3, help="allowed normalized slowdown (default 1.3x)")
    parser.add_argument("--alpha", type=float, default=0.01, help="significance level of the Mann-Whitney test")
    args = parser.parse_args(argv)
    try:
        slowdown = parse_slowdown(os.environ.get("BENCH_SLOWDOWN", ""))
    except ValueError as err:
        print(f"error: {err}")
        return 2
    started = time.perf_counter()
    baseline, measured_here = None, False
    if args.against and not args.update_baseline:
        try:
            baseline = baseline_at(args.against)
            measured_here = True
            print(f"baseline: commit {args.against[:10]}'s gate, measured on this host just now")
        except (subprocess.CalledProcessError, OSError, ValueError) as err:
            detail = getattr(err, "stderr", "") or str(err)
            print(f"baseline: commit {args.against[:10]} could not be measured here ({detail.strip().splitlines()[-1:]}); "
                  f"comparing with {args.baseline}, recorded on another host: latency ratios may be off by the host")
    baseline = baseline or (None if args.update_baseline else load_baseline(args.baseline))
    workload = GateWorkload(**baseline["workload"]) if baseline else GateWorkload()
    # judged backends only: one the baseline lacks is listed as new, not timed (update-baseline times every one)
    backends = GATE_BACKENDS if baseline is None else {name: GATE_BACKENDS[name] for name in GATE_BACKENDS
                                                       if name in baseline["backends"]}
    with threadpool_limits(limits=1):  # the numpy calibration kernel on one BLAS thread, like the searches
        results = run_workload(workload, slowdown, backends)
    if args.update_baseline:
        save_baseline(results, workload, args.baseline)
        print(f"baseline written to {args.baseline}: " + ", ".join(
            f"{t.backend} {t.median_ms:.4f} ms" for t in results.values()))
        return 0
    verdicts = compare(results, baseline, args.tolerance, args.alpha) + [
        Verdict(name, float("nan"), float("nan"), False, True, "new: not in the baseline, not timed "
                "(`make update-baseline` records it)") for name in sorted(set(GATE_BACKENDS) - set(backends))]
    title = "latency gate"
    if measured_here and not all(v.ok for v in verdicts):
        # The round timed the baseline first, then this code: a host that slowed in between reads as a regression
        # (seen here: every backend 1.1-1.6x in one round, 0.9-1.1x in the next). Confirm in the other order; a
        # real regression is slower in both rounds.
        _print_verdicts("first round (baseline, then this code)", verdicts, workload, args)
        with threadpool_limits(limits=1):
            again = run_workload(workload, slowdown, backends)
        second = compare(again, baseline_at(args.against), args.tolerance, args.alpha)
        _print_verdicts("second round (this code, then baseline)", second, workload, args)
        by_name = {v.backend: v for v in second}
        verdicts = [v if v.ok or v.backend not in by_name or not by_name[v.backend].ok else by_name[v.backend]
                    for v in verdicts]
        title = "latency gate (a backend fails only if it failed in both rounds)"
    _print_verdicts(title, verdicts, workload, args)
    print(f"gate {'passed' if all(v.ok for v in verdicts) else 'FAILED'} in {time.perf_counter() - started:.1f}s")
    return 0 if all(v.ok for v in verdicts) else 1


def _print_verdicts(title: str, verdicts: list, workload, args) -> None:
    print(f"{title}: tolerance {args.tolerance}x, alpha {args.alpha}, "
          f"{workload.repetitions} repetitions x {workload.n_queries} queries, N={workload.n}, dim={workload.dim}")
    for v in verdicts:
        status = "ok" if v.ok else ("SLOWER" if v.slower else "QUALITY CHANGED")
        print(f"  {v.backend:10s} ratio {v.ratio:5.2f}  p={v.p_value:<8.2g} {status:15s} {v.detail}")


if __name__ == "__main__":
    raise SystemExit(main())
