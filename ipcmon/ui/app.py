"""The dashboard App and its factory: scans in a thread worker, one App-level snapshot, views bound to it."""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterable, Sequence
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.theme import Theme
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer, Input, TabbedContent, TabPane

from ipcmon import actions as audit
from ipcmon.collect import ScanConfig
from ipcmon.collect.signals import signal_name
from ipcmon.demos import DemoProcess
from ipcmon.export import dumps
from ipcmon.leaks import Leak, find_leaks
from ipcmon.live.monitor import apply_inotify
from ipcmon.model import KINDS, Event, Snapshot
from ipcmon.safe import printable
from ipcmon.ui import actions
from ipcmon.ui.commands import IpcmonCommands
from ipcmon.ui.feed import Feed, SnapshotSource, SourceFeed
from ipcmon.ui.messages import ActionDone, ScanDone, ScanFailed, WatchedEvent
from ipcmon.ui.screens.choose import ChooseProcess
from ipcmon.ui.screens.confirm import ConfirmScreen
from ipcmon.ui.screens.help import HelpScreen
from ipcmon.ui.screens.process import ProcessScreen
from ipcmon.ui.screens.signal import SignalPicker
from ipcmon.ui.view.rows import (
    MQUEUE_COLUMNS,
    PIPE_COLUMNS,
    SHM_COLUMNS,
    SIGNAL_COLUMNS,
    Context,
    Palette,
    Row,
    mqueue_rows,
    pipe_rows,
    record_name,
    shm_rows,
    signal_rows,
)
from ipcmon.ui.widgets.demos_view import DemosView, expand_names, running_demo_pids
from ipcmon.ui.widgets.events_view import EventKeys, events_spec
from ipcmon.ui.widgets.header import StatusHeader
from ipcmon.ui.widgets.object_view import ObjectView, ViewSpec
from ipcmon.ui.widgets.overview import Overview

INTERVALS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Steps for faster/slower refresh."""
MIN_INTERVAL = 0.1
MIN_REST = 0.1
INOTIFY_APPLIED = 64
"""inotify events kept for the handler to show at once; under a storm the rescan shows the rest."""
INOTIFY_CALM = 8
"""More events than this between two handler runs is a storm: they wait for the rescan."""
PATCH_GAP = 0.25
"""Seconds at least between two views refreshed from inotify alone."""
"""Seconds at least between the end of a scan and a rescan triggered by inotify."""
HISTORY_EVENTS = 10_000

OBJECT_SPECS = (
    ViewSpec("shm", "Shared memory", SHM_COLUMNS, shm_rows, ("shm", "sysv"),
             note_words=("shm", "sysvipc", "could not be fully read"), sort_column="name",
             empty="no shared memory segments or semaphores"),
    ViewSpec("mqueue", "Message queues", MQUEUE_COLUMNS, mqueue_rows, ("mqueue", "sysv"),
             note_words=("mqueue", "sysvipc"), sort_column="name", empty="no message queues"),
    ViewSpec("pipes", "Pipes & FIFOs", PIPE_COLUMNS, pipe_rows, ("pipe",),
             note_words=("pipe",), sort_column="inode", empty="no pipes or FIFOs"),
    ViewSpec("signals", "Signals", SIGNAL_COLUMNS, signal_rows, ("signal",), sort_column="pending",
             sort_reverse=True, empty="no processes", filter_help="filter: pid, command, signal name; state:pending"),
)


class Views(TabbedContent):
    """The dashboard's views as tabs; they switch only on purpose (keys, clicks, jumps)."""

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        # TabbedContent also switches to the pane of any widget that gets the focus. A focus change still in
        # flight for the previous pane then switched back, and hiding the focused table moved the focus again:
        # two tabs flipped for ever. The dashboard moves the focus itself after each switch.
        event.stop()
        event.prevent_default()


