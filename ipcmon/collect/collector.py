"""The collector entry each mechanism module exports, and the inputs a scan hands every collector.

The model is util-linux lsfd's ``struct file_class`` (lsfd-cmd/lsfd.h): each mechanism fills the same
record, and the scan loops over the table of them (collectors.py) without ever naming a mechanism.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from ipcmon.collect.config import Places, ScanConfig
from ipcmon.collect.fds import FdRef, MapRef
from ipcmon.collect.procfs import PidFds
from ipcmon.collect.recall import Recall
from ipcmon.model import Process, ProcessSignals

Need = Literal["fds", "maps", "signals"]
"""Per-process data a collector builds from: /proc/PID/fd entries, /proc/PID/maps lines, /proc/PID/status
signal masks. A process is read only for what the collectors of the scan need."""


Kept = TypeVar("Kept")


class RecordMemory(Protocol):
    """What a collector may ask of a Scanner's memory (memory.ScanMemory): its records of the last scan, and
    whatever else it keeps from scan to scan."""

    refresh_every: int
    """Scans in one rotation: each process is read in full on one of them (its turn)."""
    scans_begun: int
    """This scan's number (from 1)."""

    def recall(self, snapshot_field: str) -> Recall[Any]: ...

    def kept(self, name: str, make: Callable[[], Kept]) -> Kept: ...


@dataclass(slots=True)
class ScanInputs:
    """What one scan read of every process, handed to each collector in turn."""

    config: ScanConfig
    places: Places
    processes: Mapping[int, Process]
    fds: list[FdRef]
    maps: list[MapRef]
    signals: list[ProcessSignals]
    pidfds: PidFds
    """Borrows descriptors of the scanned processes (pidfd_getfd); open for the whole scan."""
    settled: Collection[int] = ()
    """Pids whose tables a Scanner took over (they have not run since; empty for a single scan): unread, or read in
    full on their turn and found the same (``turned``)."""
    turned: Collection[int] = ()
    """Of settled, those read in full on their turn of a Scanner's rotation (memory.ScanMemory.turned): what others
    may change behind a process that has not run is read again for them (pipes.collect: the fill)."""
    memory: RecordMemory | None = None
    notes: list[str] = field(default_factory=list)
    """Notes a collector adds while it builds (after the where-to-look notes and the unreadable count)."""
    hidden: int = 0
    """Processes whose descriptors or mappings could not be read (any of them may hold an end of any pipe)."""
    threads: Mapping[int, int] = field(default_factory=dict)
    """Each read process's thread count, by pid, as /proc/PID/stat said in this scan."""
    kept_fds: Collection[str] = ()
    """ipcmon's own descriptors that are /proc files a Scanner keeps open, as /proc/self/fd names them
    (procfs.OpenProcFiles.numbers): thousands on a large machine, none of them IPC."""
    fds_by_pid: Mapping[int, list[FdRef]] = field(default_factory=dict)
    """``fds`` by pid, in scan order: each the list object of the process's read, which a Scanner hands again
    unchanged for a process it took over (a collector may compare them by identity)."""

    def recall(self, snapshot_field: str) -> Recall[Any] | None:
        """The records a Scanner kept of this Snapshot field in its previous scan; None for a single scan."""
        return self.memory.recall(snapshot_field) if self.memory is not None else None

    def kept(self, name: str, make: Callable[[], Kept]) -> Kept | None:
        """What a collector keeps from one of a Scanner's scans to the next under name, made by make the first
        time; None for a single scan."""
        return self.memory.kept(name, make) if self.memory is not None else None


def held_by(holders: Iterable[object], wanted: Collection[int]) -> bool:
    """Whether one of the holders (anything with a ``pid``: Holder, PipeEnd) is a wanted process."""
    return any(getattr(holder, "pid", None) in wanted for holder in holders)


def _no_notes(config: ScanConfig, places: Places) -> Iterable[str]:
    return ()


def _keep_all(records: Any, wanted: Collection[int]) -> Any:
    return records


@dataclass(frozen=True, slots=True)
class Collector:
    """One mechanism, as the scan sees it: an entry in the collectors table."""

    kind: str
    """The scan kind it answers to (``--kind``, ``Snapshot.kinds``): one of model.KINDS."""
    snapshot_field: str
    """The Snapshot field its records fill (``shm``, ``regions``, ``pipes``…)."""
    needs: frozenset[Need]
    build: Callable[[ScanInputs], Any]
    """The records, of the field's type; may add notes to inputs.notes."""
    notes: Callable[[ScanConfig, Places], Iterable[str]] = _no_notes
    """What cannot be seen where it looks (a missing directory, no mount), said before the processes are read."""
    restrict: Callable[[Any, Collection[int]], Any] = _keep_all
    """The records that at least one of the given pids holds (``--pid``)."""
