"""The dashboard's keys and what they do: filter, pause, interval, export, copy, and the signal and remove flows.

Each flow that changes the system asks first (a picker, a confirmation), refuses under ``--read-only``, and
runs the change in a thread worker that only posts its outcome (``ActionDone``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.widgets import Input

from ipcmon import actions
from ipcmon.collect import ScanConfig, procfs
from ipcmon.export import ENV_EXPORT_DIR, ExportError, write_snapshot
from ipcmon.leaks import Leak, find_leaks
from ipcmon.model import Actor, MessageQueue, ShmSegment, Snapshot
from ipcmon.safe import printable
from ipcmon.text import signal_name
from ipcmon.ui.messages import ActionDone, OpenProcess, OpenRow, SignalProcess
from ipcmon.ui.screens.choose import ChooseProcess
from ipcmon.ui.screens.confirm import ConfirmScreen
from ipcmon.ui.screens.help import HelpScreen
from ipcmon.ui.screens.process import ProcessScreen
from ipcmon.ui.screens.signal import SignalPicker
from ipcmon.ui.view.rows import record_name
from ipcmon.ui.view.table import Row
from ipcmon.ui.views import VIEWS, NavigatingApp
from ipcmon.ui.widgets.object_view import ESCAPED_DIGITS
from ipcmon.who import Sent, read_journal_of, sent_text, with_live

RECEIVED_SHOWN = 3
"""Signals the process received last, listed in the signal picker."""


class ActingApp(NavigatingApp):
    """Key bindings, their actions and the dialogs they open (the dashboard's third layer)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        # As in htop, Ctrl+C quits, from anywhere: Textual binds it to a reminder to press Ctrl+Q instead (and, in
        # a text box, to copy). Textual turns the terminal's ISIG off, so Ctrl+C arrives as this key, not SIGINT.
        Binding("ctrl+c", "quit_now", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
        # Priority bindings run before the key is routed to the focused widget, so keys typed right after
        # "/" (or a view number) already reach the filter box of the new view; check_action lets them through
        # as text when a text box has the focus.
        Binding("slash", "filter", "Filter", priority=True),
        # Where there is no table to filter (the Overview, the Demos view) the footer leaves "/" out; the key says so.
        Binding("slash", "no_filter", show=False, priority=True),
        # Under --read-only the footer leaves out what would be refused (check_action): the same keys then run
        # the hidden bindings that say why, instead of doing nothing.
        Binding("k", "signal", "Signal"),
        Binding("k", "refuse('sending signals')", show=False),
        Binding("d", "remove", "Remove"),
        Binding("d", "refuse('removing objects')", show=False),
        Binding("c", "copy_path", "Copy path"),
        Binding("e", "export", "Export"),
        Binding("p,space", "toggle_pause", "Pause"),
        Binding("plus,equals_sign", "faster", "Faster"),
        Binding("minus", "slower", "Slower"),
        *(Binding(str(number), f"show_view('{view}')", title, show=False, priority=True)
          for number, (view, title) in enumerate(VIEWS, start=1)),
        # Escape and a view's digit read as one key (object_view.ESCAPED_DIGITS): the digit's view.
        *(Binding(name, f"show_view('{VIEWS[int(digit) - 1][0]}')", show=False, priority=True)
          for name, digit in ESCAPED_DIGITS.items() if 1 <= int(digit) <= len(VIEWS)),
    ]
    # Actions that need the main screen (not a dialog or the process view on top of it).
    MAIN_SCREEN_ACTIONS: ClassVar[frozenset[str]] = frozenset(
        {"quit", "help", "filter", "signal", "remove", "refuse", "copy_path", "export", "show_view"}
    )
    CHANGING_ACTIONS: ClassVar[frozenset[str]] = frozenset({"signal", "remove"})
    """Actions that change the system: refused, and left out of the footer, under --read-only."""
    OBJECT_ACTIONS: ClassVar[frozenset[str]] = frozenset({"filter", "signal", "remove", "copy_path"})
    """Actions on a table view's rows (2–6): left out of the footer in the Demos view, where they have nothing to act
    on (they only said so), so its own keys and the rest fit at 120 columns (issue 12)."""

    read_only: bool
    """--read-only or IPCMON_READ_ONLY: every action that changes the system is refused (set by IpcmonApp)."""
    scan_config: ScanConfig
    """How the fresh scan before a removal reads the system (set by IpcmonApp)."""
    export_dir: str
    """Where ``e`` writes the snapshot (set by IpcmonApp; ipcmon.export.export_dir() by default)."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # False hides the binding from the footer too (None would show it greyed out).
        if action in ("filter", "no_filter", "show_view") and isinstance(self.focused, Input):
            return False  # the key is text for the box
        if action in ("filter", "no_filter"):
            return (self.current_view() is None) == (action == "no_filter")
        if action in self.CHANGING_ACTIONS and self.read_only:
            return False
        if action == "refuse" and not self.read_only:
            return False
        if action in self.OBJECT_ACTIONS and self.active_view == "demos":
            return False
        return not (action in self.MAIN_SCREEN_ACTIONS and len(self.screen_stack) > 1)

    def action_quit_now(self) -> None:
        self.exit()

    def action_refuse(self, what: str) -> None:
        self._refuse_read_only(what)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.read_only))

    def action_filter(self) -> None:
        view = self.current_view()
        if view is None:
            self.action_no_filter()
            return
        view.open_filter()

    def action_no_filter(self) -> None:
        self.notify("Filtering works in the table views (2–6).", markup=False)

    def action_toggle_pause(self) -> None:
        self.toggle_pause()

    def action_faster(self) -> None:
        self.faster()

    def action_slower(self) -> None:
        self.slower()

    # --- the process view -------------------------------------------------------------------------------------

    def show_process(self, pid: int) -> None:
        screen = ProcessScreen(pid, read_only=self.read_only)
        self.push_screen(screen.data_bind(ActingApp.context, ActingApp.events, ActingApp.snapshot))

    @on(OpenProcess)
    def _open_process(self, message: OpenProcess) -> None:
        self.show_process(message.pid)

    @on(OpenRow)
    def _open_row(self, message: OpenRow) -> None:
        self._choose_and_show(message.row)

    @work(group="dialog", exclusive=True)
    async def _choose_and_show(self, row: Row) -> None:
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

    # --- signal -----------------------------------------------------------------------------------------------

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
        living = [pid for pid in row.pids if self._exited(pid) is None]
        if row.pids and not living:
            # Every process of the row has ended since the scan: say so now, before any picker or question.
            self._refuse_exited(row.pids[0] if len(row.pids) == 1 else None)
            return
        pid = await self._choose_pid(replace(row, pids=tuple(living)), "Send a signal")
        if pid is not None:
            await self._signal_flow(pid)

    def _exited(self, pid: int) -> str | None:
        """Why `pid` can no longer be signalled (it has exited, or its pid now names another process); None
        while the process the last scan saw still runs (or cannot be checked).

        Read from /proc/PID/stat now: the last scan may be up to an interval old.
        """
        process = self.context.processes.get(pid)
        try:
            stat = procfs.parse_stat(procfs.read_bytes(f"{self.scan_config.proc}/{pid}/stat"))
        except procfs.Gone:
            return f"process {pid} has exited"
        except (procfs.Denied, ValueError, IndexError):
            return None  # the signal itself will find out
        if process is not None and stat.start_ticks != process.start_ticks:
            return f"process {pid} has exited (pid {pid} now names another process)"
        if stat.state in ("Z", "X"):
            return f"process {pid} has exited (a zombie: it waits for its parent to reap it)"
        return None

    def _refuse_exited(self, pid: int | None) -> None:
        reason = self._exited(pid) if pid is not None else "every process that held it has exited"
        self.notify(f"No signal sent: {reason}.", title="Refused", severity="warning", markup=False)

    @on(SignalProcess)
    def _signal_process(self, message: SignalProcess) -> None:
        """k in the process view."""
        if self._refuse_read_only("sending signals"):
            return
        self._signal_pid(message.pid)

    @work(group="dialog", exclusive=True)
    async def _signal_pid(self, pid: int) -> None:
        if self._exited(pid) is not None:
            self._refuse_exited(pid)
            return
        await self._signal_flow(pid)

    def last_received(self, pid: int) -> list[str]:
        """The last signals sent to pid, newest first, in words (the signal picker lists them); [] when the dashboard
        does not know senders."""
        if not self.who.known:
            return []
        process = self.context.processes.get(pid)
        sents = self.who.sent_to(pid, process.start_time if process is not None else None)
        return [sent_text(sent) for sent in sents[:RECEIVED_SHOWN]]

    async def _signal_flow(self, pid: int) -> None:
        process = self.context.processes.get(pid)
        target = Text(f"process {pid} ")
        target.append(printable(process.comm) if process else "?", style="bold")
        signo = await self.push_screen_wait(SignalPicker(target, received=self.last_received(pid)))
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
        outcome = actions.send_signal(pid, start_ticks, signo, comm)
        text = f"{outcome.text} ({outcome.log_problem})" if outcome.log_problem else outcome.text
        self.post_message(ActionDone(text, ok=outcome.sent))

    # --- remove -----------------------------------------------------------------------------------------------

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
            if leak is not None and leak.refusal:  # not this user's to remove, or deleted but held
                reason = printable(leak.refusal)
            elif _maybe_held(row.record):
                reason = ("it may be held by a process you cannot read (its state ends in ?), so it is not known to "
                          "be orphaned; run as root to see every holder")
            elif holders:
                reason = f"it is held by {holders}"
            else:
                reason = "only orphaned segments, semaphores and queues can be removed"
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
        (removal,) = actions.remove_orphans([leak], self.scan_config)
        removed, reason = removal.removed, removal.reason
        name = printable(leak.name)
        text = f"Removed {name}." if removed else f"Refused: {name} was not removed: {reason}."
        self.post_message(ActionDone(text, ok=removed))

    @on(ActionDone)
    def _action_done(self, message: ActionDone) -> None:
        self.notify(message.text, severity="information" if message.ok else "error", markup=False)
        self.request_scan()

    # --- copy and export --------------------------------------------------------------------------------------

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
        # What this dashboard saw of who did it is read here (the event log is the UI thread's); the journal, with a
        # reader of the worker's own, there.
        created, sent = self.who.seen(self.snapshot, self.event_log) if self.who.known else ([], {})
        self._export(self.snapshot, created, sent)

    @work(thread=True, group="action", exit_on_error=False)
    def _export(self, snapshot: Snapshot, created: list[tuple[str, Actor, float, str]],
                sent: dict[int, tuple[Sent, ...]]) -> None:
        known = (with_live(read_journal_of(snapshot, self.who.path, snapshot.signals), created, sent)
                 if self.who.known else None)
        try:
            path = write_snapshot(snapshot, self.export_dir, known=known)
        except ExportError as error:
            self.post_message(ActionDone(f"Export failed: {printable(str(error))}. Set {ENV_EXPORT_DIR} to choose "
                                         "another directory.", ok=False))
            return
        self.post_message(ActionDone(f"Exported the snapshot to {printable(path)}"))


def _maybe_held(record: object) -> bool:
    """A segment or queue that a process this user cannot read might hold (health's unknown rule: ``orphaned?``)."""
    if isinstance(record, ShmSegment):
        return record.state == "orphaned?"
    return isinstance(record, MessageQueue) and record.maybe_held
