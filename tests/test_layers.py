"""The package's import graph: no cycle but the App and its command palette provider (issue 11).

import-linter's contracts in pyproject.toml (run by .ci/run) keep the layers; this test keeps the cycles, which
a layers contract cannot see inside one layer.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

ALLOWED = {frozenset({"ipcmon.ui.app", "ipcmon.ui.commands"})}
"""The App registers its palette provider in COMMANDS, and the provider calls the App's jump actions."""


def import_cycles(package: str) -> list[frozenset[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm over grimp's graph)."""
    graph = grimp.build_graph(package)
    modules = graph.modules
    imports = {module: graph.find_modules_directly_imported_by(module) & modules for module in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[frozenset[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in imports[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(frozenset(group))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return groups


def test_no_import_cycle_but_the_app_and_its_palette() -> None:
    assert set(import_cycles("ipcmon")) <= ALLOWED


def test_the_cycle_finder_sees_a_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cyclic import b\n")
    (package / "b.py").write_text("from cyclic import a\n")
    (package / "c.py").write_text("from cyclic import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclic") == [frozenset({"cyclic.a", "cyclic.b"})]
