"""Command palette entries: jump to a pid or an object, switch views, and the dashboard's actions.

Jumps are posted to the App as the same messages the views post (``Goto``, ``OpenProcess``); the provider
reads the App's snapshot, so it and the App are the one import cycle left in the dashboard.

Names come from the system, so every prompt is a ``rich.text.Text`` (the palette parses ``str`` prompts,
``Matcher.highlight`` results and help text as markup); help strings here are constants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual.command import DiscoveryHit, Hit, Hits, Matcher, Provider

from ipcmon.model import sysv_label
from ipcmon.safe import printable, shorten
from ipcmon.ui.messages import Goto, OpenProcess
from ipcmon.ui.views import VIEWS

if TYPE_CHECKING:
    from ipcmon.ui.app import IpcmonApp

Command = tuple[str, Callable[[], object], str]
"""(plain printable text, callback, constant help)."""


class IpcmonCommands(Provider):
    """Views, actions (by their key's action) and every process and object of the current snapshot."""

    @property
    def dashboard(self) -> IpcmonApp:
        return cast("IpcmonApp", self.app)

    def _static_commands(self) -> Iterator[Command]:
        app = self.dashboard
        for view_id, title in VIEWS:
            yield f"View: {title}", partial(app.post_message, Goto(view_id)), "switch to this view"
        yield "Pause or resume refreshing", app.action_toggle_pause, "p or space"
        yield "Refresh faster", app.action_faster, "+"
        yield "Refresh slower", app.action_slower, "-"
        yield "Export snapshot to JSON", app.action_export, "e: writes ipcmon-snapshot-….json"
        yield "Copy path of the selected object", app.action_copy_path, "c"
        yield "Send a signal to the selected process", app.action_signal, "k (confirm first)"
        yield "Remove the selected orphaned object", app.action_remove, "d (re-checked and confirmed)"
        yield "Help", app.action_help, "?"

    def _dynamic_commands(self) -> Iterator[Command]:
        app = self.dashboard
        snapshot = app.snapshot
        if snapshot is None:
            return

        def goto(view: str, key: str) -> Callable[[], object]:
            return partial(app.post_message, Goto(view, key))

        for process in snapshot.processes:
            command = shorten(printable(" ".join(process.cmdline)), 60)
            yield (
                f"Process {process.pid} {printable(process.comm)}  {command}".rstrip(),
                partial(app.post_message, OpenProcess(process.pid)),
                "open the process view",
            )
        for segment in snapshot.shm:
            yield f"{segment.kind} {printable(segment.name)}", goto("shm", segment.object_key), "show in Shared memory"
        for region in snapshot.regions:
            yield f"{region.kind} {printable(region.name)}", goto("shm", region.object_key), "show in Shared memory"
        for shm in snapshot.sysv.shm:
            yield f"sysv-shm {sysv_label(shm.key, shm.id)}", goto("shm", shm.object_key), "show in Shared memory"
        for queue in snapshot.mqueues:
            yield f"mqueue {printable(queue.name)}", goto("mqueue", queue.object_key), "show in Message queues"
        for pipe in snapshot.pipes:
            yield f"{pipe.kind} {printable(pipe.label)}", goto("pipes", pipe.object_key), "show in Pipes & FIFOs"

    async def discover(self) -> Hits:
        for text, callback, help_text in self._static_commands():
            yield DiscoveryHit(Text(text), callback, text=text, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for commands in (self._static_commands(), self._dynamic_commands()):
            for text, callback, help_text in commands:
                score = matcher.match(text)
                if score > 0:
                    yield Hit(score, highlighted(matcher, text), callback, text=text, help=help_text)


def highlighted(matcher: Matcher, text: str) -> Text:
    """The matched characters in bold, without parsing the text as markup (Matcher.highlight would)."""
    result = Text(text)
    _, offsets = matcher.fuzzy_search.match(matcher.query, text)
    for offset in offsets:
        result.stylize("bold reverse", offset, offset + 1)
    return result
