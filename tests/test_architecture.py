"""The layout is a straight pipeline, and this test keeps it one.

- No import cycle between modules of ``guard`` (imports inside functions count: a lazy import
  hides a cycle, it does not remove it).
- ``ssi_sdk`` is imported only by the broker adapter (``guard/broker``) and the simulator.
- The pure core (market calendar, rules engine, planner, triggers) imports no I/O: not
  ``aiohttp``, ``httpx``, ``sqlite3``, ``socket``, ``subprocess``, nor the broker, the journal
  or the process shell, directly or through any module it imports.

The checker is plain functions over source text, so the last tests feed it a made-up package
with a cycle and a forbidden import and prove it fails on them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from kit import REPO

ROOT = REPO / "guard"

SDK_ALLOWED = ("guard.broker", "guard.simulator")
PURE_CORE = (
    "guard.market",
    "guard.evaluate",
    "guard.act.plan",
    "guard.act.breaker",
    "guard.schedule.triggers",
)
IO_MODULES = ("aiohttp", "httpx", "sqlite3", "socket", "subprocess", "requests", "ssi_sdk",
              "prometheus_client")
IO_GUARD = ("guard.broker", "guard.record.journal", "guard.service", "guard.simulator",
            "guard.cli")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, name: str, is_package: bool) -> set[str]:
    """Every module ``name`` imports, anywhere in its body, absolute names only."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            found.add(stem)
            # ``from guard.x import y`` may import the module ``guard.x.y``.
            found.update(f"{stem}.{alias.name}" for alias in node.names)
    return found


def graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package tree it imports (and its third-party ones,
    kept under their top-level name)."""
    sources = {module_name(root, p): p for p in root.rglob("*.py")}
    modules = set(sources)
    top = root.name
    edges: dict[str, set[str]] = {}
    for name, path in sources.items():
        raw = imports_of(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
        out: set[str] = set()
        for target in raw:
            if target == top or target.startswith(top + "."):
                if target in modules and target != name:
                    out.add(target)
            else:
                out.add(target.split(".")[0])
        edges[name] = out
    return edges


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def package_of(name: str) -> str:
    """``guard.act.send`` -> ``guard.act``; a top-level module is its own package."""
    parts = name.split(".")
    return ".".join(parts[:2])


def package_cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    packages: dict[str, set[str]] = {}
    for src, targets in edges.items():
        for dst in targets:
            if dst in edges and package_of(src) != package_of(dst):
                packages.setdefault(package_of(src), set()).add(package_of(dst))
        packages.setdefault(package_of(src), set())
    return cycles(packages)


def reach(edges: Mapping[str, Iterable[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        v = todo.pop()
        for w in edges.get(v, ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def sdk_violations(edges: Mapping[str, Iterable[str]]) -> list[str]:
    return sorted(m for m, targets in edges.items()
                  if "ssi_sdk" in targets and not _under(m, SDK_ALLOWED))


def impure_core(edges: Mapping[str, Iterable[str]]) -> list[str]:
    bad = []
    for module in sorted(edges):
        if not _under(module, PURE_CORE):
            continue
        closure = reach(edges, module)
        for target in sorted(closure):
            if target in IO_MODULES or _under(target, IO_GUARD):
                bad.append(f"{module} -> {target}")
    return bad


# ---- the real package -----------------------------------------------------------------------


EDGES = graph(ROOT)


def test_no_import_cycle_between_modules() -> None:
    assert cycles(EDGES) == []


def test_no_import_cycle_between_packages() -> None:
    assert package_cycles(EDGES) == []


def test_ssi_sdk_only_in_the_broker_and_the_simulator() -> None:
    assert sdk_violations(EDGES) == []
    assert any("ssi_sdk" in t for m, t in EDGES.items() if m.startswith("guard.broker"))


def test_the_pure_core_does_no_io() -> None:
    assert impure_core(EDGES) == []
    for prefix in PURE_CORE:  # the core is really there: the test checks something
        assert any(_under(m, (prefix,)) for m in EDGES), prefix


# ---- the checker fails where it must -----------------------------------------------------


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "guard"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for directory in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").touch()
    return root


def test_the_checker_finds_a_cycle_even_through_a_lazy_import(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "a/one.py": "from guard.b.two import x\n",
        "b/two.py": "def f():\n    from guard.a import one\nx = 1\n",
    })
    edges = graph(root)
    assert cycles(edges) == [["guard.a.one", "guard.b.two"]]
    assert package_cycles(edges) == [["guard.a", "guard.b"]]


def test_the_checker_finds_a_package_cycle_without_a_module_cycle(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "a/one.py": "from guard.b.two import x\n",
        "b/two.py": "x = 1\n",
        "b/three.py": "from guard.a.four import y\n",
        "a/four.py": "y = 2\n",
    })
    edges = graph(root)
    assert cycles(edges) == []
    assert package_cycles(edges) == [["guard.a", "guard.b"]]


@pytest.mark.parametrize("line", [
    "import sqlite3\n",
    "from httpx import AsyncClient\n",
    "from guard.record.journal import Journal\n",
    "from guard.broker.adapter import Broker\n",
    "from guard.helper import h\n",  # I/O one step away
])
def test_the_checker_finds_io_in_the_pure_core(tmp_path: Path, line: str) -> None:
    root = _package(tmp_path, {
        "evaluate/engine.py": line,
        "helper.py": "import aiohttp\nh = 1\n",
        "record/journal.py": "import sqlite3\n",
        "broker/adapter.py": "import ssi_sdk\n",
    })
    assert impure_core(graph(root)) != []


def test_the_checker_finds_ssi_sdk_outside_the_broker(tmp_path: Path) -> None:
    root = _package(tmp_path, {
        "broker/adapter.py": "import ssi_sdk\n",
        "act/send.py": "from ssi_sdk.models import Order\n",
    })
    assert sdk_violations(graph(root)) == ["guard.act.send"]
