"""The JSON contract: a Snapshot as plain dicts and lists (documented in README.md)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from ipcmon.model import Snapshot

SCHEMA_VERSION = 1


def snapshot_to_dict(snapshot: Snapshot) -> dict[str, Any]:
    """Every record field, plus derived values a consumer would otherwise recompute (fill %)."""
    data = dataclasses.asdict(snapshot)
    data["schema"] = SCHEMA_VERSION
    for queue, record in zip(data["mqueues"], snapshot.mqueues, strict=True):
        fill = record.fill
        queue["fill_percent"] = None if fill is None else round(fill * 100, 1)
    return data


def dumps(snapshot: Snapshot, *, indent: int | None = None) -> str:
    """JSON text. Names with invalid UTF-8 keep their bytes as \\udcXX escapes (Python's surrogateescape):
    ``os.fsencode(name)`` on the parsed string gives back the exact bytes."""
    return json.dumps(snapshot_to_dict(snapshot), indent=indent, ensure_ascii=True)
