"""Keeping the dashboard current: scans in a thread worker re-armed after each one, inotify events between them.

Every state change happens on the UI thread. The scan worker only posts its result (``ScanDone``), the
inotify watcher only posts what it saw (``WatchedEvents``, merged while queued); the handlers here turn both
into the App-level reactives the views are bound to: ``snapshot``, ``context``, ``events``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from textual import on, work
from textual.app import App
from textual.events import Event as TextualEvent
from textual.events import InputEvent
from textual.reactive import reactive
from textual.theme import Theme
from textual.timer import Timer

from ipcmon.demos import DemoProcess
from ipcmon.live.events import EventLog
from ipcmon.live.monitor import apply_inotify
from ipcmon.model import Event, Snapshot
from ipcmon.ui.feed import Feed
from ipcmon.ui.garbage import CalmCollections, freeze_startup_objects
from ipcmon.ui.messages import ScanDone, ScanFailed, WatchedEvents
from ipcmon.ui.screens.process import process_history
from ipcmon.ui.state import empty_context
from ipcmon.ui.view.actors import Attributions
from ipcmon.ui.view.table import Context, Palette
from ipcmon.ui.widgets.demos_view import running_demo_pids
from ipcmon.ui.widgets.object_view import object_history

INTERVALS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Steps for faster/slower refresh."""
MIN_INTERVAL = 0.1
MIN_REST = 0.1
"""Seconds at least between the end of a scan and a rescan triggered by inotify."""
INOTIFY_CALM = 8
"""More events than this in one handled burst is a storm: they wait for the rescan."""
PATCH_GAP = 0.25
"""Seconds at least between two views refreshed from inotify alone."""
HISTORY_EVENTS = 10_000


