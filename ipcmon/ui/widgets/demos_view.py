"""The Demos view: the demo workloads, started and stopped from the dashboard, each with its narration (issue 5).

Lesson demos run with ``--loop`` here, so the objects keep going through their lifecycle while you watch.
The demos' processes and objects carry a ◆ badge in the other views; ``g`` jumps to the view that shows the
selected demo's objects, cursor on the first of them. The App runs the demos: this view shows the bound
``demo_processes`` and posts ``StartDemo``, ``StopDemo`` and ``Goto``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.events import Resize
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import DataTable, RichLog, Static

from ipcmon.demos import DEMOS, LESSONS, DemoProcess
from ipcmon.model import Snapshot
from ipcmon.safe import printable
from ipcmon.ui.messages import Goto, ShowFiltered, StartDemo, StopDemo
from ipcmon.ui.state import empty_context
from ipcmon.ui.view.table import Cell, Column, Context, Row, text_cell
from ipcmon.ui.widgets.tables import ObjectTable

NARRATION_LINES = 500
"""Narration kept per demo."""

DEMO_VIEWS: dict[str, str] = {
    "shm": "shm",
    "memfd": "shm",
    "sysv-shm": "shm",
    "mqueue": "mqueue",
    "pipe": "pipes",
    "pipeline": "pipes",
    "signals": "signals",
    "leak": "shm",
    "stress": "overview",
}
"""Where each demo's objects show."""

DEMO_COLUMNS = (
    Column("name", "DEMO"),
    Column("state", "STATE"),
    Column("pid", "PID"),
    Column("processes", "PROCS"),
    Column("objects", "OBJECTS"),
    Column("description", "WHAT IT SHOWS"),
)


def expand_names(names: Iterable[str]) -> list[str]:
    """--demo values: names, or 'all' for every lesson; unknown names raise ValueError."""
    result: list[str] = []
    for name in names:
        for one in LESSONS if name == "all" else (name,):
            if one not in DEMOS:
                raise ValueError(f"no demo {one!r} (choose from {', '.join(DEMOS)}, or all)")
            if one not in result:
                result.append(one)
    return result


def descendants(snapshot: Snapshot, roots: Iterable[int]) -> frozenset[int]:
    """The given pids and every process below them in the snapshot's process tree."""
    children: dict[int, list[int]] = {}
    for process in snapshot.processes:
        children.setdefault(process.ppid, []).append(process.pid)
    found = [pid for pid in roots]
    for pid in found:  # grows while it is walked: breadth first
        found.extend(children.get(pid, ()))
    return frozenset(found)


def running_demo_pids(demos: Iterable[DemoProcess], snapshot: Snapshot) -> frozenset[int]:
    """Processes of the demos started from this dashboard (a running demo is unreaped, so its pid is its own)."""
    roots = [demo.pid for demo in demos if demo.running]
    return descendants(snapshot, roots) if roots else frozenset()


def demo_object_keys(snapshot: Snapshot, demo: DemoProcess, pids: frozenset[int]) -> Iterator[tuple[str, str]]:
    """(view, row key) of every object the demo made or holds, in view order."""
    for segment in snapshot.shm:
        if segment.name.startswith(demo.prefix) or any(h.pid in pids for h in segment.holders):
            yield "shm", segment.object_key
    for region in snapshot.regions:
        if any(h.pid in pids for h in region.holders):
            yield "shm", region.object_key
    for shm in snapshot.sysv.shm:
        if shm.cpid in pids or any(h.pid in pids for h in shm.holders):
            yield "shm", shm.object_key
    for queue in snapshot.mqueues:
        if queue.name.startswith(demo.prefix) or any(h.pid in pids for h in queue.holders):
            yield "mqueue", queue.object_key
    for pipe in snapshot.pipes:
        if any(end.pid in pids for end in (*pipe.readers, *pipe.writers)):
            yield "pipes", pipe.object_key
    for signals in snapshot.signals:
        if signals.pid in pids:
            yield "signals", signals.object_key


