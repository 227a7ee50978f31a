"""No import cycle inside `dereg`: modules import downwards only (issue 14).

The graph is read from the source (ast), not from `sys.modules`: every `import` and `from ...
import` of a `dereg` module is an edge, at module level and inside functions alike (a deferred
import still ties the two modules together), except under `if TYPE_CHECKING:`. `from pkg import
name` points at the submodule `pkg.name` when there is one, else at the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dereg

PACKAGE = Path(dereg.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["dereg", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> list[str]:
    """Every dotted name `module` imports (`from a import b` gives `a.b`), type-checking blocks aside."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for n in ast.walk(stmt)
    }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names += [f"{base}.{a.name}" for a in node.names]
    return names


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for name in _imports(module, path):
            target = _resolve(name, modules) if name.startswith("dereg") else None
            if target and target != module:
                graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_sees_the_imports():
    graph = import_graph()
    assert "dereg.backup.writer" in graph["dereg.backup.archive"]
    assert "dereg.backup.pgcopy" in graph["dereg.backup.archive"]
    assert "dereg.dialects" in graph["dereg.erase.purge"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_dereg_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles in dereg: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_backup_layers_import_downwards():
    graph = import_graph()
    # the writer and the COPY path never reach back into the orchestration above them
    assert not graph["dereg.backup.writer"] & {"dereg.backup.archive", "dereg.backup.pgcopy"}
    assert "dereg.backup.archive" not in graph["dereg.backup.pgcopy"]
    assert not {m for m in graph["dereg.backup.restore"]} & {"dereg.backup.archive", "dereg.backup.writer"}
    # the dialect layer sits below every other part of dereg
    for module in (m for m in graph if m.startswith("dereg.dialects")):
        assert all(t.startswith("dereg.dialects") for t in graph[module]), module
