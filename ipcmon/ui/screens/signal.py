"""The signal picker: every signal by name, real-time ones included, filtered as you type."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from ipcmon.safe import printable
from ipcmon.text import libc_reserved, signal_name


def sendable_signals() -> list[tuple[int, str, str]]:
    """(number, name, description) for 1..SIGRTMAX, without the two glibc keeps for threads (SIG32, SIG33)."""
    result = []
    for number in range(1, int(signal.SIGRTMAX) + 1):
        if libc_reserved(number):
            continue
        name = signal_name(number)
        description = signal.strsignal(number) or ""
        result.append((number, name, description))
    return result


class SignalPicker(ModalScreen[int | None]):
    """Dismisses with the chosen signal number, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("down", "focus_list", "List", show=False),
    ]

    def __init__(self, target: Text, default: int = signal.SIGTERM, received: Sequence[str] = ()) -> None:
        """received: the last signals sent to the target, newest first, in words (``SIGTERM from 4321 bash at
        12:03:07: delivered``; raw, shown inert), listed above the picker; () lists nothing."""
        super().__init__(classes="dialog-screen")
        self.target = target
        self.received = tuple(received)
        self.default = default
        self.signals = sendable_signals()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog signal-dialog") as dialog:
            dialog.border_title = "Send a signal"
            yield Static(Text("to ").append_text(self.target), classes="question")
            if self.received:
                lines = Text("last received:", end="")
                for said in self.received:
                    lines.append("\n  " + printable(said))
                yield Static(lines, classes="hint", id="signal-received")
            yield Input(placeholder="type to filter: term, usr1, rtmin+3, 9…", id="signal-filter")
            yield OptionList(id="signal-list")
            yield Static(Text("Enter chooses, Escape cancels; you confirm before anything is sent."), classes="hint")

    def on_mount(self) -> None:
        self._fill("")
        self.query_one("#signal-filter", Input).focus()

    def _fill(self, query: str) -> None:
        query = query.strip().upper().removeprefix("SIG")
        options = self.query_one("#signal-list", OptionList)
        options.clear_options()
        highlight = 0
        shown = 0
        for number, name, description in self.signals:
            if query and not (query in name[3:] or query == str(number) or query.lower() in description.lower()):
                continue
            options.add_option(Option(Text(f"{number:>3}  {name:<13} {description}"), id=str(number)))
            if number == self.default and not query:
                highlight = shown
            shown += 1
        if shown:
            options.highlighted = highlight

    @on(Input.Changed, "#signal-filter")
    def _filtered(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#signal-filter")
    def _submitted(self, event: Input.Submitted) -> None:
        options = self.query_one("#signal-list", OptionList)
        if options.highlighted is not None:
            option = options.get_option_at_index(options.highlighted)
            self.dismiss(int(option.id or 0))

    @on(OptionList.OptionSelected, "#signal-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id or 0))

    def action_focus_list(self) -> None:
        self.query_one("#signal-list", OptionList).focus()
