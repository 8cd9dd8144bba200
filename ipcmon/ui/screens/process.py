"""The process view: what one process holds, what it waits on, and its signal masks thread by thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from ipcmon.model import Snapshot
from ipcmon.ui.view.describe import describe_process

if TYPE_CHECKING:
    from ipcmon.ui.app import IpcmonApp


class ProcessScreen(ModalScreen[None]):
    """Follows the live snapshot while open; says so plainly when the process exits."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss(None)", "Back"),
        Binding("k", "signal", "Signal"),
    ]

    def __init__(self, pid: int) -> None:
        super().__init__(classes="process-screen")
        self.pid = pid

    @property
    def dashboard(self) -> IpcmonApp:
        return cast("IpcmonApp", self.app)

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="process-body") as body:
            body.border_title = f"Process {self.pid}"
            yield Static(Text(""), id="process-text")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.dashboard, "snapshot", self._show)

    def _show(self, snapshot: Snapshot | None) -> None:
        if snapshot is None:
            return
        ctx = self.dashboard.context
        text = describe_process(self.pid, ctx, self.dashboard.history_for_pid(self.pid))
        self.query_one("#process-text", Static).update(text)

    def action_signal(self) -> None:
        self.dashboard.signal_pid(self.pid)
