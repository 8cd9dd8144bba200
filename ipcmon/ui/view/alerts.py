"""Leaks and hazards worth a line on the Overview: orphaned or deleted shm, full queues, bad pipes, pending signals."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from ipcmon.model import Snapshot
from ipcmon.safe import human_bytes
from ipcmon.ui.view.rows import pending_count, sysv_name

Severity = Literal["bad", "warn"]

PIPE_FLAGS: dict[str, str] = {
    "no-reader": "no reader: the next write gets SIGPIPE/EPIPE",
    "no-writer": "no writer: readers get EOF once it drains",
    "full": "full: writers block until someone reads",
    "both-ends": "one process holds both ends: its reader may never see EOF",
}
"""What each pipe flag means, in words."""

PIPE_HAZARDS: dict[str, Severity] = {"no-reader": "bad", "full": "bad", "both-ends": "warn"}
"""Flags worth an alert (no-writer is the normal end of a pipe's life)."""


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
    for segment in snapshot.shm:
        if segment.state == "orphaned":
            what = "semaphore" if segment.kind == "sem" else "segment"
            yield Alert(
                "warn",
                segment.kind,
                segment.name,
                f"orphaned: no process holds this {what} ({human_bytes(segment.allocated)} allocated)",
                "shm",
                segment.object_key,
            )
        elif segment.state == "deleted":
            yield Alert(
                "bad",
                segment.kind,
                segment.name,
                f"deleted but still held: pins {human_bytes(segment.pinned_bytes)} until the last holder lets go",
                "shm",
                segment.object_key,
            )
    for queue in snapshot.mqueues:
        fill = queue.fill
        if fill is not None and fill >= 1:
            yield Alert("bad", "mqueue", queue.name, "full: senders block (or get EAGAIN)", "mqueue", queue.object_key)
        if not queue.holders and not queue.deleted:
            yield Alert(
                "warn",
                "mqueue",
                queue.name,
                f"orphaned: no process has it open ({queue.messages if queue.messages is not None else '?'} messages)",
                "mqueue",
                queue.object_key,
            )
    for pipe in snapshot.pipes:
        name = pipe.path or f"pipe:[{pipe.inode}]"
        for flag in pipe.flags:
            if flag in PIPE_HAZARDS:
                yield Alert(PIPE_HAZARDS[flag], pipe.kind, name, PIPE_FLAGS[flag], "pipes", pipe.object_key)
    for signals in snapshot.signals:
        pending = pending_count(signals)
        if pending:
            names = sorted({*signals.pending, *(name for thread in signals.threads for name in thread.pending)})
            yield Alert(
                "warn",
                "signal",
                f"{signals.pid} {signals.comm}",
                f"pending: {', '.join(names)}",
                "signals",
                signals.object_key,
            )
    for shm in snapshot.sysv.shm:
        if shm.nattch == 0 and not shm.removed:
            yield Alert(
                "warn",
                "sysv-shm",
                sysv_name(shm.key, shm.id),
                f"orphaned: no process attached ({human_bytes(shm.size)})",
                "shm",
                shm.object_key,
            )