class NarrationLog(RichLog):
    """A demo's narration, wrapped to the pane's width, and wrapped again when the width changes.

    RichLog, given no width, wraps each line once, as it is written, at the console's width (80 columns in a
    wide pane) and never narrower than its ``min_width``, 78 (issue 12: narration was hard-wrapped at 80).
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=NARRATION_LINES, wrap=True, markup=False)
        self._written: deque[Text] = deque(maxlen=NARRATION_LINES)
        self._width = 0

    def add(self, text: Text) -> None:
        """Write a line (kept, to be wrapped again after a resize; written once the width is known)."""
        self._written.append(text)
        if self._width:
            self.write(text, width=self._width)

    def clear_lines(self) -> None:
        self._written.clear()
        self.clear()

    def on_resize(self, event: Resize) -> None:
        super().on_resize(event)
        width = self.scrollable_content_region.width
        if width and width != self._width:
            self._width = width
            self.clear()
            for text in self._written:
                self.write(text, width=width)


def demos_hint(read_only: bool) -> str:
    """The Demos view's banner: what Enter does (under --read-only it only stops a demo: starting one is refused)."""
    enter = ("Read-only: demos start with --demo NAME only; Enter stops the selected one" if read_only
             else "Enter starts or stops the selected demo")
    return f"{enter}; g shows its objects; ◆ marks them elsewhere."


