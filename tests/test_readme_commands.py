"""README says what the code does: its command table names every option `--help` shows, and its account of the
dashboard's `/` filter matches ipcmon.ui.view.table.matches on rows built from a real scan."""

from __future__ import annotations

import argparse
import os
import re

import posix_ipc

from ipcmon.cli import build_parser
from ipcmon.collect import ScanConfig, scan
from ipcmon.ui.view.rows import shm_rows
from ipcmon.ui.view.table import Context, RowCache, matches
from tests.helpers import REPO, Cleanup, new_name

README = (REPO / "README.md").read_text()

SHARED = {"--container": "- **`--container ID|NAME` and `--ns INODE`** (every command",
          "--ns": "- **`--container ID|NAME` and `--ns INODE`** (every command",
          "--show-self": "`--show-self` (on each of them) shows them"}
"""Options several commands take, documented once in a paragraph of their own (the README text that says so)."""


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (commands,) = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(commands.choices)


def _table_rows() -> dict[str, str]:
    """The command table's first cell of each `ipcmon COMMAND …` row, by command (a command may have several)."""
    rows: dict[str, str] = {}
    for match in re.finditer(r"^\| `ipcmon ([a-z-]+)([^`]*)` \|", README, re.MULTILINE):
        rows[match.group(1)] = rows.get(match.group(1), "") + match.group(2)
    return rows


def test_the_command_table_names_every_option_help_shows() -> None:
    rows = _table_rows()
    parsers = _subcommands()
    assert set(parsers) - set(rows) == {"demo"}  # which has a section of its own
    assert "ipcmon demo --list" in README
    for name, row in rows.items():
        options = {option for action in parsers[name]._actions for option in action.option_strings
                   if option.startswith("--") and option != "--help"}
        missing = {option for option in options if not re.search(re.escape(option) + r"(?![\w-])", row)}
        assert missing <= set(SHARED), (name, missing - set(SHARED))
        assert all(SHARED[option] in README for option in missing)
    assert "--limit N" in rows["history"] and "--history N" in rows["watch"]


def test_a_plain_word_in_the_filter_matches_a_rows_state_as_readme_says(cleanup: Cleanup) -> None:
    """README: a word matches a row's name, kind and state, and its processes' pids and commands, so that ``orph``
    lists every orphaned row. A real orphaned segment and a real held one, as the Shared memory view builds them."""
    assert "`orph` lists every orphaned row" in README
    orphan = cleanup.shm(new_name("filter-o"))
    posix_ipc.SharedMemory(orphan, posix_ipc.O_CREX, size=4096).close_fd()
    held_name = cleanup.shm(new_name("filter-h"))
    held = posix_ipc.SharedMemory(held_name, posix_ipc.O_CREX, size=4096)  # this process holds it
    try:
        snapshot = scan(ScanConfig(kinds=("shm",)))
    finally:
        held.close_fd()
    rows = {row.record.name: row for row in shm_rows(Context(snapshot), RowCache())  # type: ignore[attr-defined]
            if getattr(row.record, "name", None) in (orphan, held_name)}
    assert set(rows) == {orphan, held_name}
    assert "orph" not in orphan  # so only its state can match
    assert matches(rows[orphan], "orph") and not matches(rows[held_name], "orph")
    assert matches(rows[held_name], "held") and matches(rows[held_name], str(os.getpid()))
    assert matches(rows[orphan], "shm") and matches(rows[held_name], held_name.lower()[1:])
