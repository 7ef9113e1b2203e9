"""graphprune's modules import each other without cycles (layers import downwards only).

Every ``import`` / ``from ... import`` in ``graphprune/`` counts, absolute or relative, including lazy ones
inside functions and those under ``if TYPE_CHECKING:``: a cycle there is a layering error even when Python
happens to resolve it.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "graphprune"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the graphprune modules it imports (a name imported from a package counts as its
    submodule when one exists, else as the package)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:  # `import graphprune.search.allocate as x` etc.
                    t = t.rpartition(".")[0]
                if t.startswith("graphprune") and t != module:
                    edges[module].add(t)
    return edges


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _a_path(edges: dict[str, set[str]], comp: list[str]) -> str:
    """One concrete cycle through the component's first module, for the message."""
    start, members = comp[0], set(comp)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(edges[path[-1]] & members):
            if w == start:
                return " -> ".join(path + [start])
            if w not in seen:
                seen.add(w)
                paths.append(path + [w])
    return ""


def test_the_walker_sees_relative_lazy_and_type_checking_imports(tmp_path):
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..api import x\n"
                     "def f():\n    from .b import y\n")
    found = [_resolve("graphprune.pkg.a", False, n) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
             and n.level]
    assert sorted(found) == ["graphprune.api", "graphprune.pkg.b"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_graphprune_has_no_import_cycles():
    edges = import_graph()
    assert "graphprune.api" in edges and edges["graphprune.api"], "the walker found no imports"
    cycles = find_cycles(edges)
    assert not cycles, "import cycles (module groups that import each other):\n" + "\n".join(
        f"  {len(c)} modules: {_a_path(edges, c)}" for c in cycles)