class IpcmonApp(App[None]):
    """Live view of every IPC mechanism. Build it with :func:`make_app`."""

    CSS_PATH = "ipcmon.tcss"
    TITLE = "ipcmon"
    COMMANDS = App.COMMANDS | {IpcmonCommands}
    VIEWS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("overview", "Overview"),
        ("shm", "Shared memory"),
        ("mqueue", "Message queues"),
        ("pipes", "Pipes & FIFOs"),
        ("signals", "Signals"),
        ("events", "Events"),
        ("demos", "Demos"),
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        # Priority bindings run before the key is routed to the focused widget, so keys typed right after
        # "/" (or a view number) already reach the filter box of the new view; check_action lets them through
        # as text when a text box has the focus.
        Binding("slash", "filter", "Filter", priority=True),
        Binding("k", "signal", "Signal"),
        Binding("d", "remove", "Remove"),
        Binding("c", "copy_path", "Copy path"),
        Binding("e", "export", "Export"),
        Binding("p,space", "toggle_pause", "Pause"),
        Binding("plus,equals_sign", "faster", "Faster"),
        Binding("minus", "slower", "Slower"),
        *(Binding(str(number), f"show_view('{view}')", title, show=False, priority=True)
          for number, (view, title) in enumerate(VIEWS, start=1)),
    ]
    # Actions that need the main screen (not a dialog or the process view on top of it).
    MAIN_SCREEN_ACTIONS: ClassVar[frozenset[str]] = frozenset(
        {"quit", "help", "filter", "signal", "remove", "copy_path", "export", "show_view"}
    )

    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True)
    """The one App-level snapshot every view is bound to."""
    interval: reactive[float] = reactive(1.0)
    paused: reactive[bool] = reactive(False)
    scan_error: reactive[str] = reactive("")
    active_view: reactive[str] = reactive("overview")

    def __init__(
        self,
        feed: Feed,
        *,
        interval: float = 1.0,
        read_only: bool = False,
        scan_config: ScanConfig = ScanConfig(),
        host: str | None = None,
        kernel: str | None = None,
        is_root: bool | None = None,
        export_dir: str | None = None,
        demos: Sequence[str] = (),
        demo_step: float | None = None,
    ) -> None:
        super().__init__()
        self.demo_step = demo_step
        """Seconds between demo steps (None: each demo's default)."""
        self.initial_demos = tuple(expand_names(demos))
        """Demos to start when the dashboard opens (--demo)."""
        self.demo_processes: dict[str, DemoProcess] = {}
        """Demos started from this dashboard, by name (the latest run of each)."""
        uname = os.uname()
        self.feed = feed
        self.read_only = audit.read_only(read_only)
        """--read-only or IPCMON_READ_ONLY: every action that changes the system is refused."""
        self.scan_config = scan_config
        self.host = host if host is not None else uname.nodename
        self.kernel = kernel if kernel is not None else uname.release
        self.is_root = is_root if is_root is not None else os.geteuid() == 0
        self.export_dir = export_dir if export_dir is not None else os.getcwd()
        self.set_reactive(IpcmonApp.interval, max(interval, MIN_INTERVAL))
        self.palette = Palette()
        self.context = Context(Snapshot(taken_at=0.0, kinds=KINDS))
        self.events: list[Event] = []
        """A copy of the event log, newest first, taken on the UI thread after each scan."""
        self.event_keys = EventKeys()
        self._scanning = False
        self._rescan = False
        self._rescan_posted = False
        self._inotify_pending: collections.deque[Event] = collections.deque(maxlen=INOTIFY_APPLIED)
        self._last_patch = 0.0
        """A WatchedEvent is queued and not handled yet (set on the watcher's thread)."""
        self._timer: Timer | None = None
        self._timer_due = 0.0
        """When the armed timer fires (time.monotonic)."""
        self._rest_until = 0.0
        """No inotify-triggered scan before this (time.monotonic)."""

    # --- layout ---------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusHeader(self.host, self.kernel, self.is_root, id="status").data_bind(
            IpcmonApp.snapshot, IpcmonApp.interval, IpcmonApp.paused, IpcmonApp.scan_error
        )
        specs = {spec.id: spec for spec in (*OBJECT_SPECS, events_spec(self.event_keys, lambda: self.events))}
        with Views(id="views", initial="overview"):
            for number, (view_id, title) in enumerate(self.VIEWS, start=1):
                with TabPane(f"{number} {title}", id=view_id):
                    if view_id == "overview":
                        yield Overview().data_bind(IpcmonApp.snapshot)
                    elif view_id in specs:
                        yield ObjectView(specs[view_id]).data_bind(IpcmonApp.snapshot)
                    else:
                        yield self.compose_demos()
        yield Footer()

    def compose_demos(self) -> Widget:
        return DemosView(self.initial_demos).data_bind(IpcmonApp.snapshot)

    def on_mount(self) -> None:
        self.palette = palette_for(self.current_theme)
        self.theme_changed_signal.subscribe(self, self._theme_changed)
        try:
            self.feed.start()
        except Exception as error:  # inotify limits, permissions: polling still works
            self.notify(f"inotify unavailable, polling only: {error}", severity="warning", markup=False)
        self.request_scan()

    def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.feed.stop()
        # Demos started here end with the dashboard, removing what they created (as on Ctrl-C).
        for process in self.demo_processes.values():
            if process.running:
                process.stop()

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
        drop_closed_watchers(self.query(Footer))
        self.events = self._copy_log()
        self.context = Context(message.snapshot, self.palette, running_demo_pids(self, message.snapshot))
        self.snapshot = message.snapshot
        self._next_scan()

    @on(ScanFailed)
    def _scan_failed(self, message: ScanFailed) -> None:
        self._scanning = False
        self.scan_error = message.error
        self._next_scan()

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

    @on(WatchedEvent)
    def _watched(self, message: WatchedEvent) -> None:
        # inotify saw a create or delete between polls: rescan now for holders, sizes and the rest. Under
        # churn that would be scan after scan, the scanning thread holding the GIL most of the time and the
        # UI starved: after each scan, rest at least as long as it took (MIN_REST at least) first.
        self._rescan_posted = False
        pending = []
        while self._inotify_pending:
            pending.append(self._inotify_pending.popleft())
        now = time.monotonic()
        calm = len(pending) <= INOTIFY_CALM and now - self._last_patch >= PATCH_GAP
        if calm and not self.paused and self.snapshot is not None:
            # Show segments created or removed at once; the rescan below fills in their holders. Only when
            # inotify is calm: each patch refreshes every view, and under churn the rescan shows it all.
            self._last_patch = now
            shown = self.snapshot
            for event in pending:
                shown = apply_inotify(shown, event) or shown
            if shown is not self.snapshot:
                self.context = Context(shown, self.palette, running_demo_pids(self, shown))
                self.snapshot = shown
        if self.paused or self._scanning:
            self._rescan = self._rescan or not self.paused
            return
        wait = self._rest_until - time.monotonic()
        if wait <= 0:
            self.request_scan()
        elif self._timer is None or self._timer_due > self._rest_until:
            self._arm(wait)

    def inotify_event(self, event: Event) -> None:
        """The Monitor's callback, on its observer thread (poll events arrive with the scan instead)."""
        # One rescan request in flight at a time: under churn inotify fires thousands of times a second, and
        # a message per event flooded the queue (memory grew, keys waited seconds) (issue 7).
        if event.source != "inotify":
            return
        # Kept for the handler to show at once (the newest INOTIFY_APPLIED of them; the rescan covers the rest).
        self._inotify_pending.append(event)
        if not self._rescan_posted:
            self._rescan_posted = True
            self.post_message(WatchedEvent(event))

    def _copy_log(self) -> list[Event]:
        """The event log, newest first. The watcher's thread appends to it, so a copy can meet a change."""
        for _ in range(10):
            try:
                return list(self.feed.log)
            except RuntimeError:  # deque mutated during iteration: take it again
                continue
        return self.events

    def history_for(self, key: str) -> list[Event]:
        """One object's events, oldest first (the last 50)."""
        return [event for event in reversed(self.events) if event.key == key][-50:]

    def history_for_pid(self, pid: int) -> list[Event]:
        return [event for event in reversed(self.events) if event.pid == pid][-50:]

    # --- theme ------------------------------------------------------------------------------------------------

    def _theme_changed(self, theme: Theme) -> None:
        self.palette = palette_for(theme)
        snapshot = self.snapshot
        if snapshot is not None:
            self.context = Context(snapshot, self.palette, running_demo_pids(self, snapshot))
            for overview in self.query(Overview):
                overview.refresh_view()
            view = self.current_view()
            if view is not None:
                view.refresh_rows(force=True)

    # --- views ------------------------------------------------------------------------------------------------

    def current_view(self) -> ObjectView | None:
        for view in self.query(ObjectView):
            if view.spec.id == self.active_view:
                return view
        return None

    def show_view(self, view_id: str) -> None:
        self.query_one("#views", TabbedContent).active = view_id
        self.active_view = view_id
        # Move the focus now: focusing a widget makes its pane the active tab, so a focus change still in
        # flight for the old pane would switch back to it unless a newer one for this pane follows it.
        self._focus_view(view_id)

    @on(Views.TabActivated, "#views")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if not self.screen_stack:
            return  # shutting down
        # The tab active now, not the event's: a late event for an earlier switch must not win.
        self.active_view = event.control.active or "overview"
        view = self.current_view()
        if view is not None:
            view.refresh_rows()
        elif self.active_view == "overview":
            for overview in self.query(Overview):
                overview.refresh_view()
        self._focus_view(self.active_view)

    def _focus_view(self, view_id: str) -> None:
        """Focus the main widget of a view, unless the focus is in that view already."""
        if not self.screen_stack or len(self.screen_stack) > 1:
            return
        pane = self.query_one(f"#views TabPane#{view_id}")
        focused = self.focused
        if focused is not None and pane in focused.ancestors:
            return
        for widget in pane.query("ObjectTable, #demo-list"):
            self.screen.set_focus(widget)
            return

    def action_show_view(self, view_id: str) -> None:
        self.show_view(view_id)

    def jump_to(self, view_id: str, key: str) -> None:
        """Switch to a view and put the cursor on an object's row."""
        self.show_view(view_id)
        for view in self.query(ObjectView):
            if view.spec.id == view_id:
                if view.select_key(key):
                    view.table.focus()
                else:
                    self.notify("That object is gone (or not in this view).", severity="warning", markup=False)

    def show_process(self, pid: int) -> None:
        self.push_screen(ProcessScreen(pid))

    def open_row(self, row: Row) -> None:
        """Enter on a row: the process view of its process (asking which one when several hold it)."""
        self._open_row(row)

    @work(group="dialog", exclusive=True)
    async def _open_row(self, row: Row) -> None:
        pid = await self._choose_pid(row, "Process view")
        if pid is not None:
            self.show_process(pid)

    async def _choose_pid(self, row: Row, title: str) -> int | None:
        pids = list(row.pids)
        if not pids:
            self.notify(f"No process holds {printable(record_name(row.record))}.", markup=False)
            return None
        if len(pids) == 1:
            return pids[0]
        processes = self.context.processes
        choices = [(pid, processes[pid].comm if pid in processes else "?") for pid in pids]
        return await self.push_screen_wait(ChooseProcess(title, choices))

    def current_row(self) -> Row | None:
        view = self.current_view()
        return view.table.current_row if view is not None else None

    # --- actions ----------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("filter", "show_view") and isinstance(self.focused, Input):
            return False  # the key is text for the box
        return not (action in self.MAIN_SCREEN_ACTIONS and len(self.screen_stack) > 1)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.read_only))

    def action_filter(self) -> None:
        view = self.current_view()
        if view is None:
            self.notify("Filtering works in the table views (2–6).", markup=False)
            return
        view.open_filter()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if self.paused:
            if self._timer is not None:
                self._timer.stop()
                self._timer = None
        else:
            self.request_scan()

    def action_faster(self) -> None:
        self._set_interval(max((step for step in INTERVALS if step < self.interval), default=MIN_INTERVAL))

    def action_slower(self) -> None:
        self._set_interval(min((step for step in INTERVALS if step > self.interval), default=self.interval))

    def _set_interval(self, seconds: float) -> None:
        self.interval = max(seconds, MIN_INTERVAL)
        self.notify(f"Refreshing every {self.interval:g}s", timeout=2, markup=False)
        if not self._scanning and not self.paused:
            self._arm(self.interval)

    def _refuse_read_only(self, what: str) -> bool:
        if self.read_only:
            self.notify(
                f"Read-only: ipcmon was started with --read-only, so {what} is disabled.",
                title="Refused",
                severity="warning",
                markup=False,
            )
        return self.read_only

    def action_signal(self) -> None:
        if self._refuse_read_only("sending signals"):
            return
        row = self.current_row()
        if row is None:
            self.notify("Select a process (Signals view) or an object first.", markup=False)
            return
        self._signal_row(row)

    @work(group="dialog", exclusive=True)
    async def _signal_row(self, row: Row) -> None:
        pid = await self._choose_pid(row, "Send a signal")
        if pid is not None:
            await self._signal_flow(pid)

    def signal_pid(self, pid: int) -> None:
        """k in the process view."""
        if self._refuse_read_only("sending signals"):
            return
        self._signal_pid(pid)

    @work(group="dialog", exclusive=True)
    async def _signal_pid(self, pid: int) -> None:
        await self._signal_flow(pid)

    async def _signal_flow(self, pid: int) -> None:
        process = self.context.processes.get(pid)
        target = Text(f"process {pid} ")
        target.append(printable(process.comm) if process else "?", style="bold")
        signo = await self.push_screen_wait(SignalPicker(target))
        if signo is None:
            self.notify("Cancelled: no signal sent.", markup=False)
            return
        question = Text(f"Send {signal_name(signo)} ({signo}) to ").append_text(target).append("?")
        if not await self.push_screen_wait(ConfirmScreen("Send a signal", question, "Send")):
            self.notify("Cancelled: no signal sent.", markup=False)
            return
        self._send_signal(pid, process.start_ticks if process else None, signo, process.comm if process else "?")

    @work(thread=True, group="action", exit_on_error=False)
    def _send_signal(self, pid: int, start_ticks: int | None, signo: int, comm: str) -> None:
        try:
            text, ok = actions.send_signal(pid, start_ticks, signo), True
        except OSError as error:
            text, ok = str(error), False
        # Every signal sent or refused goes to the action log (issue 7), like removals.
        problem = audit.record("signal", f"{signal_name(signo)} to {pid} {comm}", text)
        self.post_message(ActionDone(f"{text} ({problem})" if problem else text, ok=ok))

    def action_remove(self) -> None:
        if self._refuse_read_only("removing objects"):
            return
        row = self.current_row()
        if row is None:
            self.notify("Select an orphaned segment or queue first.", markup=False)
            return
        snapshot = self.snapshot
        leak = None
        if snapshot is not None:
            leak = next((leak for leak in find_leaks(snapshot) if leak.key == row.key), None)
        name = printable(record_name(row.record))
        if leak is None or not leak.removable:
            holders = ", ".join(f"{pid}" for pid in row.pids)
            reason = f"it is held by {holders}" if holders else "only orphaned POSIX segments and queues can be removed"
            self.notify(f"Refused: {name} was not removed: {reason}.", title="Refused", severity="warning",
                        markup=False)
            return
        self._remove_flow(leak)

    @work(group="dialog", exclusive=True)
    async def _remove_flow(self, leak: Leak) -> None:
        question = Text("Remove the orphaned ")
        question.append(printable(leak.name), style="bold")
        question.append("?\nNo process holds it. It is re-checked by a fresh scan just before it is unlinked.")
        if await self.push_screen_wait(ConfirmScreen("Remove orphan", question, "Remove")):
            self._remove(leak)
        else:
            self.notify("Cancelled: nothing removed.", markup=False)

    @work(thread=True, group="action", exit_on_error=False)
    def _remove(self, leak: Leak) -> None:
        removed, reason = actions.remove_orphan(leak, self.scan_config)
        name = printable(leak.name)
        text = f"Removed {name}." if removed else f"Refused: {name} was not removed: {reason}."
        self.post_message(ActionDone(text, ok=removed))

    @on(ActionDone)
    def _action_done(self, message: ActionDone) -> None:
        self.notify(message.text, severity="information" if message.ok else "error", markup=False)
        self.request_scan()

    def action_copy_path(self) -> None:
        row = self.current_row()
        path = row.path if row is not None else None
        if path is None:
            self.notify("The selected row has no path to copy.", markup=False)
            return
        self.copy_to_clipboard(path)
        self.notify(f"Copied {printable(path)}", markup=False)

    def action_export(self) -> None:
        if self.snapshot is None:
            self.notify("No snapshot yet.", markup=False)
            return
        self._export(self.snapshot)

    @work(thread=True, group="action", exit_on_error=False)
    def _export(self, snapshot: Snapshot) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(snapshot.taken_at))
        path = os.path.join(self.export_dir, f"ipcmon-snapshot-{stamp}.json")
        try:
            with open(path, "w", encoding="utf-8") as out:
                out.write(dumps(snapshot, indent=2) + "\n")
        except OSError as error:
            self.post_message(ActionDone(f"Export failed: {error}", ok=False))
            return
        self.post_message(ActionDone(f"Exported the snapshot to {path}"))


