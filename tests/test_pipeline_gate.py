import json

from bench.pipeline_gate import PipelineGateConfig, judge, main, run_gate
from bench.store import read_results


def test_the_gate_passes_unchanged_and_fails_on_an_injected_slowdown(reranked_tiny_sweep, tmp_path):
    sweep = reranked_tiny_sweep
    frame = read_results(sweep.results_path)
    reranked = frame[(frame["r"] > 0) & (frame["encoder"] == "minilm")]["cell_id"].iloc[0]
    config = PipelineGateConfig(name="g", sweep="(given)", budgets=[[10000, 10000]], cells=[reranked[:10]],
                                queries=6, repetitions=5, warmup=2, baseline=str(tmp_path / "baseline.json"))
    baseline = run_gate(config, {}, sweep=sweep)
    cells = list(baseline["pipelines"])
    assert reranked in cells and all(len(p["normalized_medians"]["e2e"]) == 5 for p in baseline["pipelines"].values())
    unchanged = judge(run_gate(config, {}, cells=cells, sweep=sweep), baseline, config)
    assert all(v.ok for v in unchanged), [v for v in unchanged if not v.ok]
    for stage in ("encode", "rerank"):
        slow = judge(run_gate(config, {stage: 3.0}, cells=[reranked], sweep=sweep), baseline, config)
        failed = {v.stage for v in slow if not v.ok}
        assert stage in failed and "search" not in failed, slow


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
