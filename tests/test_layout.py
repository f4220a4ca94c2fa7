"""The package's shape, guarded: small modules and functions, one name for the business date,
no import cycles, and one home for DDL and quoting (issue: "one way in, one name per concept")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "livefin_etl"
FILES = sorted(PKG.rglob("*.py"))
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
DATE_ALIASES = {"day", "date", "d", "as_of"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_the_package_is_found() -> None:
    assert len(FILES) > 30
    assert (PKG / "pipeline.py") in FILES


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_modules_and_functions_are_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name}: {lines} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(_tree(path))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_the_business_date_has_one_name(path: Path) -> None:
    bad = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                if arg.arg in DATE_ALIASES:
                    bad.append(f"{getattr(node, 'name', 'lambda')}({arg.arg})")
        if isinstance(node, ast.Import):
            bad += [f"import {n.name} as dt" for n in node.names if n.asname == "dt"]
    assert not bad, bad


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: Path) -> set[str]:
    """livefin_etl modules imported anywhere in ``path`` (function-level imports included)."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in _runtime_nodes(_tree(path)):
        if isinstance(node, ast.Import):
            found |= {n.name for n in node.names if n.name.startswith("livefin_etl")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            if not base.startswith("livefin_etl"):
                continue
            for n in node.names:
                found.add(f"{base}.{n.name}" if f"{base}.{n.name}" in MODULES else base)
    return {m for m in found if m in MODULES and m != me}


MODULES = {_module_name(p) for p in FILES}


def test_no_import_cycles() -> None:
    """Between modules (a package's ``__init__`` re-exporting its own parts is not a cycle)."""
    graph = {_module_name(p): _imports(p) for p in FILES}
    for mod in graph:
        graph[mod] = {m for m in graph[mod] if not (mod and m.startswith(mod + "."))}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(mod: str, stack: list[str]) -> None:
        state[mod] = 1
        for dep in sorted(graph[mod]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[mod] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    # A package importing its own submodules lazily is the one allowed back edge.
    real = [
        c for c in cycles if not any(a.startswith(b + ".") for a, b in zip(c, c[1:], strict=False))
    ]
    assert not real, real


_DDL = re.compile(r"\bcreate\s+(or\s+replace\s+)?(table|view)\b", re.IGNORECASE)
# Tables whose DDL is data-driven by design: raw tables from the source contracts, mart tables
# from their .yml specs, the snapshot's copies of whatever the warehouse holds, and spines the
# caller names. testing/ builds hand-made upstream tables for tests on purpose.
# engine/lake.py: views over a shard's Parquet files in a dask task's in-memory DuckDB, never
# in the warehouse.
DDL_BUILDERS = {"extract/tables.py", "features.py", "publish/build.py", "engine/lake.py"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_ddl_and_quoting_have_one_home(path: Path) -> None:
    rel = str(path.relative_to(PKG))
    text = path.read_text(encoding="utf-8")
    if rel not in DDL_BUILDERS and not rel.startswith("testing/"):
        assert not _DDL.search(text), f"{rel} creates tables itself: move the DDL to sql/ddl/"
    if rel != "warehouse.py":
        assert """.replace("'", "''")""" not in text, f"{rel} quotes SQL itself"
