"""The Demos view: the demo workloads, started and stopped from the dashboard, with their narration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

if TYPE_CHECKING:
    from ipcmon.ui.app import IpcmonApp


def running_demo_pids(app: IpcmonApp) -> frozenset[int]:
    return frozenset()


class DemosView(Vertical):
    def __init__(self, start: tuple[str, ...] = ()) -> None:
        super().__init__(id="view-demos")
        self.start = start

    def compose(self) -> ComposeResult:
        yield Static(Text("demos are not available yet"))
