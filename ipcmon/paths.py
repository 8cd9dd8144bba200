"""Where ipcmon keeps its files: the XDG state directory (the action log, exported snapshots, a user's journal) and
the journal's path. Plain path arithmetic from the environment, importable by any layer and at no cost: a command
can ask whether a journal exists without importing sqlite3.

The XDG Base Directory specification: ``$XDG_STATE_HOME`` when it is an absolute path (a relative one is
ignored), else ``~/.local/state``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

ENV_JOURNAL = "IPCMON_JOURNAL"
"""A journal path that every command uses unless given ``--db``."""
ROOT_JOURNAL = "/var/lib/ipcmon/journal.db"
"""Root's journal (systemd's StateDirectory=ipcmon)."""


def state_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_STATE_HOME/ipcmon`` when that is absolute, else ``~/.local/state/ipcmon``; not created here."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):
        state = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "ipcmon")


def journal_path(environ: Mapping[str, str] | None = None) -> str:
    """``$IPCMON_JOURNAL``, else ``/var/lib/ipcmon/journal.db`` for root, else ``state_dir()/journal.db``."""
    env = os.environ if environ is None else environ
    if env.get(ENV_JOURNAL):
        return env[ENV_JOURNAL]
    if os.geteuid() == 0:
        return ROOT_JOURNAL
    return os.path.join(state_dir(env), "journal.db")
