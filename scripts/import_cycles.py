"""Print every import cycle among diag's modules (strongly connected components of the import graph).

Usage: .venv/bin/python scripts/import_cycles.py [--all]
Counts module-level imports (those that run when a module is imported). ``--all`` also counts imports inside
functions and under ``if TYPE_CHECKING:``, which cannot recurse at import time but still tie modules together.
Exit status 1 when a cycle exists, so the test suite can call it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "diag"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports(path: Path, modules: set[str], everything: bool) -> set[str]:
    """The diag modules that ``path`` imports (``from a import b`` counts ``a.b`` when that is a module)."""
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("diag"))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("diag") and not node.level:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    out.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.If):
                if everything or not _type_checking(node):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if everything:
                    visit(node.body)
            elif isinstance(node, (ast.With, ast.For, ast.While)) and everything:
                visit(node.body)

    visit(tree.body)
    return {m for m in out if m in modules}


def cycles(everything: bool) -> list[list[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    modules = set(files)
    graph = {m: imports(p, modules, everything) - {m} for m, p in files.items()}
    # Tarjan's strongly connected components (iterative)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def main() -> int:
    everything = "--all" in sys.argv[1:]
    found = cycles(everything)
    kind = "all imports (module level, in functions, TYPE_CHECKING)" if everything else "module-level imports"
    if not found:
        print(f"no import cycles among diag modules ({kind})")
        return 0
    for comp in found:
        print(f"cycle ({len(comp)} modules): " + " <-> ".join(comp))
    return 1


if __name__ == "__main__":
    sys.exit(main())
