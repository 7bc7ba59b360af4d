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

# The run: what plans, prepares and measures a sweep. The series: experiments built on it.
RUN = {"bench.plan", "bench.estimate", "bench.prepare", "bench.measure", "bench.sweep", "bench.executors",
       "bench.recheck", "bench.adaptive"}
SERIES = {"bench.scale", "bench.load", "bench.filters", "bench.composed", "bench.norms", "bench.gate",
          "bench.pipeline_gate", "bench.encode_latency"}
MODELS = {"bench.encoders", "bench.rerank", "bench.train", "bench.train.cross", "bench.train.towers",
          "bench.train.options"}
# What each layer must not import (directly): the layers after it in the data's order.
FORBIDDEN = {
    "bench.render": RUN | SERIES | MODELS | {"bench.cli", "bench.config"},
    "bench.analysis": RUN | SERIES | MODELS | {"bench.render", "bench.cli", "bench.config"},
    "bench.stages": RUN | SERIES | {"bench.analysis", "bench.render", "bench.cli", "bench.config", "bench.pipelines"},
    "bench.pipelines": RUN | SERIES | {"bench.analysis", "bench.render", "bench.cli", "bench.config"},
    "bench.instruction_sets": {"bench"},  # a leaf: every layer reads it
}


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


def against_direction(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for layer, banned in FORBIDDEN.items():
        for module, targets in graph.items():
            if module != layer and not module.startswith(layer + "."):
                continue
            for target in targets:
                if any(target == b or target.startswith(b + ".") for b in banned) and not target.startswith(layer):
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
    assert against_direction({"bench.render.x": {"bench.sweep"}, "bench.analysis": {"bench.cache"}}) == [
        "bench.render.x -> bench.sweep"]