def drop_closed_watchers(nodes: Iterable[Widget]) -> None:
    """Forget watchers whose widget is gone.

    The Footer rebuilds its keys whenever the bindings change (every view switch), each key data-bound to
    Footer.compact. Textual drops a closed widget's watcher only when the watched value changes, and compact
    never does, so every key ever shown stayed in memory, ~20 widgets a view switch (textual#6666).
    """
    for node in nodes:
        for watchers in getattr(node, "__watchers", {}).values():
            watchers[:] = [(owner, callback) for owner, callback in watchers
                           if not (getattr(owner, "_closing", False) or getattr(owner, "_closed", False))]


def palette_for(theme: Theme) -> Palette:
    """State colours from the theme, so the built-in theme switcher recolours the tables too."""
    return Palette(
        bad=f"bold {theme.error or 'red'}",
        warn=theme.warning or "yellow",
        good=theme.success or "green",
        muted="dim",
        accent=f"bold {theme.accent or 'magenta'}",
    )


def make_app(
    source: SnapshotSource | None = None,
    interval: float = 1.0,
    read_only: bool = False,
    kinds: Sequence[str] = KINDS,
    pids: frozenset[int] | None = None,
    demos: Sequence[str] = (),
    *,
    host: str | None = None,
    kernel: str | None = None,
    is_root: bool | None = None,
    export_dir: str | None = None,
    history: int = HISTORY_EVENTS,
    demo_step: float | None = None,
) -> IpcmonApp:
    """The dashboard over a snapshot source (None: the live system, with inotify) — the CLI and tests call this."""
    config = ScanConfig(kinds=tuple(kinds), pids=pids)
    app: IpcmonApp
    if source is None:
        from ipcmon.live.monitor import Monitor

        monitor = Monitor(config, history=history, on_event=lambda event: app.inotify_event(event))
        feed: Feed = monitor
    else:
        feed = SourceFeed(source, history)
    app = IpcmonApp(
        feed,
        interval=interval,
        read_only=read_only,
        scan_config=config,
        host=host,
        kernel=kernel,
        is_root=is_root,
        export_dir=export_dir,
        demos=demos,
        demo_step=demo_step,
    )
    return app
