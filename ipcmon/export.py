"""The JSON contract: a Snapshot as plain dicts and lists (documented in README.md)."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any

from ipcmon.model import MessageQueue, Snapshot
from ipcmon.text import signal_name

SCHEMA_VERSION = 1


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(cls))


def _encode(record: object) -> dict[str, Any]:
    """One record as a dict of its fields, shallow: json's C encoder calls this again for nested records.

    dataclasses.asdict would deep-copy the whole snapshot first, which took longer than the scan itself
    on a machine with thousands of objects.
    """
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        raise TypeError(f"{type(record).__name__} is not part of a snapshot")
    data = {name: getattr(record, name) for name in _field_names(type(record))}
    derived = DERIVED.get(type(record))
    if derived is not None:
        data.update(derived(record))
    return data


def _queue_fields(queue: MessageQueue) -> dict[str, Any]:
    fill = queue.fill
    return {
        "fill_percent": None if fill is None else round(fill * 100, 1),
        # The registration's signal by its one name (text.signal_name); "signo" keeps the number.
        "signal": signal_name(queue.signo) if queue.signo else None,
    }


def _snapshot_fields(snapshot: Snapshot) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION}


DERIVED: dict[type, Callable[[Any], dict[str, Any]]] = {
    MessageQueue: _queue_fields,
    Snapshot: _snapshot_fields,
}
"""Fields a record's JSON object has beyond its dataclass fields, by record type. Every other record (each
mechanism's list: ``shm``, ``regions``, ``mqueues``, ``pipes``…) is exactly its fields, in their order."""


def dumps(snapshot: Snapshot, *, indent: int | None = None) -> str:
    """JSON text. Names with invalid UTF-8 keep their bytes as \\udcXX escapes (Python's surrogateescape):
    ``os.fsencode(name)`` on the parsed string gives back the exact bytes."""
    # check_circular off: records are frozen and built bottom-up, so none can contain itself; the check
    # kept a table of every container it entered (a tenth of the encoding time on a large snapshot).
    return json.dumps(snapshot, default=_encode, indent=indent, ensure_ascii=True, check_circular=False)


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as plain data, exactly as `dumps` writes it."""
    result: dict[str, Any] = json.loads(dumps(snapshot))
    return result
