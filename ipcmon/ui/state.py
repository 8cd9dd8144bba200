"""The App-level state views and screens are bound to (``data_bind``), as it is before the first scan."""

from __future__ import annotations

from ipcmon.model import KINDS, Snapshot
from ipcmon.ui.view.table import Context


def empty_context() -> Context:
    """The context before the first scan: an empty snapshot of every kind, default colours, no demos."""
    return Context(Snapshot(taken_at=0.0, kinds=KINDS))
