"""Leaks and hazards worth a line on the Overview (health.hazards), each with the view that lists its object."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ipcmon.health import PIPE_FLAG_WORDS, PIPE_HAZARDS, Level, hazards
from ipcmon.model import Mechanism, Snapshot

Severity = Level

PIPE_FLAGS = PIPE_FLAG_WORDS
"""What each pipe flag means, in words (kept here for the views that import it; health.py holds it)."""

__all__ = ["PIPE_FLAGS", "PIPE_HAZARDS", "VIEWS", "Alert", "Severity", "find_alerts"]

VIEWS: dict[Mechanism, str] = {
    "shm": "shm", "sem": "shm", "memfd": "shm", "anon": "shm", "sysv-shm": "shm", "sysv-sem": "shm",
    "mqueue": "mqueue", "sysv-msg": "mqueue",
    "pipe": "pipes", "fifo": "pipes",
    "signal": "signals",
}
"""The view (a TabPane id) that lists each mechanism's objects: one entry per mechanism."""


@dataclass(frozen=True, slots=True)
class Alert:
    severity: Severity
    mechanism: str
    object: str
    """Raw name of the object (untrusted: shown through safe.printable)."""
    problem: str
    view: str
    """The view that lists the object (a TabPane id)."""
    key: str
    """The object's row key in that view."""

    @property
    def alert_key(self) -> str:
        return f"{self.key}:{self.problem.split(':')[0]}"


def find_alerts(snapshot: Snapshot) -> Iterator[Alert]:
    """The Overview's alerts: every hazard of the snapshot, in health.hazards order."""
    for hazard in hazards(snapshot):
        yield Alert(hazard.level, hazard.mechanism, hazard.object, hazard.problem, VIEWS[hazard.mechanism], hazard.key)
