"""The status line at the top: host, kernel, what ipcmon can see, refresh interval and pause state."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from ipcmon.model import Snapshot
from ipcmon.safe import counted, printable


class StatusHeader(Static):
    """Bound to the app's snapshot, interval and paused reactives; no clock, so snapshots are deterministic."""

    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True)
    interval: reactive[float] = reactive(1.0)
    paused: reactive[bool] = reactive(False)
    scan_error: reactive[str] = reactive("")

    def __init__(self, host: str, kernel: str, is_root: bool, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.host = host
        self.kernel = kernel
        self.is_root = is_root

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append(" ipcmon ", style="bold reverse")
        text.append(f"  {printable(self.host)}", style="bold")
        text.append(f"  Linux {printable(self.kernel)}")
        hidden = self.snapshot.hidden_processes if self.snapshot else 0
        if self.is_root:
            text.append("  root")
            if hidden:
                text.append(f", {counted(hidden, 'process', 'processes')} hidden", style="yellow")
        else:
            text.append(f"  not root: {counted(hidden, 'process', 'processes')} hidden", style="bold yellow")
        text.append(f"  every {self.interval:g}s")
        if self.paused:
            text.append("  ⏸ PAUSED", style="bold reverse yellow")
        else:
            text.append("  ● live", style="green")
        if self.snapshot is not None:
            text.append(f"  scan {self.snapshot.scan_seconds * 1000:.0f} ms", style="dim")
        if self.scan_error:
            text.append(f"  scan failed: {printable(self.scan_error)}", style="bold red")
        return text

    def watch_paused(self, paused: bool) -> None:
        self.set_class(paused, "-paused")
