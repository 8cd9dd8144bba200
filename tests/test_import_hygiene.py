"""The data layer never imports the UI: each headless module, imported alone in a fresh interpreter, leaves
Textual out of sys.modules (Harlequin's tests/unit_tests/test_import_hygiene.py). And one-shot commands start
fast: a real run of each loads only the heavy modules its output needs (issue 11)."""

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
    "ipcmon.live.inotify",
    "ipcmon.leaks",
    "ipcmon.cli",
    "ipcmon.cli.arguments",
    "ipcmon.cli.snapshot",
    "ipcmon.cli.lifecycle",
    "ipcmon.cli.demo",
    "ipcmon.cli.exporter",
    "ipcmon.metrics",
    "ipcmon.cli.dashboard",
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


HEAVY = ("textual", "rich", "watchdog", "ipcmon.ui", "ipcmon.live", "ipcmon.report", "ipcmon.export")
"""What a one-shot command loads only if its output needs it: the TUI, the inotify source and the Monitor, and
the two printers (text tables, JSON)."""

_LIST_HEAVY = f"""
heavy = {HEAVY!r}
print(sorted(h for h in heavy if any(name == h or name.startswith(h + '.') for name in sys.modules)))
"""

_STOP_WHEN_WATCHING = """
import os, signal, threading, time

def stop_when_watching() -> None:
    # SIGTERM as a user would send it, once `watch` has installed its handler (before that, it would kill us).
    while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        time.sleep(0.01)
    time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=stop_when_watching, daemon=True).start()
"""


def heavy_modules_after_running(argv: list[str], before: str = "") -> str:
    """Run `ipcmon ARGV` through ipcmon.cli.main in a fresh interpreter; the HEAVY modules it loaded, as printed."""
    statements = f"import sys\n{before}\nfrom ipcmon.cli import main\nmain({argv!r})\n{_LIST_HEAVY}"
    result = subprocess.run([sys.executable, "-c", statements], capture_output=True, text=True, check=True,
                            cwd=REPO, timeout=60)
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "loaded"),
    [
        (["snapshot", "--json"], ["ipcmon.export"]),
        (["snapshot"], ["ipcmon.report"]),
        (["leaks", "--json"], []),
        # A name nothing has, so that no table is printed ("no leaks found"): the text printer stays unloaded.
        (["leaks", "--match", "/ipcmon-test-no-such-name-*"], []),
    ],
    ids=" ".join,
)
def test_one_shot_command_loads_only_what_its_output_needs(argv: list[str], loaded: list[str]) -> None:
    assert heavy_modules_after_running(argv) == repr(loaded)


def test_watch_loads_the_monitor_and_inotify_but_no_tui_and_no_printer() -> None:
    loaded = heavy_modules_after_running(["watch", "--json", "--interval", "0.1"], before=_STOP_WHEN_WATCHING)
    assert loaded == repr(["ipcmon.live", "watchdog"])


def test_the_heavy_check_sees_what_a_command_loads() -> None:
    loaded = heavy_modules_after_running(["demo", "--list"], before="import textual.app, ipcmon.report")
    assert loaded == repr(["ipcmon.report", "rich", "textual"])
