import json

from bench.series import gate
from bench.series import pipeline_gate
from bench.series.pipeline_gate import PipelineGateConfig, judge, main, run_gate
from bench.store.results import read_results


class TickClock:
    """Stands in for the `time` module inside the gates: every reading is one microsecond after the last, so a
    stage that does not read the clock lasts one tick, and `slowed` stretches it by its factor, whatever the host."""

    def __init__(self):
        self.ns = 0

    def perf_counter_ns(self) -> int:
        self.ns += 1000
        return self.ns

    def perf_counter(self) -> float:
        return self.perf_counter_ns() / 1e9


def _config(reranked: str, tmp_path) -> PipelineGateConfig:
    return PipelineGateConfig(name="g", sweep="(given)", budgets=[[10000, 10000]], cells=[reranked[:10]],
                              queries=6, repetitions=5, warmup=2, baseline=str(tmp_path / "baseline.json"))


def _reranked_cell(sweep) -> str:
    frame = read_results(sweep.results_path)
    return frame[(frame["r"] > 0) & (frame["encoder"] == "minilm")]["cell_id"].iloc[0]


def test_the_gate_times_every_stage_and_the_lists_repeat(reranked_tiny_sweep, tmp_path):
    sweep = reranked_tiny_sweep
    reranked = _reranked_cell(sweep)
    config = _config(reranked, tmp_path)
    baseline = run_gate(config, {}, sweep=sweep)
    cells = list(baseline["pipelines"])
    assert reranked in cells
    for timed in baseline["pipelines"].values():
        assert all(len(timed["normalized_medians"][name]) == 5 and min(timed["ms_medians"][name]) > 0
                   for name in ("encode", "search", "rerank", "e2e"))
    again = run_gate(config, {}, cells=cells, sweep=sweep)
    assert all(again["pipelines"][cell]["ranked_lists"] == baseline["pipelines"][cell]["ranked_lists"] for cell in cells)


def test_the_gate_passes_unchanged_and_fails_on_an_injected_slowdown(reranked_tiny_sweep, tmp_path, monkeypatch):
    """On a clock that ticks the same on every host (the real one's noise is the latency gates' own business)."""
    clock = TickClock()
    monkeypatch.setattr(pipeline_gate, "time", clock)
    monkeypatch.setattr(gate, "time", clock)
    sweep = reranked_tiny_sweep
    reranked = _reranked_cell(sweep)
    config = _config(reranked, tmp_path)
    baseline = run_gate(config, {}, sweep=sweep)
    cells = list(baseline["pipelines"])
    unchanged = judge(run_gate(config, {}, cells=cells, sweep=sweep), baseline, config)
    assert unchanged and all(v.ok for v in unchanged), [v for v in unchanged if not v.ok]
    for stage in ("encode", "rerank"):
        slow = judge(run_gate(config, {stage: 3.0}, cells=[reranked], sweep=sweep), baseline, config)
        failed = {v.stage for v in slow if not v.ok}
        assert failed == {stage, "e2e"}, slow


def _timed(stages_ms: dict[str, float], kernel_ms: float, lists: str = "abc") -> dict:
    """One pipeline's record as run_gate writes it: five repetitions at the given medians, +-1% apart."""
    spread = [0.99, 1.0, 1.01, 0.995, 1.005]
    ms = {**stages_ms, "e2e": sum(stages_ms.values())}
    return {"pipelines": {"c": {"pipeline": "p", "ranked_lists": lists,
                                "ms_medians": {k: [v * s for s in spread] for k, v in ms.items()},
                                "normalized_medians": {k: [v * s / kernel_ms for s in spread] for k, v in ms.items()},
                                "median_ms": ms}}}


def test_judge_blames_the_code_not_the_host(tmp_path):
    config = _config("c", tmp_path)
    baseline = _timed({"encode": 4.0, "search": 0.1, "rerank": 20.0}, kernel_ms=0.4)
    verdicts = {v.stage: v for v in judge(_timed({"encode": 4.0, "search": 0.1, "rerank": 20.0}, 0.4), baseline, config)}
    assert all(v.ok for v in verdicts.values()) and not verdicts["search"].judged  # 0.4% of the time: shown only
    # everything 1.5x slower, the kernel too: the host slowed down, not the code
    host = judge(_timed({"encode": 6.0, "search": 0.15, "rerank": 30.0}, 0.6), baseline, config)
    assert all(v.ok for v in host)
    # the encoder 1.5x slower on the same host: encode fails, end to end (1.25x) stays under the tolerance; a 3x
    # slower search is too small a share to judge; the encoder 3x slower: end to end fails too
    code = judge(_timed({"encode": 6.0, "search": 0.3, "rerank": 20.0}, 0.4), baseline, config)
    assert {v.stage for v in code if not v.ok} == {"encode"}
    code = judge(_timed({"encode": 12.0, "search": 0.1, "rerank": 20.0}, 0.4), baseline, config)
    assert {v.stage for v in code if not v.ok} == {"encode", "e2e"}
    # other ranked lists fail whatever the timing
    assert not any(v.ok for v in judge(_timed({"encode": 4.0, "search": 0.1, "rerank": 20.0}, 0.4, "xyz"),
                                       baseline, config))
    (missing,) = judge({"pipelines": {}}, baseline, config)
    assert not missing.ok and "cell missing" in missing.pipeline


def test_bad_gate_inputs_exit_2(tmp_path, capsys):
    config = tmp_path / "gate.toml"
    config.write_text('name = "g"\nsweep = "configs/tiny.toml"\nrepetitions = 2\n')
    assert main([str(config)]) == 2
    assert "repetitions >= 3" in capsys.readouterr().err
    config.write_text(f'name = "g"\nsweep = "configs/tiny.toml"\nbaseline = "{tmp_path / "none.json"}"\n')
    assert main([str(config)]) == 2
    assert "no pipeline baseline; record one with --update-baseline" in capsys.readouterr().err
    (tmp_path / "b.json").write_text(json.dumps({"workload": {"queries": 1}, "pipelines": {}}))
    config.write_text(f'name = "g"\nsweep = "configs/tiny.toml"\nbaseline = "{tmp_path / "b.json"}"\n')
    assert main([str(config)]) == 2 and "record a new baseline" in capsys.readouterr().err
