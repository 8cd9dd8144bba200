"""What a Scanner keeps from one scan to the next: each process's last read, and each collector's records."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from ipcmon.collect.process import RememberedProcess
from ipcmon.collect.procfs import OpenProcFiles
from ipcmon.collect.recall import Recall
from ipcmon.collect.sharing import Sharing

Kept = TypeVar("Kept")

REFRESH_SECONDS = 30.0
"""A Scanner reads each process in full about this often (seconds), whatever the scheduler says: how long a change
that its run signature cannot show may go unseen (Scanner)."""
REFRESH_EVERY = 10
"""Scans per full read of each process until the interval between scans is known (two scans)."""


class ScanMemory:
    """The processes of the last scan by pid, the pids whose tables it took over, and, per Snapshot field, the
    records a collector may reuse (Recall)."""

    def __init__(self, refresh_every: int | None = None, refresh_seconds: float = REFRESH_SECONDS) -> None:
        """refresh_every: read each process in full once in this many scans; None: once in as many scans as
        make refresh_seconds at the interval measured between scans (a dashboard at 1 Hz: 30; an exporter
        scraped every 15 s: 2)."""
        self.fixed = refresh_every is not None
        self.refresh_every = max(1, refresh_every if refresh_every is not None else REFRESH_EVERY)
        self.refresh_seconds = refresh_seconds
        self._began: float | None = None
        self._interval: float | None = None
        self.processes: dict[int, RememberedProcess] = {}
        """The last scan's read of each process it could read, by pid."""
        self.scans_begun = 0
        self.reused: set[int] = set()
        """The pids whose tables the current (or last) scan took over from the scan before it (read in full on their
        turn too, when that read found exactly the last one: ``turned``)."""
        self.turned: set[int] = set()
        """Of those, the pids read in full on their turn (previous_read) that had not run since and whose tables read
        exactly as the last scan's: their records are the last ones, but what others may have changed behind a
        process that did not run (a pipe's fill) is read again (pipes.collect)."""
        self.records: dict[str, Recall[Any]] = {}
        """Per Snapshot field (``shm``, ``pipes``…), what its collector kept for the next scan."""
        self._kept: dict[str, Any] = {}
        self.files = OpenProcFiles()
        """The /proc files of the processes read, kept open between scans (procfs.OpenProcFiles)."""
        self._closer = weakref.finalize(self, self.files.close)
        self.sharing = Sharing()
        """Which processes share their memory or descriptor table with another (kcmp(2)): a turn of one that shares
        neither, and has not run, reads only what others can change (process.read_process)."""
        self.namespaces: dict[int, tuple[int, int]] = {}
        """The (IPC, mount) namespace inodes of each process of the last scan, by pid (scan._assumed_places_hold)."""

    def recall(self, snapshot_field: str) -> Recall[Any]:
        """The records kept for snapshot_field, made empty the first time a collector asks."""
        kept = self.records.get(snapshot_field)
        if kept is None:
            kept = self.records[snapshot_field] = Recall()
        return kept

    def kept(self, name: str, make: Callable[[], Kept]) -> Kept:
        """What a collector keeps from scan to scan under name (its own shape, e.g. pipes.PipeIndex), made by
        make the first time it asks."""
        try:
            found: Kept = self._kept[name]
        except KeyError:
            found = self._kept[name] = make()
        return found

    def kept_sizes(self) -> dict[str, int]:
        """How many entries each collector's kept state holds, by name (what ``kept`` made has a length)."""
        return {name: len(kept) for name, kept in self._kept.items()}

    def begin_scan(self) -> dict[int, RememberedProcess]:
        """A new scan begins: returns the previous scan's processes (self.processes starts empty)."""
        self.scans_begun += 1
        self.reused = set()
        self.turned = set()
        if not self.fixed:
            self._pace(time.monotonic())
        for kept in self.records.values():
            kept.turn()
        previous, self.processes = self.processes, {}
        return previous

    def _pace(self, now: float) -> None:
        """Scans per full read from the interval between scans, smoothed so that one slow or hurried scan does
        not move the rotation (a change of refresh_every moves each process's turn); the interval after the first
        scan, which reads every process in full, is not counted."""
        if self._began is not None and self.scans_begun > 2:  # not from the first scan, which reads everything
            interval = max(now - self._began, 0.001)
            self._interval = interval if self._interval is None else 0.8 * self._interval + 0.2 * interval
            wanted = max(1, round(self.refresh_seconds / self._interval))
            if abs(wanted - self.refresh_every) > self.refresh_every / 4:
                self.refresh_every = wanted
        self._began = now

    def is_turn(self, pid: int) -> bool:
        """Whether this scan reads pid in full whatever its run signature says (once in refresh_every scans)."""
        return not (_slot(pid, self.refresh_every) + self.scans_begun) % self.refresh_every

    def turn(self, pid: int) -> int:
        """Which full-read turn of pid this scan is in: it changes exactly when is_turn says pid is read in full
        (for what a collector keeps per process and reads again on the same rotation: capacity's limits)."""
        return (_slot(pid, self.refresh_every) + self.scans_begun) // self.refresh_every

    def close(self) -> None:
        """Close the kept /proc files (the next scan opens them again)."""
        self.files.close()

    def end_scan(self) -> None:
        """The scan is over: only what it kept is needed by the next one."""
        for kept in self.records.values():
            kept.done()


def _slot(pid: int, every: int) -> int:
    """Where in a rotation of ``every`` scans pid's full read falls (0 ≤ slot < every): the fraction of pid × the
    golden ratio, so that pids a fixed stride apart, as a program forking many workers gets, take their turns
    evenly over the scans (Weyl's equidistribution). pid modulo every made 500 workers 24 pids apart a fifth of them
    in one scan in six, and none in the others."""
    return (pid * 2654435769 & 0xFFFFFFFF) * every >> 32  # 2654435769 = 2**32 / golden ratio
