"""Messages of the dashboard: results posted by its worker and watcher threads, and intentions its widgets post upward.

Threads only post (a scan's result, inotify events, an action's outcome); widgets and screens never call the
App, they announce what the user asked for (go to an object, open a process, start a demo) and the App decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from ipcmon.model import Event, Snapshot
from ipcmon.ui.view.table import Row

# --- from threads -------------------------------------------------------------------------------------------


@dataclass
class ScanDone(Message):
    """A scan finished; ``events`` is the diff against the scan before it."""

    snapshot: Snapshot
    events: list[Event] = field(default_factory=list)

    def can_replace(self, message: Message) -> bool:
        # Textual asks the queued message whether the newer one may take its place. Only the newest
        # snapshot matters if the UI fell behind, but the events of this one are carried over.
        if isinstance(message, ScanDone):
            self.events.extend(message.events)
            message.events = self.events
            return True
        return False


@dataclass
class ScanFailed(Message):
    """A scan raised: shown in place, and the next scan is still scheduled."""

    error: str


@dataclass
class WatchedEvents(Message):
    """inotify saw creates or deletes between polls (posted from the watcher's thread, one event each).

    Under churn inotify fires thousands of times a second: a burst still queued is merged into one message,
    so the UI handles it once (Toolong's watcher does the same).
    """

    events: list[Event]

    def can_replace(self, message: Message) -> bool:
        if isinstance(message, WatchedEvents):
            # Extend in place: a burst merged one message at a time stays linear in its length.
            self.events.extend(message.events)
            message.events = self.events
            return True
        return False


@dataclass
class ActionDone(Message):
    """A system-changing action (signal, unlink) finished in a worker; ``ok`` False when it was refused."""

    text: str
    ok: bool = True


@dataclass
class DemoStopped(Message):
    """A demo's process ended after being asked to stop (it removed what it created)."""

    name: str


# --- from widgets and screens ---------------------------------------------------------------------------------


@dataclass
class Goto(Message):
    """Show a view, with the cursor on one object's row when ``key`` is given (an alert, a demo's objects)."""

    view: str
    key: str | None = None


@dataclass
class ShowFiltered(Message):
    """Show a view filtered by ``query`` (as if typed after ``/``), the cursor on ``key`` when given (``g`` on a
    demo: its objects)."""

    view: str
    query: str
    key: str | None = None


@dataclass
class OpenRow(Message):
    """Enter on a row: the process view of its process (asking which one when several hold it)."""

    row: Row


@dataclass
class OpenProcess(Message):
    """Open the process view of one pid (the command palette)."""

    pid: int


@dataclass
class SignalProcess(Message):
    """``k`` in the process view: pick a signal for this pid, confirm, send."""

    pid: int


@dataclass
class StartDemo(Message):
    """Start a demo workload (Enter on a stopped demo)."""

    name: str


@dataclass
class StopDemo(Message):
    """Stop a running demo (Enter on it): it removes what it created."""

    name: str
