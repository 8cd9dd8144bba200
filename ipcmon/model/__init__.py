"""Immutable records of one consistent pass over the kernel's IPC objects.

Everything downstream (the CLI printers, the event diff, the dashboard) reads these records and
nothing else. They are frozen and slotted so a snapshot can be shared between the scanning thread and
the UI without copying, and compared cheaply when two snapshots are diffed.

Strings that come from the system (names, comm, cmdline, paths) are kept raw: invalid UTF-8 bytes are
carried as surrogate escapes (``os.fsdecode``), so ``os.fsencode(name)`` gives back the exact bytes.
Printers must pass them through :mod:`ipcmon.safe` before showing them.

The package is in three parts: ``vocabulary`` (the words and key formats), ``records`` (one record per object,
process and holder) and ``snapshot`` (Snapshot and Event); everything is imported from ``ipcmon.model``.
"""

from __future__ import annotations

from ipcmon.model.attribution import Action, Actor, Attribution, AttributionSource, SignalResult
from ipcmon.model.capacity import Budget, BudgetArea, BudgetUnit, Capacity, Filler, HolderUsage, ShmMount
from ipcmon.model.places import Container, Namespace, NamespaceAccess, Place, Runtime, names_better
from ipcmon.model.records import (
    Holder,
    MessageQueue,
    Pipe,
    PipeEnd,
    Process,
    ProcessKey,
    ProcessSignals,
    SharedRegion,
    ShmSegment,
    Sysv,
    SysvMsg,
    SysvSem,
    SysvShm,
    ThreadSignals,
    Waiting,
    Watched,
)
from ipcmon.model.snapshot import (
    Deadlock,
    DeadlockMember,
    Event,
    EventSource,
    Snapshot,
    Stuck,
)
from ipcmon.model.vocabulary import (
    KINDS,
    MECHANISMS,
    Access,
    EventName,
    Keyed,
    Mechanism,
    PipeFlag,
    PipeKind,
    RegionKind,
    ScanKind,
    ShmKind,
    ShmState,
    StuckState,
    WaitKind,
    file_key,
    key_mechanism,
    pipe_ref,
    sysv_key,
    sysv_label,
    sysv_object_key,
)

__all__ = [
    "KINDS",
    "MECHANISMS",
    "Access",
    "Action",
    "Actor",
    "Attribution",
    "AttributionSource",
    "Budget",
    "BudgetArea",
    "BudgetUnit",
    "Capacity",
    "Container",
    "Deadlock",
    "DeadlockMember",
    "Event",
    "EventName",
    "EventSource",
    "Filler",
    "Holder",
    "HolderUsage",
    "Keyed",
    "Mechanism",
    "MessageQueue",
    "Namespace",
    "NamespaceAccess",
    "Pipe",
    "PipeEnd",
    "PipeFlag",
    "PipeKind",
    "Place",
    "Process",
    "ProcessKey",
    "ProcessSignals",
    "RegionKind",
    "Runtime",
    "ScanKind",
    "SharedRegion",
    "ShmKind",
    "ShmMount",
    "ShmSegment",
    "ShmState",
    "SignalResult",
    "Snapshot",
    "Stuck",
    "StuckState",
    "Sysv",
    "SysvMsg",
    "SysvSem",
    "SysvShm",
    "ThreadSignals",
    "WaitKind",
    "Waiting",
    "Watched",
    "file_key",
    "key_mechanism",
    "names_better",
    "pipe_ref",
    "sysv_key",
    "sysv_label",
    "sysv_object_key",
]
