"""Leaks and hazards worth a line on the Overview (health.hazards), each with the view that lists its object, or
the process it is about (a deadlock, a blocked process)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ipcmon.health import (
    LEVEL_GLYPHS,
    PIPE_FLAG_WORDS,
    PIPE_HAZARDS,
    Hazard,
    Level,
    Rank,
    hazard_places,
    hazards,
    rank,
)
from ipcmon.model import Mechanism, Place, Snapshot
from ipcmon.text import place_suffix
from ipcmon.ui.view.table import Cell, Context, Row, text_cell

Severity = Level

PIPE_FLAGS = PIPE_FLAG_WORDS
"""What each pipe flag means, in words (kept here for the views that import it; health.py holds it)."""

__all__ = ["PIPE_FLAGS", "PIPE_HAZARDS", "VIEWS", "Alert", "Severity", "alert_row", "find_alerts"]

VIEWS: dict[Mechanism, str] = {
    "shm": "shm", "sem": "shm", "memfd": "shm", "anon": "shm", "sysv-shm": "shm", "sysv-sem": "shm",
    "mqueue": "mqueue", "sysv-msg": "mqueue",
    "pipe": "pipes", "fifo": "pipes",
    "signal": "signals",
    "process": "signals",
}
"""The view (a TabPane id) that lists each mechanism's objects: one entry per mechanism (a process's row is in
the signals view; Enter on a process alert opens its process view instead, see ``Alert.pid``)."""


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
    rank: Rank = (0, 0, 0, 0, "", "")
    """Its place in the list, most serious first (health.rank: level, deadlocks then blocked waits, then bytes at
    stake, then kind)."""
    pid: int | None = None
    """The process a deadlock (its first member) or a blocked wait is about: Enter opens its process view."""
    place: Place | None = None
    """Where its object lives (issue 15): one not on the host is named with it, ``/seg [web-1]``."""

    @property
    def alert_key(self) -> str:
        return f"{self.key}:{self.problem.split(':')[0]}"

    @property
    def glyph(self) -> str:
        """The level's glyph (health.LEVEL_GLYPHS): ✖ bad, ▲ warn; readable without colour."""
        return LEVEL_GLYPHS[self.severity]


def _alert(hazard: Hazard, place: Place | None = None) -> Alert:
    return Alert(hazard.level, hazard.mechanism, hazard.object, hazard.problem, VIEWS[hazard.mechanism], hazard.key,
                 rank(hazard), hazard.pids[0] if hazard.pids else None, place)


def find_alerts(snapshot: Snapshot) -> Iterator[Alert]:
    """The Overview's alerts: every hazard of the snapshot, most serious first (health.hazards order)."""
    places = hazard_places(snapshot)
    for hazard in hazards(snapshot):
        yield _alert(hazard, places.get(hazard.key))


def alert_row(alert: Alert, ctx: Context) -> Row:
    """One line of the Overview's list: the level's glyph (sorting by health.rank), kind, object, problem."""
    style = ctx.palette.bad if alert.severity == "bad" else ctx.palette.warn
    return Row(
        key=alert.alert_key,
        cells=(
            Cell(f"{alert.glyph} {alert.severity}", alert.rank, style),  # the word too: readable without colour
            text_cell(alert.mechanism),
            text_cell(alert.object + place_suffix(alert.place)),
            text_cell(alert.problem, style),
        ),
        record=alert,
        search=f"{alert.mechanism} {alert.object} {alert.problem} {alert.severity}".lower(),
    )
