"""The JSON contract: a Snapshot as plain dicts and lists (documented in README.md), and writing one to a file."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ipcmon import paths
from ipcmon.model import (
    Budget,
    Capacity,
    Deadlock,
    Filler,
    MessageQueue,
    Namespace,
    ProcessSignals,
    ShmMount,
    ShmSegment,
    Snapshot,
    Stuck,
)
from ipcmon.text import deadlock_summary, place_json, signal_name, wait_text
from ipcmon.who import Known, created_by_json, sent_json

if TYPE_CHECKING:
    from ipcmon.who import Known

SCHEMA_VERSION = 1


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(cls))


def _encode(record: object) -> dict[str, Any]:
    """One record as a dict of its fields, shallow: json's C encoder calls this again for nested records.

    dataclasses.asdict would deep-copy the whole snapshot first, which took longer than the scan itself
    on a machine with thousands of objects.
    """
    encoder = ENCODERS.get(type(record))
    if encoder is not None:
        return encoder(record)
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        raise TypeError(f"{type(record).__name__} is not part of a snapshot")
    data = {name: getattr(record, name) for name in _field_names(type(record))}
    if "place" in data:  # a placed record (issue 15): its namespace and container instead of the nested Place
        data.update(place_json(data.pop("place")))
    derived = DERIVED.get(type(record))
    if derived is not None:
        data.update(derived(record))
    return data


def _namespace(namespace: Namespace) -> dict[str, Any]:
    """One namespace of ``namespaces``: its inodes, container, unit and whether it is the host's, flat, then what
    was read of it."""
    place = namespace.place
    fields = place_json(place)
    return {
        "ipc": place.ipc, "mnt": place.mnt, "container": fields["container"], "unit": place.unit, "host": place.host,
        "place": fields["place"], "processes": namespace.processes, "shm_dir": namespace.shm_dir,
        "shm_dev": namespace.shm_dev, "mqueue_dir": namespace.mqueue_dir, "mqueue_dev": namespace.mqueue_dev,
        "sysv": namespace.sysv, "access": namespace.access, "note": namespace.note,
    }


def _percent(fill: float | None) -> float | None:
    return None if fill is None else round(fill * 100, 1)


def _queue_fields(queue: MessageQueue) -> dict[str, Any]:
    return {
        "fill_percent": _percent(queue.fill),
        # The registration's signal by its one name (text.signal_name); "signo" keeps the number.
        "signal": signal_name(queue.signo) if queue.signo else None,
    }


def _mount_fields(mount: ShmMount) -> dict[str, Any]:
    # "free" is what an unprivileged writer may still allocate (statvfs f_bavail): the largest segment that fits.
    return {"fill_percent": _percent(mount.fill), "free": mount.available}


def _budget_fields(budget: Budget) -> dict[str, Any]:
    headroom = (None if budget.used is None or budget.limit is None or budget.unlimited or budget.per_object
                else budget.limit - budget.used)
    return {"fill_percent": _percent(budget.fill), "headroom": headroom}


def _stuck_fields(entry: Stuck, now: float) -> dict[str, Any]:
    return {
        **_encode(entry),
        # What it waits on in words (text.wait_text), and how long ago it last ran (null when the kernel does not say).
        "waits_on": wait_text(entry.waiting),
        "since_seconds": None if entry.since is None else round(max(now - entry.since, 0.0), 3),
    }


def _deadlock_fields(deadlock: Deadlock, stuck: dict[int, Stuck]) -> dict[str, Any]:
    return {**_encode(deadlock), "pids": deadlock.pids, "key": deadlock.key,
            "summary": deadlock_summary(deadlock, stuck)}


def _snapshot_fields(snapshot: Snapshot) -> dict[str, Any]:
    # A stuck process's age and a deadlock's sentence need the rest of the snapshot, so they are made here.
    by_pid = {entry.pid: entry for entry in snapshot.stuck}
    return {
        "schema": SCHEMA_VERSION,
        "stuck": [_stuck_fields(entry, snapshot.taken_at) for entry in snapshot.stuck],
        "deadlocks": [_deadlock_fields(deadlock, by_pid) for deadlock in snapshot.deadlocks],
    }


DERIVED: dict[type, Callable[[Any], dict[str, Any]]] = {
    MessageQueue: _queue_fields,
    ShmMount: _mount_fields,
    Budget: _budget_fields,
    Snapshot: _snapshot_fields,
}
"""Fields a record's JSON object has beyond its dataclass fields, by record type. Every other record (each
mechanism's list: ``shm``, ``regions``, ``mqueues``, ``pipes``…) is exactly its fields, in their order. The
snapshot's ``stuck`` and ``deadlocks`` entries get theirs from the snapshot's (``since_seconds``, ``summary``);
``capacity``'s shm mounts get ``fill_percent`` and ``free``, its budgets ``fill_percent`` and ``headroom``. A placed
record (a segment, queue, SysV object, process, shm mount: issue 15) has ``namespace``, ``container`` and ``place``
(text.place_json) at the end instead of its ``place`` field."""


ENCODERS: dict[type, Callable[[Any], dict[str, Any]]] = {Namespace: _namespace}
"""Records whose JSON object is not their fields: a namespace is its place's fields, flat."""


