"""Destructive actions' guard rails: the read-only switch, and the log of every removal and signal.

ipcmon changes the system only when asked and confirmed (``clean --yes``, the dashboard's remove and
signal dialogs). Each attempt, done or refused, is appended as one line to the action log, so "who
removed my segment?" has an answer: ``$IPCMON_ACTION_LOG``, else ``$XDG_STATE_HOME/ipcmon/actions.log``,
else ``~/.local/state/ipcmon/actions.log``. A log that cannot be written does not stop the action (the
command still prints what it did); the caller is told why, to show it.

``IPCMON_READ_ONLY=1`` in the environment (or ``ipcmon --read-only``) refuses every such action.
"""

from __future__ import annotations

import os
import pwd
import time

from ipcmon.safe import printable

ENV_READ_ONLY = "IPCMON_READ_ONLY"
ENV_ACTION_LOG = "IPCMON_ACTION_LOG"
READ_ONLY_REASON = f"read-only mode (ipcmon --read-only, or {ENV_READ_ONLY} set): nothing is changed"


def read_only(flag: bool = False) -> bool:
    """True when --read-only was given or IPCMON_READ_ONLY is set to anything but "", "0", "no", "false"."""
    return flag or os.environ.get(ENV_READ_ONLY, "").strip().lower() not in ("", "0", "no", "false")


def log_path() -> str:
    explicit = os.environ.get(ENV_ACTION_LOG)
    if explicit:
        return explicit
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "ipcmon", "actions.log")


def _who() -> str:
    uid = os.geteuid()
    try:
        return f"uid={uid}({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid={uid}"


def record(action: str, target: str, outcome: str) -> str | None:
    """Append one line: time, who, action, target, outcome. Returns None, or why the log was not written.

    The target (a name from the system) and the outcome are made printable, so one entry is one line.
    """
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    line = f"{stamp} {_who()} pid={os.getpid()} {action} {printable(target)}: {printable(outcome)}\n"
    path = log_path()
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode("utf-8", "backslashreplace"))
        finally:
            os.close(fd)
    except OSError as error:
        return f"the action log {printable(path)} could not be written: {error.strerror}"
    return None