class DemosView(Vertical):
    """Lists the demos; Enter starts or stops the selected one; its narration shows below."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("g", "go", "Show objects"),
    ]

    snapshot: reactive[Snapshot | None] = reactive(None, always_update=True, repaint=False)
    context: reactive[Context] = reactive(empty_context, always_update=True, repaint=False)
    demo_processes: reactive[dict[str, DemoProcess]] = reactive(dict, always_update=True, repaint=False)
    """The demos the App started, by name (the latest run of each)."""
    active_view: reactive[str] = reactive("overview", repaint=False)

    def __init__(self, *, read_only: bool = False) -> None:
        super().__init__(id="view-demos")
        self.read_only = read_only
        """--read-only: a demo starts only from the command line (``--demo NAME``); Enter still stops one."""
        self.narration: dict[str, deque[str]] = {name: deque(maxlen=NARRATION_LINES) for name in DEMOS}
        self._shown: str | None = None
        self._runs: dict[str, DemoProcess] = {}
        """The run of each demo whose narration is kept (a new run starts a new narration)."""
        self._stale = False
        """The rows wait for the view to be shown (a scan or a narration line came while it was hidden)."""
        self._drain_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(demos_hint(self.read_only)), classes="hint")
        yield ObjectTable(DEMO_COLUMNS, id="demo-list")
        yield NarrationLog(id="demo-narration")

    def on_mount(self) -> None:
        self.refresh_rows()
        # Paused while no demo narrates: an idle dashboard wakes only for its scans (issue 12, idle cost).
        self._drain_timer = self.set_interval(0.25, self._drain, pause=True)
        self._drain_while_narrated()

    @property
    def shown(self) -> bool:
        return self.active_view == "demos"

    def watch_snapshot(self, snapshot: Snapshot | None) -> None:
        # Hidden, the rows wait: each scan walked every running demo's descendants for a table no one saw.
        self._sync_rows()

    def watch_active_view(self, view: str) -> None:
        if self._stale:
            self._sync_rows()

    def _sync_rows(self) -> None:
        if not self.is_mounted:
            return
        self._stale = not self.shown
        if self.shown:
            self.table.sync(self._rows())

    def watch_demo_processes(self, demos: dict[str, DemoProcess]) -> None:
        for name, process in demos.items():
            if self._runs.get(name) is not process:
                self._runs[name] = process
                self.narration[name].clear()
                if name == self._shown:
                    self._shown = None
        if self.is_mounted:
            self.refresh_rows()
            self._drain_while_narrated()

    def _drain_while_narrated(self) -> None:
        """Run the narration timer while a demo may still write a line (its narration not finished, or lines not
        yet taken), pause it otherwise."""
        if self._drain_timer is None:
            return
        if any(not process.finished.is_set() or not process.lines.empty()
               for process in self.demo_processes.values()):
            self._drain_timer.resume()
        else:
            self._drain_timer.pause()

    @property
    def table(self) -> ObjectTable:
        return self.query_one("#demo-list", ObjectTable)

    def refresh_rows(self) -> None:
        self.table.sync(self._rows())
        self._show_narration()

    def _rows(self) -> Iterator[Row]:
        snapshot = self.snapshot
        palette = self.context.palette
        for index, (name, demo) in enumerate(DEMOS.items()):
            process = self.demo_processes.get(name)
            pids: frozenset[int] = frozenset()
            objects = 0
            if process is not None and process.running and snapshot is not None:
                pids = descendants(snapshot, (process.pid,))
                objects = sum(1 for _ in demo_object_keys(snapshot, process, pids))
            if process is None:
                state, style = "stopped", palette.muted
            elif process.running:
                state, style = "running", palette.good
            else:
                code = process.returncode
                state, style = f"ended ({code})", palette.warn if code else palette.muted
            yield Row(
                key=name,
                cells=(
                    Cell(name, (0, index), "bold"),
                    text_cell(state, style),
                    text_cell(str(process.pid) if process is not None and process.running else "-"),
                    text_cell(str(len(pids)) if pids else "-"),
                    text_cell(str(objects) if pids else "-"),
                    text_cell(demo.description, width=90),
                ),
                record=demo,
                search=f"{name} {demo.description}".lower(),
                pids=tuple(sorted(pids)),
            )

    # --- narration --------------------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Move narration lines from the demos' reader threads into the view (UI thread only)."""
        changed = False
        for name, process in self.demo_processes.items():
            while not process.lines.empty():
                self.narration[name].append(process.lines.get_nowait())
                if name == self._shown:
                    self.query_one(NarrationLog).add(Text(printable(self.narration[name][-1])))
                changed = True
        if changed:
            self._sync_rows()
        self._drain_while_narrated()

    def _show_narration(self) -> None:
        row = self.table.current_row
        name = row.key if row is not None else None
        if name == self._shown:
            return
        self._shown = name
        log = self.query_one(NarrationLog)
        log.clear_lines()
        if name is None:
            return
        log.add(Text(f"{name}: {DEMOS[name].description}", style="bold"))
        for line in self.narration[name]:
            log.add(Text(printable(line)))
        if name not in self.demo_processes:
            start = f"start it with --demo {name} (read-only)" if self.read_only else "press Enter to start it"
            log.add(Text(f"not started: {start}", style="dim"))

    @on(DataTable.RowHighlighted, "#demo-list")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_narration()

    # --- start, stop, go ----------------------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#demo-list")
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        name = str(event.row_key.value)
        process = self.demo_processes.get(name)
        self.post_message(StopDemo(name) if process is not None and process.running else StartDemo(name))

    def action_go(self) -> None:
        """Show the view of the selected demo's objects, filtered to them (`demo_query`), cursor on the first."""
        row = self.table.current_row
        if row is None:
            return
        name = row.key
        view = DEMO_VIEWS.get(name, "overview")
        process = self.demo_processes.get(name)
        if process is None:  # nothing to filter by: another view, unfiltered, would pass others' objects off as its
            start = f"start it with --demo {name}" if self.read_only else "Enter starts it"
            self.notify(f"Demo {name} has not run from this dashboard: {start}, then g shows its objects.",
                        markup=False)
            return
        if view == "overview":
            self.post_message(Goto(view))
            self.notify(f"Demo {name} makes objects of every kind, more than one view lists: the Overview counts "
                        "them.", markup=False)
            return
        snapshot = self.snapshot
        keys: list[str] = []
        if snapshot is not None:
            pids = descendants(snapshot, (process.pid,)) if process.running else frozenset()
            keys = [key for where, key in demo_object_keys(snapshot, process, pids) if where == view]
        # An ended demo is filtered by its name prefix alone: what it left behind (leak's orphans) still shows.
        self.post_message(ShowFiltered(view, demo_query(process), keys[0] if keys else None))
        if not keys:
            self.notify(f"Demo {name} has no {view} objects right now.", markup=False)


def demo_query(process: DemoProcess) -> str:
    """The filter that keeps one demo's objects: named with its prefix (``ipcmon-demo-4242-``, which also matches
    a memfd's name without the slash), or held by a process running its script (every demo process is a fork of
    it, never an exec). Another run of the same script elsewhere matches too."""
    return f"{process.prefix.lstrip('/')}|demos/{process.demo.script}".lower()
