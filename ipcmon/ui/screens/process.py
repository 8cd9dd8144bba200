"""The process view: what one process holds, what it waits on, and its signal masks thread by thread."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from ipcmon.collect.capacity import shmem_mappings, shmem_usage
from ipcmon.model import Event, Snapshot
from ipcmon.ui.messages import SignalProcess
from ipcmon.ui.state import empty_context
from ipcmon.ui.view.describe import describe_process, hanging
from ipcmon.ui.view.table import Context

HISTORY_SHOWN = 50
"""Events of the process shown (the newest)."""


def process_history(events: Sequence[Event], pid: int) -> list[Event]:
    """One process's events, oldest first (the last HISTORY_SHOWN), from a log that is newest first."""
    return [event for event in reversed(events) if event.pid == pid][-HISTORY_SHOWN:]


class ProcessScreen(ModalScreen[None]):
    """Follows the live snapshot while open; says so plainly when the process exits.

    Bound to the App's ``context``, ``events`` and ``snapshot`` (bind ``snapshot`` last: it redraws);
    ``k`` posts :class:`~ipcmon.ui.messages.SignalProcess`.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss(None)", "Back"),
        Binding("k", "signal", "Signal"),
        # Under --read-only, or once the process has exited, the footer leaves k out; the key still asks, and the
        # App says why it refuses.
        Binding("k", "signal_refused", show=False),
    ]

    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True)
    context: reactive[Context] = reactive(empty_context, always_update=True)
    events: reactive[Sequence[Event]] = reactive(tuple, always_update=True)

    def __init__(self, pid: int, *, read_only: bool = False) -> None:
        super().__init__(classes="process-screen")
        self.pid = pid
        self.read_only = read_only
        """--read-only: ``k`` is not offered in the footer (the App refuses it)."""
        self.exited = False
        """The process is not in the latest snapshot: ``k`` is not offered either (the App says why)."""
        self._text = Text("")
        """What the view says, one line per label and value, before it is wrapped."""

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="process-body") as body:
            body.border_title = f"Process {self.pid}"
            yield Static(Text(""), id="process-text")
        yield Footer()

    def on_mount(self) -> None:
        self.watch_snapshot(self.snapshot)
        self.call_after_refresh(self._show)  # its width is known once laid out

    def watch_snapshot(self, snapshot: Snapshot | None) -> None:
        if snapshot is None or not self.is_mounted:
            return
        # The bound values may arrive while the screen is being taken down (the dashboard quitting with the
        # process view open): its text is gone then, and there is nothing to draw.
        exited = all(process.pid != self.pid for process in snapshot.processes)
        if exited != self.exited:
            self.exited = exited
            self.refresh_bindings()
        self._text = describe_process(
            self.pid, self.context, process_history(self.events, self.pid),
            shmem=None if exited else shmem_usage(self.pid),
            mappings=None if exited else shmem_mappings(self.pid, snapshot.shm_dir or "/dev/shm"))
        self._show()

    def _show(self) -> None:
        """The text wrapped to the body, each wrapped line under its value (describe.hanging), as the detail pane."""
        for body in self.query(".process-body").results(VerticalScroll):
            # The room a scrollbar takes is kept, so that one coming rewraps nothing.
            width = body.scrollable_content_region.width - body.styles.scrollbar_size_vertical
            text = hanging(self._text, self.app.console, width) if width > 0 else self._text
            for shown in body.query("#process-text").results(Static):
                shown.update(text)

    def on_resize(self) -> None:
        self._show()

    @property
    def text(self) -> Text:
        """What the view says, one line per label and value, before it is wrapped to the screen."""
        return self._text

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "signal":
            return not (self.read_only or self.exited)
        if action == "signal_refused":
            return self.read_only or self.exited
        return True

    def action_signal(self) -> None:
        self.post_message(SignalProcess(self.pid))

    def action_signal_refused(self) -> None:
        self.post_message(SignalProcess(self.pid))
