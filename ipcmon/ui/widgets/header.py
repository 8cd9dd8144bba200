"""The status line at the top: host, kernel, what ipcmon can see, shm fill, read-only, refresh interval, pause state."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from ipcmon.health import budget_threshold, mount_level
from ipcmon.model import Snapshot
from ipcmon.safe import counted, printable
from ipcmon.text import fill_cell, human_bytes

DROP_ORDER = ("kernel", "interval", "shm-size", "hidden", "host", "shm", "shm-others")
"""Parts left out, in this order, while the line is wider than the terminal (issue 12: at 80 columns the scan
time, the pause state and read-only stay)."""


class StatusHeader(Static):
    """Bound to the app's snapshot, interval and paused reactives; no clock, so snapshots are deterministic."""

    # repaint=False: redrawn (watch_snapshot) only when a scan changes what the line says, not at every scan.
    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True, repaint=False)
    interval: reactive[float] = reactive(1.0)
    paused: reactive[bool] = reactive(False)
    scan_error: reactive[str] = reactive("")

    def __init__(
        self, host: str, kernel: str, is_root: bool, *, read_only: bool = False, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.host = host
        self.kernel = kernel
        self.is_root = is_root
        self.read_only = read_only
        """--read-only (or IPCMON_READ_ONLY): shown as "read-only", since k and d refuse."""

    def parts(self) -> list[tuple[str, Text]]:
        """The line's parts in order, each named (DROP_ORDER names those that may go)."""
        parts = [("name", Text(" ipcmon ", style="bold reverse")),
                 ("host", Text(f"  {printable(self.host)}", style="bold")),
                 ("kernel", Text(f"  Linux {printable(self.kernel)}"))]
        hidden = self.snapshot.hidden_processes if self.snapshot else 0
        if self.is_root:
            parts.append(("root", Text("  root")))
            if hidden:
                unreadable = f", {counted(hidden, 'process', 'processes')} unreadable"
                parts.append(("hidden", Text(unreadable, style="yellow")))
        else:
            parts.append(("root", Text(f"  not root: {counted(hidden, 'process', 'processes')} unreadable",
                                       style="bold yellow")))
        parts.extend(self.shm_parts())
        if self.read_only:
            parts.append(("read-only", Text("  read-only", style="bold reverse cyan")))
        parts.append(("interval", Text(f"  every {self.interval:g}s")))
        if self.paused:
            parts.append(("live", Text("  ⏸ PAUSED", style="bold reverse yellow")))
        else:
            parts.append(("live", Text("  ● live", style="green")))
        if self.snapshot is not None:
            parts.append(("scan", Text(f"  scan {self.snapshot.scan_seconds * 1000:.0f} ms", style="dim")))
        if self.scan_error:
            parts.append(("error", Text(f"  scan failed: {printable(self.scan_error)}", style="bold red")))
        return parts

    def shm_parts(self) -> list[tuple[str, Text]]:
        """``  /dev/shm 94%`` and `` of 64M`` (which goes first when the line is too wide) for the shm directory's
        tmpfs (the first shm mount), yellow from the budget threshold, red when full (health.mount_level); none when
        the scan did not read the budgets (the Overview's Budgets card says so) or found no mount."""
        capacity = self.snapshot.capacity if self.snapshot is not None else None
        if capacity is None or not capacity.shm_mounts:
            return []
        mount = capacity.shm_mounts[0]
        level = mount_level(mount)
        style = "bold red" if level == "bad" else "yellow" if level == "warn" else ""
        parts = [("shm", Text(f"  {printable(mount.path)} {fill_cell(mount.fill)}", style=style)),
                 ("shm-size", Text(f" of {human_bytes(mount.size)}", style=style))]
        # Containers' /dev/shm (issue 15): said only when one is past the threshold, as "+1 shm mount ≥90%".
        levels = [mount_level(other) for other in capacity.shm_mounts[1:]]
        past = [other_level for other_level in levels if other_level is not None]
        if past:
            worst = "bold red" if "bad" in past else "yellow"
            mounts = counted(len(past), "shm mount", "shm mounts")
            parts.append(("shm-others", Text(f"  +{mounts} ≥{budget_threshold():.0%}", style=worst)))
        return parts

    def render(self) -> Text:
        parts = self.parts()
        width = self.size.width
        for name in DROP_ORDER:
            if not width or sum(part.cell_len for _, part in parts) <= width:
                break
            parts = [(key, part) for key, part in parts if key != name]
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for _, part in parts:
            text.append_text(part)
        return text

    _said: tuple[tuple[str, str, str], ...] = ()
    """What the line says, as last drawn: each part's name, words and style."""

    def watch_snapshot(self) -> None:
        said = tuple((name, part.plain, str(part.style)) for name, part in self.parts())
        if said != self._said:
            self._said = said
            self.refresh()

    def watch_paused(self, paused: bool) -> None:
        self.set_class(paused, "-paused")
