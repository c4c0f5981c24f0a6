"""The shape of the house, read from the source with `ast`: no import cycle among kfuzz's
modules, no module over 500 lines, no function over 80 lines (but the few named below)."""

from __future__ import annotations

import ast
from pathlib import Path

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# Functions allowed past MAX_FUNCTION_LINES (at most five), each a declarative table.
LONG_FUNCTIONS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(FUZZ).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("kfuzz", *parts))


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(FUZZ.rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def import_graph() -> dict[str, set[str]]:
    """kfuzz module -> the kfuzz modules it imports (at module level or inside functions; not
    imports made only for type checking)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        deps: set[str] = set()
        for node in ast.walk(tree):
            if _type_checking_only(node, parents):
                continue
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    if sub in modules:
                        deps.add(sub)
                    elif node.module in modules:
                        deps.add(node.module)
        graph[name] = deps - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_kfuzz_modules():
    graph = import_graph()
    assert len(graph) > 30 and graph["kfuzz.cli.app"], "the graph was not read"
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or ())


def test_no_module_over_500_lines():
    long = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    assert {n: lines for n, lines in long.items() if lines > MAX_MODULE_LINES} == {}


def test_no_function_over_80_lines_but_the_named_tables():
    assert len(LONG_FUNCTIONS) <= 5
    long = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{name}.{node.name}"] = lines
    assert set(long) <= LONG_FUNCTIONS, long