class RefreshingApp(App[None]):
    """The scan loop and the App-level state every view is bound to (the dashboard's first layer)."""

    # repaint=False on the App's state and on the views bound to it: the widgets that show it refresh
    # themselves when what they show changes. With Textual's default every scan repainted the whole screen,
    # most of the idle dashboard's cost (19 full-screen updates in 10 idle seconds, none after).
    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True, repaint=False)
    """The one App-level snapshot every view is bound to."""
    context: reactive[Context] = reactive(empty_context, always_update=True, repaint=False)
    """What rows need besides the snapshot (colours, demo membership); set just before ``snapshot``."""
    events: reactive[Sequence[Event]] = reactive(tuple, always_update=True, repaint=False)
    """The event log (``event_log`` itself, newest first; inotify's events join it between scans); set just
    before ``snapshot``. Views only read it."""
    demo_processes: reactive[dict[str, DemoProcess]] = reactive(dict, always_update=True, repaint=False)
    """Demos started from this dashboard, by name (the latest run of each); replaced, never changed in place."""
    interval: reactive[float] = reactive(1.0)
    paused: reactive[bool] = reactive(False)
    scan_error: reactive[str] = reactive("")

    def __init__(self, feed: Feed, *, interval: float, history: int = HISTORY_EVENTS,
                 who: Attributions | None = None, freeze_gc: bool = False) -> None:
        super().__init__()
        self.freeze_gc = freeze_gc
        """Move what exists once the first scan is drawn out of the garbage collector's sight, and run full
        collections only after a scan, when no key was just pressed (ipcmon.ui.garbage)."""
        self.collections = CalmCollections()
        self.feed = feed
        self.who = who if who is not None else Attributions()
        """Who sent each process its signals (the feed's ``sent`` events) and who created each object (the journal,
        when one was opened): given to the views in the Context once it knows something (``known``)."""
        self._seeded = False
        self.event_log = EventLog(history)
        """Every event seen (scans' diffs and inotify's), appended on the UI thread only."""
        self.set_reactive(RefreshingApp.interval, max(interval, MIN_INTERVAL))
        self.palette = Palette()
        self._scanning = False
        self._rescan = False
        self._last_patch = 0.0
        self._held: Snapshot | None = None
        """A scan that finished while paused, shown on resume (toggle_pause)."""
        self._timer: Timer | None = None
        self._timer_due = 0.0
        """When the armed timer fires (time.monotonic)."""
        self._rest_until = 0.0
        """No inotify-triggered scan before this (time.monotonic)."""

    def start_refreshing(self) -> None:
        """Start inotify (polling still works without it) and the first scan (from on_mount)."""
        self.palette = palette_for(self.current_theme)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        try:
            self.feed.start()
        except Exception as error:  # inotify limits, permissions: polling still works
            self.notify(f"inotify unavailable, polling only: {error}", severity="warning", markup=False)
        # The Monitor's attribution sources (issue 16); a plain snapshot source (tests, replays) has none.
        self.who.live = any(source.active for source in getattr(self.feed, "sources", ()))
        self.request_scan()

    def stop_refreshing(self) -> None:
        """Stop the timer and the watcher thread (from on_unmount: threads you start, you stop)."""
        self.collections.stop()
        if self._timer is not None:
            self._timer.stop()
        self.feed.stop()
        self.who.close()

    def _freeze_gc(self) -> None:
        freeze_startup_objects()
        self.collections.start()

    async def on_event(self, event: TextualEvent) -> None:
        if isinstance(event, InputEvent):
            self.collections.last_input = time.monotonic()
        await super().on_event(event)

    # --- scanning: a thread worker, never two at once, re-armed after each one ----------------------------

    def request_scan(self) -> None:
        """Scan now, or right after the scan in progress."""
        if self._scanning:
            self._rescan = True
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._scanning = True
        self._scan()

    @work(thread=True, exclusive=True, exit_on_error=False, group="scan")
    def _scan(self) -> None:
        try:
            snapshot, events = self.feed.poll()
        except Exception as error:
            self.post_message(ScanFailed(f"{type(error).__name__}: {error}"))
            return
        self.post_message(ScanDone(snapshot, events))

    @on(ScanDone)
    def _scan_done(self, message: ScanDone) -> None:
        self._scanning = False
        self._rest_until = time.monotonic() + max(MIN_REST, message.snapshot.scan_seconds)
        self.scan_error = ""
        self.event_log.extend(message.events)
        self.who.add(message.events)
        if not self._seeded:
            # The signals each process got before the dashboard started, from the journal (once).
            self._seeded = True
            self.who.seed((process.pid, process.start_time) for process in message.snapshot.processes)
            if self.freeze_gc:
                self.call_after_refresh(self._freeze_gc)
        if self.paused and self.snapshot is not None:
            # A scan that was under way when the user paused: what is on screen stays as it was (htop's freeze; an
            # alert list that changed under the cursor made Enter open another object). Shown on resume.
            self._held = message.snapshot
            return
        # The log itself, not a copy (issue 12: 10,000 events copied every scan): views read what is new since
        # they last looked (EventLog.newer_than) and never change it.
        self._show(message.snapshot, events=self.event_log)
        self._next_scan()
        if self.collections.started:
            self.call_after_refresh(self.collections.after_scan)  # once the scan's frame is drawn

    @on(ScanFailed)
    def _scan_failed(self, message: ScanFailed) -> None:
        self._scanning = False
        self.scan_error = message.error
        self._next_scan()

    def _show(self, snapshot: Snapshot, *, events: Sequence[Event] | None = None) -> None:
        """Hand a snapshot to the views: events and context first, so a view refreshed by ``snapshot`` has them."""
        if events is not None:
            self.events = events
        self.context = self.context_for(snapshot)
        self.snapshot = snapshot

    def context_for(self, snapshot: Snapshot) -> Context:
        return Context(snapshot, self.palette, running_demo_pids(self.demo_processes.values(), snapshot),
                       who=self.who if self.who.known else None)

    def _next_scan(self) -> None:
        if self._rescan:
            self._rescan = False
            self.request_scan()
        elif not self.paused:
            self._arm(self.interval)

    def _arm(self, delay: float) -> None:
        """(Re)arm the one scan timer."""
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(delay, self.request_scan)
        self._timer_due = time.monotonic() + delay

    # --- inotify: the watcher thread posts, this thread decides -------------------------------------------

    def inotify_event(self, event: Event) -> None:
        """The Monitor's callback, on its observer or attribution thread: it only posts (poll events arrive with the
        scan): inotify's, those a kernel source named the actor of, and the ``sent`` events (only this way)."""
        if event.source in ("inotify", "fanotify", "tracefs"):
            self.post_message(WatchedEvents([event]))

    @on(WatchedEvents)
    def _watched(self, message: WatchedEvents) -> None:
        # inotify saw creates or deletes between polls: rescan now for holders, sizes and the rest. Under
        # churn that would be scan after scan, the scanning thread holding the GIL most of the time and the
        # UI starved: after each scan, rest at least as long as it took (MIN_REST at least) first.
        self.event_log.extend(message.events)
        now = time.monotonic()
        if self.who.add(message.events) and all(event.event == "sent" for event in message.events):
            # Only signals sent: the views show their senders now (rows rebuilt only where they changed); the next
            # scan shows what they changed (pending sets), no rescan for them (a SIGCHLD storm would be one).
            if self.snapshot is not None and not self.paused and now - self._last_patch >= PATCH_GAP:
                self._last_patch = now
                self._show(self.snapshot)
            return
        calm = len(message.events) <= INOTIFY_CALM and now - self._last_patch >= PATCH_GAP
        if calm and not self.paused and self.snapshot is not None:
            # Show segments created or removed at once; the rescan below fills in their holders. Only when
            # inotify is calm: each patch refreshes every view, and under churn the rescan shows it all.
            self._last_patch = now
            shown = self.snapshot
            for event in message.events:
                shown = apply_inotify(shown, event) or shown
            if shown is not self.snapshot:
                self._show(shown)
        if self.paused or self._scanning:
            self._rescan = self._rescan or not self.paused
            return
        wait = self._rest_until - time.monotonic()
        if wait <= 0:
            self.request_scan()
        elif self._timer is None or self._timer_due > self._rest_until:
            self._arm(wait)

    # --- pause and interval ---------------------------------------------------------------------------------

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        if self.paused:
            if self._timer is not None:
                self._timer.stop()
                self._timer = None
        else:
            held, self._held = self._held, None
            if held is not None:
                self._show(held, events=self.event_log)  # its events are in the log already
            self.request_scan()

    def set_interval_seconds(self, seconds: float) -> None:
        self.interval = max(seconds, MIN_INTERVAL)
        self.notify(f"Refreshing every {self.interval:g}s", timeout=2, markup=False)
        if not self._scanning and not self.paused:
            self._arm(self.interval)

    def faster(self) -> None:
        self.set_interval_seconds(max((step for step in INTERVALS if step < self.interval), default=MIN_INTERVAL))

    def slower(self) -> None:
        self.set_interval_seconds(min((step for step in INTERVALS if step > self.interval), default=self.interval))

    # --- history --------------------------------------------------------------------------------------------

    def history_for(self, key: str) -> list[Event]:
        """One object's events, oldest first (the last 50)."""
        return object_history(self.events, key)

    def history_for_pid(self, pid: int) -> list[Event]:
        return process_history(self.events, pid)

    # --- theme ------------------------------------------------------------------------------------------------

    def _theme_changed(self, theme: Theme) -> None:
        self.palette = palette_for(theme)
        snapshot = self.snapshot
        if snapshot is not None:
            self.context = self.context_for(snapshot)
            self.recolour()

    def recolour(self) -> None:
        """Redraw what is on screen in the new colours (the views know how)."""


def palette_for(theme: Theme) -> Palette:
    """State colours from the theme, so the built-in theme switcher recolours the tables too."""
    return Palette(
        bad=f"bold {theme.error or 'red'}",
        warn=theme.warning or "yellow",
        good=theme.success or "green",
        muted="dim",
        accent=f"bold {theme.accent or 'magenta'}",
    )
