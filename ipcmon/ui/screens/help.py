"""The help screen: views, keys and what the colours mean."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, str], ...] = (
    ("1 … 7", "views: Overview, Shared memory, Message queues, Pipes & FIFOs, Signals, Events, Demos"),
    ("↑ ↓ PgUp PgDn Home End", "move in a table; the pane below shows the selected object"),
    ("Enter", "process view of the selected process (or of the holder you pick); on an alert, jump to it"),
    ("/", "filter the table: words match names, pids, commands; pid:123 kind:shm event:created …; a|b either"),
    ("Escape", "clear the filter, close a dialog"),
    ("x", "hide the note on processes that could not be fully read (it returns if another one appears)"),
    ("s / S", "sort by the next column / reverse; or click a column header"),
    ("k", "send a signal to the selected process (you confirm first)"),
    ("d", "remove the selected orphaned segment or queue (re-checked, confirmed; held objects refused)"),
    ("c", "copy the selected object's path"),
    ("e", "export the snapshot as JSON to $IPCMON_EXPORT_DIR, else $XDG_STATE_HOME/ipcmon or ~/.local/state/ipcmon"),
    ("p / space", "pause or resume refreshing"),
    ("+ / -", "refresh faster / slower"),
    ("g", "in Demos: the selected demo's objects, filtered to them (Escape clears)"),
    ("Enter (Demos)", "start or stop the selected demo"),
    ("Ctrl+P", "command palette: jump to a pid or object, switch views, actions, change theme"),
    ("?", "this help"),
    ("q / Ctrl+C", "quit"),
)

COLOURS: tuple[tuple[str, str], ...] = (
    ("orphaned", "nobody holds it any more: a leak, unless something will reopen it"),
    ("deleted", "unlinked but still held: its memory is pinned until the last holder lets go"),
    ("full", "a full queue or pipe: senders and writers block"),
    ("no-reader", "a pipe whose readers are gone: the next write gets SIGPIPE"),
    ("both-ends", "one process holds both ends of its pipe: its reader may never see EOF"),
    ("pending", "a signal raised but not delivered yet (blocked, or the process has not run)"),
    ("…?", "orphaned?, no-reader?: unknown, a process ipcmon cannot read may hold it (run as root to know)"),
    ("deadlocked", "waits on what only another waiter of its group (or itself) could release: none can go on"),
    ("blocked", "cannot go on until someone acts: a full pipe or queue, a FIFO nobody opens, a stuck child"),
    ("waiting", "idle in the ordinary way: reading while a writer lives, polling, a signal, a running child"),
    ("✖ / ▲", "hazard level: ✖ bad (a deadlock, a process blocked now, a leak), ▲ warn (bites only if used)"),
    ("◆", "made or held by an ipcmon demo"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss(None)", "Close")]

    def __init__(self, read_only: bool) -> None:
        super().__init__(classes="dialog-screen")
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold", no_wrap=True)
        keys.add_column()
        for key, meaning in KEYS:
            keys.add_row(Text(key), Text(meaning))
        states = Table.grid(padding=(0, 2))
        states.add_column(style="bold", no_wrap=True)
        states.add_column()
        for state, meaning in COLOURS:
            states.add_row(Text(state), Text(meaning))
        with VerticalScroll(classes="dialog help") as box:
            box.border_title = "ipcmon help"
            box.border_subtitle = "Escape closes"
            yield Static(Text("Keys", style="bold underline"))
            yield Static(keys)
            yield Static(Text("\nStates", style="bold underline"))
            yield Static(states)
            if self.read_only:
                yield Static(Text("\nRead-only: signalling and removing are disabled (--read-only).", style="bold"))