WHO: dict[type, Callable[[Any, Known], dict[str, Any]]] = {
    ShmSegment: lambda segment, known: {"created_by": created_by_json(known.creators.get(segment.object_key))},
    MessageQueue: lambda queue, known: {"created_by": created_by_json(known.creators.get(queue.object_key))},
    ProcessSignals: lambda signals, known: {"received": [sent_json(sent) for sent in known.sent.get(signals.pid, ())]},
    Snapshot: lambda snapshot, known: {"journal": known.journal},
}
"""What the journal says (issue 16), last in a record's object: a POSIX segment's, semaphore's and queue's
``created_by`` (who.created_by_json, null when unknown), a signals entry's ``received`` (who.sent_json, newest
first), the snapshot's ``journal`` (the path read, null when none was)."""


def _encoder(known: Known) -> Callable[[object], dict[str, Any]]:
    """_encode, with what the journal knows added to the records it speaks of (WHO)."""
    def encode(record: object) -> dict[str, Any]:
        data = _encode(record)
        who = WHO.get(type(record))
        if who is not None:
            data.update(who(record, known))
        return data

    return encode


def dumps(snapshot: Snapshot, *, indent: int | None = None, known: Known | None = None) -> str:
    """JSON text. Names with invalid UTF-8 keep their bytes as \\udcXX escapes (Python's surrogateescape):
    ``os.fsencode(name)`` on the parsed string gives back the exact bytes. known: what the journal says of who
    created the POSIX objects and who signalled the processes (who.read_journal); None: nobody knows (the WHO keys
    are null or empty)."""
    # check_circular off: records are frozen and built bottom-up, so none can contain itself; the check
    # kept a table of every container it entered (a tenth of the encoding time on a large snapshot).
    return json.dumps(snapshot, default=_encoder(known if known is not None else Known()), indent=indent,
                      ensure_ascii=True, check_circular=False)


def dumps_capacity(capacity: Capacity | None, largest: Sequence[Filler] = (), known: Known | None = None) -> str:
    """``{"capacity": …, "largest": […], "journal": PATH}`` (`ipcmon limits --json`): ``capacity`` is the same
    object as snapshot --json's, null when the budgets were not read; ``largest`` the largest objects of each budget
    (report.Filler's fields, and ``created_by``: who.created_by_json, null when unknown); ``journal`` the journal
    read, null when none was."""
    from ipcmon.who import created_by_json

    creators = known.creators if known is not None else {}
    fields = [field.name for field in dataclasses.fields(Filler) if field.name != "place"]
    rows = [{**{name: getattr(filler, name) for name in fields},
             **place_json(filler.place), "created_by": created_by_json(creators.get(filler.key))}
            for filler in largest]
    return json.dumps({"capacity": capacity, "largest": rows, "journal": known.journal if known is not None else None},
                      default=_encode, ensure_ascii=True, check_circular=False)


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as plain data, exactly as `dumps` writes it."""
    result: dict[str, Any] = json.loads(dumps(snapshot))
    return result


ENV_EXPORT_DIR = "IPCMON_EXPORT_DIR"


class ExportError(Exception):
    """A snapshot could not be written; the message says where and why, fit to show."""


def export_dir() -> str:
    """Where exported snapshots go: ``$IPCMON_EXPORT_DIR``, else ``$XDG_STATE_HOME/ipcmon``, else
    ``~/.local/state/ipcmon`` (the XDG Base Directory spec ignores a relative ``XDG_STATE_HOME``)."""
    explicit = os.environ.get(ENV_EXPORT_DIR)
    if explicit:
        return explicit
    return paths.state_dir()


def write_snapshot(snapshot: Snapshot, directory: str, *, known: Known | None = None) -> str:
    """Write the snapshot as ``ipcmon-snapshot-YYYYmmdd-HHMMSS.json`` (local time of the scan) in `directory`, as
    `dumps` writes it (with known: who created and who signalled, as ``snapshot --json``); return the file's path.

    A missing directory is created with mode 0700 (the snapshot names every process and its command line),
    the file with mode 0600 and never over another: a second export in the same second gets ``-2``.
    Raises ExportError, saying which path failed and why (an unwritable directory, a file in the way).
    """
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:  # makedirs' EEXIST with exist_ok: the path is a file
        raise ExportError(f"could not create the directory {directory}: a file is in the way (not a directory)") \
            from error
    except OSError as error:
        raise ExportError(f"could not create the directory {directory}: {error.strerror or error}") from error
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(snapshot.taken_at))
    text = dumps(snapshot, indent=2, known=known) + "\n"
    for attempt in range(1, 100):
        suffix = "" if attempt == 1 else f"-{attempt}"
        path = os.path.join(directory, f"ipcmon-snapshot-{stamp}{suffix}.json")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            continue
        except OSError as error:
            raise ExportError(f"could not write {path}: {error.strerror or error}") from error
        try:
            with open(fd, "w", encoding="utf-8") as out:
                out.write(text)
        except OSError as error:
            raise ExportError(f"could not write {path}: {error.strerror or error}") from error
        return path
    raise ExportError(f"could not write to {directory}: 99 snapshots of {stamp} are there already")
