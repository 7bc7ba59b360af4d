"""The report package and what the command line prints: the decision first, blocks that run verbatim, no
measuring module behind the rendering, lines that fit."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main

RENDER = Path("bench/render")
# what rendering may import: the analysis (statistics, selection, decisions), bench.core (formatting, atomic writes), itself
ALLOWED = ("bench.analysis", "bench.core", "bench.render")
MEASURING = ("bench.run.measure", "bench.run.sweep", "bench.run.prepare", "bench.models.encoders", "bench.models.rerankers", "bench.series.load",
             "bench.series.scale", "bench.series.filters", "bench.series.composed", "bench.series.encode_latency", "bench.series.pipeline_gate",
             "bench.series.gate", "bench.models.train", "bench.run.executors", "bench.core.calibration")


def bench_imports(path: Path) -> set[str]:
    """Every bench module a file imports, at top level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bench"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("bench"))
    return found


def test_the_render_package_imports_no_measuring_module():
    files = sorted(RENDER.glob("*.py"))
    assert {f.stem for f in files} >= {"__init__", "decision", "sweep", "scale", "load", "filters", "composed",
                                       "repeatability", "text"}  # one module per result family
    graph = {f.stem: bench_imports(f) for f in files}
    outside = {name: sorted(m for m in mods if not m.startswith(ALLOWED)) for name, mods in graph.items()}
    assert all(not mods for mods in outside.values()), outside
    # and importing it loads none of them, directly or through the analysis it uses
    loaded = subprocess.run([sys.executable, "-c", "import sys, bench.render, bench.render.text; "
                             "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('bench'))))"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in loaded if m.startswith(MEASURING)], loaded


def test_a_block_recommend_prints_runs_verbatim(tiny_model, tmp_path, monkeypatch, capsys):
    """`recommend` prints the pick's pipeline block; saved as it is, `run`, `check-pipeline` and `load` take it."""
    monkeypatch.chdir(tmp_path)
    Path("configs").mkdir()
    tiny = Path(__file__).parent.parent / "configs" / "tiny.toml"
    text = tiny.read_text().replace('model = "sentence-transformers/all-MiniLM-L6-v2"', f'model = "{tiny_model}"')
    text = text.split("[[backends]]\nbackend = \"faiss_ivf\"")[0]  # exact and BM25 only: seconds
    Path("configs/tiny.toml").write_text(text.replace('split = "test"', 'split = "test"\nresults = "results/tiny.parquet"'))
    assert main(["run", "configs/tiny.toml"]) == 0
    capsys.readouterr()
    assert main(["recommend", "results/tiny.parquet", "--p95-ms", "10000", "--memory-mb", "10000"]) == 0
    printed = capsys.readouterr().out
    from bench.render.text import BLOCK_HEAD

    block = printed.split(BLOCK_HEAD, 1)[1].lstrip("\n")
    assert block.startswith("# synthetic") and 'sweep = "configs/tiny.toml"' in block
    Path("pick.toml").write_text(block)
    import tomllib

    cell = tomllib.loads(block)["cells"][0]

    from bench.store.results import read_results

    before = set(read_results("results/tiny.parquet")["cell_id"])
    assert cell in before
    assert main(["run", "pick.toml"]) == 0  # that cell only: already measured, nothing else planned or lost
    assert set(read_results("results/tiny.parquet")["cell_id"]) == before
    assert "1 first-stage cells planned" in capsys.readouterr().out
    assert main(["check-pipeline", "pick.toml", "--update-baseline"]) == 0  # served end to end, stage by stage
    import json

    baseline = json.loads(Path(f"results/pipelines/{tomllib.loads(block)['name']}.baseline.json").read_text())
    assert list(baseline["pipelines"]) == [cell]
    from bench.series.load import choose_cells, load_load_config

    config = load_load_config("pick.toml")  # `load` reads the same file: it serves that cell alone
    assert [c.row["cell_id"] for c in choose_cells(config, read_results("results/tiny.parquet"))] == [cell]


def test_a_block_naming_a_cell_outside_its_sweep_fails_in_one_line(tmp_path, capsys):
    block = tmp_path / "pick.toml"
    block.write_text('name = "x"\nsweep = "configs/tiny.toml"\ncells = ["feedbeef"]\nbudgets = []\n')
    assert main(["run", str(block), "--results", str(tmp_path / "r.parquet")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cells ['feedbeef'] are not cells of tiny's plan" in err[0]


def test_summary_lines_fit_and_the_report_answers_first(reranked_tiny_sweep, tmp_path, capsys):
    assert main(["summary", str(reranked_tiny_sweep.results_path), "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 5 and max(map(len, lines)) <= 160

    from bench.render import build_report
    from bench.store.results import read_results

    frame = read_results(reranked_tiny_sweep.results_path)
    out = tmp_path / "report.md"

    def render() -> tuple[str, dict]:
        text = build_report(frame, ["tiny.parquet"], tmp_path / "plots", "plots/", tables_dir=tmp_path / "tables",
                            pipelines_dir=tmp_path / "pipelines", out=out)
        files = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in sorted(tmp_path.rglob("*"))
                 if p.is_file() and p.suffix in (".csv", ".toml", ".png")}
        return text, files

    first, files = render()
    second, again = render()
    assert first == second and files == again  # the same bytes: report, tables, plots, blocks
    head = first.splitlines()
    assert head[0] == "# Retrieval stack benchmark report" and "## The decision" in head[:6]
    table = head[head.index("## The decision") + 2:]
    assert table[0].startswith("| dataset | p95 / memory budget | deploy | dev nDCG@10 | test nDCG@10 | e2e p95 ms")
    assert "[toml](pipelines/synthetic-50ms-200mb.toml)" in first
    assert any(name.startswith("pipelines/") for name in files) and any(name.startswith("tables/") for name in files)
    # test figures only for what was chosen: the grids carry dev figures
    for name, data in files.items():
        if name.startswith("tables/") and name.endswith(("k-by-r.csv", "ndcg-frontier.csv", "hybrids.csv")):
            assert b"test nDCG" not in data, name


@pytest.mark.parametrize("section", ["## The decision", "## Environment"])
def test_the_committed_report_answers_first_and_stays_short(section):
    text = Path("report.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 400
    assert max(len(line) for line in lines if line.startswith("|")) <= 250  # the rest is in the linked CSV files
    assert not re.findall(r"\b[0-9a-f]{12}\b", re.sub(r"\]\([^)]*\)", "]", text))  # no 12-hex id outside a link
    assert "Every row read here was measured from a committed tree." in text
    assert section in lines
    assert lines.index("## The decision") < 10  # the first screen


def test_the_composed_section_shows_the_picks_and_links_every_pipeline(tmp_path):
    from bench.render.composed import composed_section
    from bench.render.markdown import Tables
    from bench.store.results import COMPOSED_SCHEMA, read_results

    composed = read_results("results/composed.parquet", schema=COMPOSED_SCHEMA)
    text = composed_section(composed, Tables(tmp_path, "t/"))
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| pipeline")]
    assert rows and all("budget" in line for line in rows)  # the dev frontier's own rows are in the CSV only
    for dataset in composed["dataset"].unique():
        csv = (tmp_path / f"composed-{dataset}.csv").read_text()
        assert len(csv.splitlines()) == 1 + (composed["dataset"] == dataset).sum()


def test_the_composed_section_labels_rows_by_todays_picks_not_by_what_they_ran_as(tmp_path):
    from bench.render.composed import composed_section
    from bench.render.markdown import Tables
    from bench.store.results import COMPOSED_SCHEMA, read_results

    composed = read_results("results/composed.parquet", schema=COMPOSED_SCHEMA)
    picked = composed[composed["chosen_as"].str.contains("budget")]
    kept, dropped = picked.iloc[0], picked.iloc[1]
    now = {(kept["dataset"], kept["pipeline_id"]): ["budget 7 ms / 70 MB"]}
    text = composed_section(composed, Tables(tmp_path, "t/"), now)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| pipeline")]
    assert len(rows) == 1 and "budget 7 ms / 70 MB" in rows[0]
    csv = (tmp_path / f"composed-{dropped['dataset']}.csv").read_text()
    assert "not picked today (a budget's pick when it ran)" in csv


def test_a_plot_is_drawn_again_only_when_its_inputs_or_its_file_change(tmp_path, monkeypatch):
    from bench.render.plots import drawn_once

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    calls = []

    @drawn_once
    def plot(path, values):
        calls.append(values)
        path.write_bytes(repr(values).encode())

    png = tmp_path / "p.png"
    plot(png, [1, 2])
    plot(png, [1, 2])
    assert calls == [[1, 2]]
    plot(png, [1, 3])
    png.write_bytes(b"edited")
    plot(png, [1, 3])
    png.unlink()
    plot(png, [1, 3])
    assert calls == [[1, 2], [1, 3], [1, 3], [1, 3]]
