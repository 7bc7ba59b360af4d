import time

import numpy as np
import pytest

from bench.series.gate import BackendTiming, GateWorkload, compare, parse_slowdown, run_workload, slowed

RNG = np.random.default_rng(0)
REFERENCE = (1.0 + 0.02 * RNG.standard_normal(15)).tolist()


def baseline(recall=0.9, ndcg=0.8):
    return {"backends": {"hnsw": {"normalized_medians": REFERENCE, "recall_at_k": recall, "ndcg_at_10": ndcg}}}


def timing(scale, recall=0.9, ndcg=0.8):
    medians = (scale * (1.0 + 0.02 * np.random.default_rng(1).standard_normal(15))).tolist()
    return {"hnsw": BackendTiming("hnsw", medians, 0.1, recall, ndcg)}


@pytest.mark.parametrize("scale, slower", [(1.0, False), (1.1, False), (1.5, True), (2.0, True)])
def test_compare_flags_real_slowdowns_only(scale, slower):
    (verdict,) = compare(timing(scale), baseline())
    assert verdict.slower is slower and verdict.ok is not slower
    assert verdict.ratio == pytest.approx(scale, rel=0.05)


def test_noise_past_tolerance_but_not_significant_passes():
    noisy = {"hnsw": BackendTiming("hnsw", [1.0] * 14 + [5.0], 0.1, 0.9, 0.8)}
    assert compare(noisy, baseline())[0].ok


def test_quality_must_match_the_baseline():
    (verdict,) = compare(timing(1.0, recall=0.89), baseline())
    assert not verdict.slower and not verdict.quality_ok and not verdict.ok
    (missing,) = compare({}, baseline())
    assert not missing.ok


def test_parse_slowdown():
    assert parse_slowdown("hnsw=1.5, scann=2") == {"hnsw": 1.5, "scann": 2.0}
    assert parse_slowdown("") == {}
    with pytest.raises(ValueError, match="'hnsw' is not backend=factor"):
        parse_slowdown("hnsw")
    with pytest.raises(ValueError, match="must be >= 1"):
        parse_slowdown("hnsw=0.5")


def test_slowed_stretches_the_call_inside_the_timed_region():
    start = time.perf_counter()
    assert slowed(lambda x: time.sleep(0.01) or x, 2.0)(7) == 7
    assert time.perf_counter() - start >= 0.02


def test_workload_quality_is_deterministic():
    small = GateWorkload(n=800, dim=16, n_queries=20, repetitions=2, warmup=5)
    backends = {"exact": ({}, {}), "faiss_ivf": ({"nlist": 16}, {"nprobe": 2}),
                "hnsw": ({"M": 8, "ef_construction": 40}, {"ef": 10}),
                "scann": ({"num_leaves": 16, "reorder": 20}, {"num_leaves_to_search": 2})}
    first, second = run_workload(small, backends=backends), run_workload(small, backends=backends)
    for name in backends:
        assert (first[name].recall_at_k, first[name].ndcg_at_10) == (second[name].recall_at_k, second[name].ndcg_at_10)
        assert len(first[name].normalized_medians) == 2 and min(first[name].normalized_medians) > 0
    assert first["exact"].recall_at_k == 1.0


def test_a_baseline_from_an_unknown_commit_is_an_error_not_a_pass():
    import subprocess

    from bench.series.gate import baseline_at

    with pytest.raises(subprocess.CalledProcessError):
        baseline_at("no-such-revision")


@pytest.mark.parametrize("rounds, passes", [((1.5, 1.0), True), ((1.5, 1.5), False), ((1.0, None), True)])
def test_a_failing_round_is_confirmed_in_the_other_order(monkeypatch, capsys, rounds, passes):
    """--against: a round that fails is timed again, this code first; only a slowdown seen in both rounds fails (a
    host that slowed between baseline and this code fails one round only)."""
    import bench.series.gate as gate

    scales = iter(rounds)
    baselines = []
    monkeypatch.setattr(gate, "run_workload", lambda workload, slowdown, backends=None: timing(next(scales)))
    monkeypatch.setattr(gate, "baseline_at", lambda rev: baselines.append(rev) or {**baseline(), "workload": {}})
    assert gate.main(["--against", "abc"]) == (0 if passes else 1)
    out = capsys.readouterr().out
    assert len(baselines) == (1 if rounds[1] is None else 2)
    assert ("second round (this code, then baseline)" in out) is (rounds[1] is not None)
    assert "pgvector_hnsw" in out and "new: not in the baseline, not timed" in out  # no verdict, no minutes spent
