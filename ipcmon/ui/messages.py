"""Messages posted to the dashboard by its worker threads (scan, watcher, actions) and between its widgets."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from ipcmon.model import Event, Snapshot


@dataclass
class ScanDone(Message):
    """A scan finished; ``events`` is the diff against the scan before it."""

    snapshot: Snapshot
    events: list[Event] = field(default_factory=list)

    def can_replace(self, message: Message) -> bool:
        # Textual asks the queued message whether the newer one may take its place. Only the newest
        # snapshot matters if the UI fell behind, but the events of this one are carried over.
        if isinstance(message, ScanDone):
            message.events = [*self.events, *message.events]
            return True
        return False


@dataclass
class ScanFailed(Message):
    """A scan raised: shown in place, and the next scan is still scheduled."""

    error: str


@dataclass
class WatchedEvent(Message):
    """inotify saw a create or delete between polls (posted from the watcher's thread)."""

    event: Event


@dataclass
class ActionDone(Message):
    """A system-changing action (signal, unlink) finished in a worker; ``ok`` False when it was refused."""

    text: str
    ok: bool = True
