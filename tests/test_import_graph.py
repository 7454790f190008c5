"""The import graph of ``src/oremap``: no cycles (function-local imports included), imports at
the top unless they keep a heavy optional dependency off a light path, and ``__all__``
declared by every public module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "oremap"
#: Optional heavy dependencies a light path imports only inside a function.
HEAVY = ("torch", "dask", "distributed", "matplotlib")
#: The command line imports every stage inside its command, so that ``oremap --help`` and a
#: mistyped command answer at once (typer and rich only).
LAZY_MODULES = ("oremap.cli",)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """``(imported oremap module, line, inside a function)`` of every import in a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # for type checkers only: never runs
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "oremap":
                        out.append((alias.name, child.lineno, local))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative import
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[:len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                if base.split(".")[0] != "oremap":
                    continue
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    out.append((full if full in known else base, child.lineno, local))
            visit(child, inner)

    visit(tree, False)
    return [(m, line, local) for m, line, local in out if m in known]


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for target, _, _ in imports_of(name, path, known):
            # importing a.b.c also runs a and a.b, except the packages the importer lies in
            # (they are being initialised already)
            parts = target.split(".")
            for i in range(2, len(parts) + 1):
                t = ".".join(parts[:i])
                if t in known and t != name and t not in ancestors:
                    edges[name].add(t)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strong(w)
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
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def test_the_graph_sees_function_local_imports(tmp_path: Path) -> None:
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    source = tmp_path / "mod.py"
    source.write_text("from oremap import io\n\n\ndef f():\n    from oremap.evidence import "
                      "raster  # why\n    import oremap.grid\n\n\n"
                      "if TYPE_CHECKING:\n    from oremap import config\n")
    known = set(modules())
    assert imports_of("oremap.mod", source, known) == [
        ("oremap.io", 1, False), ("oremap.evidence.raster", 5, True), ("oremap.grid", 6, True)]
    assert "oremap.evidence.raster" in graph()["oremap.evidence"]


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert found == [], "import cycles among oremap modules: " + "; ".join(
        " <-> ".join(c) for c in found)


def test_function_local_imports_only_keep_heavy_dependencies_off_light_paths() -> None:
    """A function-local ``from oremap ...`` import is allowed only where the imported module
    pulls in torch, dask or matplotlib (directly or through its own top-level imports), or in
    the command line, and the importing line says why in a comment."""
    mods = modules()
    known = set(mods)
    heavy = heavy_modules(mods)
    bad = []
    for name, path in mods.items():
        lines = path.read_text().splitlines()
        for target, line, local in imports_of(name, path, known):
            if not local:
                continue
            parts = target.split(".")
            reach = {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
            text = lines[line - 1]
            reason = "#" in text or (line >= 2 and lines[line - 2].strip().startswith("#"))
            allowed = bool(reach & heavy) or name in LAZY_MODULES
            if not allowed or not reason:
                bad.append(f"{name}:{line} imports {target} inside a function"
                           + ("" if allowed else " (not a heavy module)")
                           + ("" if reason else " (no comment saying why)"))
    assert bad == [], "\n".join(bad)


def heavy_modules(mods: dict[str, Path]) -> set[str]:
    """oremap modules whose top-level imports reach torch, dask or matplotlib."""
    known = set(mods)
    direct: dict[str, set[str]] = {}
    heavy = set()
    for name, path in mods.items():
        tree = ast.parse(path.read_text())
        deps = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                roots = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for r in roots:
                if r.split(".")[0] in HEAVY:
                    heavy.add(name)
                parts = r.split(".")  # importing a.b.c runs the packages a.b and a too
                deps |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)} & known
        direct[name] = deps
    changed = True
    while changed:
        changed = False
        for name, deps in direct.items():
            if name not in heavy and deps & heavy:
                heavy.add(name)
                changed = True
    return heavy


@pytest.mark.parametrize("name", sorted(m for m in modules() if not m.split(".")[-1]
                                        .startswith("_") and m != "oremap"))
def test_public_module_declares_all(name: str) -> None:
    tree = ast.parse(modules()[name].read_text())
    declared = [n for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                and any(isinstance(t, ast.Name) and t.id == "__all__"
                        for t in (n.targets if isinstance(n, ast.Assign) else [n.target]))]
    assert declared, f"{name} declares no __all__"


def test_no_module_over_800_lines() -> None:
    long = {m: len(p.read_text().splitlines()) for m, p in modules().items()}
    assert {m: n for m, n in long.items() if n > 800} == {}
