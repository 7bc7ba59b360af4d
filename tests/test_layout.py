"""The shape of bench/: no import cycle, and no import against the data's direction (issue 40).

The graph is built from the source: every `import` of a bench module, at module level or inside a function (an import
inside a function runs too, later), to the module it names, or for `from package import name` to the submodule when
`name` is one, plus every package above it (importing bench.analysis.series runs bench/analysis/__init__.py).
Imports under `if TYPE_CHECKING:` never run and are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"

# The data's order: a package may import the packages before it, never one after it. Beyond the order: rendering and
# the analysis never import what measures (models, run, series); bench.core imports nothing else of bench.
ORDER = ("core", "data", "search", "models", "pipeline", "store", "analysis", "run", "series", "render", "cli")
NEVER = {"analysis": {"models", "run", "series"}, "render": {"models", "run", "series"}}


def modules() -> dict[str, Path]:
    found = {}
    for path in BENCH.rglob("*.py"):
        parts = list(path.relative_to(BENCH.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> tuple[dict[str, set[str]], int]:
    """Module -> the bench modules it imports; and how many import statements sit inside functions."""
    known = modules()

    def resolve(name: str) -> str:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {name: set() for name in known}
    inside_functions = 0
    for name, path in known.items():
        tree = ast.parse(path.read_text())
        skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
        in_function = {id(n) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(node)}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skipped or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t for t in targets if t == "bench" or t.startswith("bench.")]
            if targets and id(node) in in_function:
                inside_functions += 1
            for target in targets:
                module = resolve(target)
                parts = module.split(".")
                for depth in range(2, len(parts) + 1):  # the module and every package above it, below bench
                    above = ".".join(parts[:depth])
                    if above != name and not name.startswith(above + "."):
                        graph[name].add(above)
    return graph, inside_functions


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> str:
    """The package of bench a module belongs to (bench/cli.py is the "cli" layer; bench/__init__ and __main__: none)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else ""


def against_direction(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a package after the importer's in ORDER, or of one it must NEVER import."""
    rank = {name: position for position, name in enumerate(ORDER)}
    wrong = []
    for module, targets in graph.items():
        mine = layer(module)
        for target in targets:
            theirs = layer(target)
            if mine not in rank or theirs not in rank or mine == theirs:
                continue
            if rank[theirs] > rank[mine] or theirs in NEVER.get(mine, ()):
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def test_bench_has_no_import_cycle_and_no_import_against_the_data_direction():
    graph, inside_functions = import_graph()
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} imports between them, {inside_functions} import "
          "statements inside functions")
    assert cycles(graph) == []
    assert against_direction(graph) == []


def test_the_checks_can_fail():
    """A planted cycle and a planted import against the direction are found."""
    graph = {"bench.a": {"bench.b"}, "bench.b": {"bench.a"}, "bench.c": set()}
    assert cycles(graph) == [["bench.a", "bench.b"]]
    assert against_direction({"bench.render.x": {"bench.run.sweep"}, "bench.analysis": {"bench.core.cache"},
                              "bench.data.splits": {"bench.models.encoders"}, "bench.cli": {"bench.run"}}) == [
        "bench.data.splits -> bench.models.encoders", "bench.render.x -> bench.run.sweep"]


def test_the_top_of_bench_holds_packages_the_cli_and_main_only():
    assert sorted(p.name for p in BENCH.glob("*.py")) == ["__init__.py", "__main__.py", "cli.py"]
    for package in ORDER[:-1]:
        doc = ast.get_docstring(ast.parse((BENCH / package / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"bench/{package}/__init__.py must say what it owns and what it may import"


MEASURES = ("bench.models", "bench.run", "bench.series", "bench.search.indexes.", "bench.search.hybrid",
            "bench.search.mips")  # what measures (the backends' modules, not their base types or the catalog)


def test_stage_kinds_describe_and_import_nothing_that_measures():
    """A stage kind's description (bench.pipeline.stages) reads rows and names pipelines; its measuring hooks are the
    run's (bench.run.hooks). Rendering reads backend names and short names without loading faiss or hnswlib."""
    graph, _ = import_graph()
    described = {m: sorted(t for t in targets if t.startswith(MEASURES) and t != "bench.search.indexes.base")
                 for m, targets in graph.items() if m.startswith("bench.pipeline.stages")}
    assert described and not any(described.values()), described
    code = ("import sys, bench.render, bench.analysis, bench.pipeline.stages, bench.pipeline.config; "
            "print(sorted(m for m in ('faiss', 'hnswlib', 'scann', 'torch') if m in sys.modules))")
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
