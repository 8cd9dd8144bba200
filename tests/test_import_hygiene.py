"""The data layer never imports the UI: each headless module, imported alone in a fresh interpreter, leaves
Textual out of sys.modules (Harlequin's tests/unit_tests/test_import_hygiene.py)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import ipcmon.collect
from tests.helpers import REPO

HEADLESS = [
    "ipcmon.model",
    "ipcmon.collect",
    *sorted(f"ipcmon.collect.{module.name}" for module in pkgutil.iter_modules(ipcmon.collect.__path__)),
    "ipcmon.export",
    "ipcmon.report",
    "ipcmon.safe",
    "ipcmon.live.events",
    "ipcmon.live.monitor",
    "ipcmon.leaks",
    "ipcmon.cli.lifecycle",
    "ipcmon.pytest_plugin",
    "ipcmon.demos",
]

_LIST_TEXTUAL = "print(sorted(name for name in sys.modules if name.split('.')[0] == 'textual'))"


def textual_modules_after(statements: str) -> str:
    """Run statements in a fresh interpreter; the Textual modules loaded by then, as printed by Python."""
    result = subprocess.run(
        [sys.executable, "-c", f"import sys\n{statements}\n{_LIST_TEXTUAL}"],
        capture_output=True, text=True, check=True, cwd=REPO,
    )
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_module_does_not_import_textual(module: str) -> None:
    assert textual_modules_after(f"import {module}") == "[]"


def test_snapshot_command_does_not_import_textual() -> None:
    statements = "from ipcmon.cli import main\nmain(['snapshot', '--json', '--kind', 'shm'])"
    assert textual_modules_after(statements) == "[]"


def test_the_check_sees_textual_when_it_is_imported() -> None:
    assert "'textual'" in textual_modules_after("import textual.app")
