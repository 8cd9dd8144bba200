"""Where the dashboard's snapshots and events come from: the live Monitor, or any snapshot source (tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ipcmon.live.events import diff
from ipcmon.model import Event, Snapshot

SnapshotSource = Callable[[], Snapshot]


class Feed(Protocol):
    """What the app needs: ``poll()`` from one worker thread at a time, inotify started and stopped.

    The app keeps its own event log, on its own thread, from what ``poll()`` returns and what inotify posts.
    """

    def poll(self) -> tuple[Snapshot, list[Event]]: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class SourceFeed:
    """A Feed over a plain snapshot source: events come from diffing consecutive snapshots, no inotify."""

    def __init__(self, source: SnapshotSource) -> None:
        self.source = source
        self._previous: Snapshot | None = None

    def poll(self) -> tuple[Snapshot, list[Event]]:
        snapshot = self.source()
        events = diff(self._previous, snapshot)
        self._previous = snapshot
        return snapshot, events

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
