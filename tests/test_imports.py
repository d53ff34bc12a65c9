"""sagan's modules import one another in one direction: no circle among them.

Every module under sagan/ is parsed with `ast` (nothing is imported), its `import sagan...`, `from sagan... import`
and relative imports are resolved to sagan's own modules, and the graph is searched for circles. Two graphs:

- import time: the imports a module runs when it is imported (module level, class bodies, `if`/`try` blocks; not
  function bodies, not `if TYPE_CHECKING:`). A circle here can break an import depending on which module comes first.
- all imports: the above plus the imports inside functions. Those are run later, so they cannot break an import,
  but a circle through them still means two modules that need each other: the tangle this test keeps out.

`from package import name` is an edge to the submodule `package.name` when there is one, otherwise to the package's
`__init__`; importing `a.b.c` also runs `a/__init__` and `a/b/__init__`, which is not counted: a package that
re-exports its submodules is the usual, harmless shape.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sagan"


@dataclass(frozen=True)
class Edge:
    """`source` imports `target` at `path:line`; `lazy` when the import sits in a function body."""

    source: str
    target: str
    path: str
    line: int
    lazy: bool


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module and package under sagan/."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.Module):
    """(import statement, inside a function body) for every import a module can run."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, lazy = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, lazy
            elif isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend((c, lazy) for c in child.orelse)  # the `if` body is for type checkers only
            else:
                stack.append((child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))))


def _edges(modules: dict[str, Path]) -> list[Edge]:
    edges = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, lazy in _import_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
            for target in targets:
                while target and target not in modules:  # `import sagan.x.y as z` where y is a name: sagan.x
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.append(Edge(name, target, str(path.relative_to(ROOT)), node.lineno, lazy))
    return edges


def _circles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted, sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _shortest_circle(component: list[str], edges: list[Edge]) -> list[str]:
    """One shortest circle through the component's first module (breadth first), closed on itself."""
    members = set(component)
    start = component[0]
    graph: dict[str, list[str]] = {}
    for e in edges:
        if e.source in members and e.target in members:
            graph.setdefault(e.source, []).append(e.target)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(set(graph.get(v, []))):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return path[::-1] + [start]
                if w not in came_from:
                    came_from[w] = v
                    nxt.append(w)
        frontier = nxt
    return []


def _describe(circles: list[list[str]], edges: list[Edge]) -> str:
    lines = []
    for component in circles:
        members = set(component)
        lines.append("circle " + " -> ".join(_shortest_circle(component, edges)) + "; its imports:")
        lines += [f"  {e.source} -> {e.target}  ({e.path}:{e.line}{', in a function' if e.lazy else ''})"
                  for e in sorted(set(edges), key=lambda e: (e.source, e.target, e.line))
                  if e.source in members and e.target in members]
    return "\n".join(lines)


@pytest.mark.parametrize("kind", ["import time", "all imports"])
def test_sagan_modules_import_one_another_in_one_direction(kind):
    edges = [e for e in _edges(_modules()) if kind == "all imports" or not e.lazy]
    circles = _circles(edges)
    assert circles == [], (
        f"sagan's modules import one another in a circle ({kind}):\n{_describe(circles, edges)}")


def test_the_import_graph_sees_relative_lazy_and_package_imports():
    # the checker itself: it must resolve each import form it is meant to see, or it would pass on anything
    edges = {(e.source, e.target, e.lazy) for e in _edges(_modules())}
    assert ("sagan.train", "sagan.config", False) in edges  # from sagan.config import ...
    assert any(s == "sagan" and t == "sagan.train" and lazy for s, t, lazy in edges)  # inside __getattr__
    assert any(s.startswith("sagan.models.") and t.startswith("sagan.nn") for s, t, _ in edges)
    circle = [Edge("a", "b", "a.py", 1, False), Edge("b", "c", "b.py", 1, True), Edge("c", "a", "c.py", 1, False),
              Edge("c", "d", "c.py", 2, False)]
    assert _circles(circle) == [["a", "b", "c"]] and _circles(circle[:2]) == []
    assert _shortest_circle(["a", "b", "c"], circle) == ["a", "b", "c", "a"]
