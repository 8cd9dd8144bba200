"""SIGTERM, SIGHUP and SIGINT around the dashboard's run, in the process that runs it from the command line.

The App turns each into a quit while it runs (IpcmonApp._handle_exit_signals: the terminal restored, the demos
stopped, exit status 0). Before it installs that handling (Python and Textual still starting, about 0.3 s) and
after it gives the signals back (the last step of its shutdown, before Textual restores the terminal), Python's
defaults killed the process: status 143, the terminal half restored. :class:`HeldSignals` covers both windows.

Textual-free: the CLI holds the signals before it imports Textual.
"""

from __future__ import annotations

import signal
from types import FrameType

EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class HeldSignals:
    """The exit signals noted, never fatal: :meth:`hold` installs a handler that only notes each one in
    :attr:`received` (signal numbers, in order). The App exits at once when one came before it started, and holds
    them again when it gives them back; the CLI ignores them (:meth:`ignore`) once the App has returned.
    :meth:`release` puts back the handlers that were there before the first hold or ignore (a test's process; the
    CLI's ends instead)."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._before: dict[int, object] = {}

    def hold(self) -> None:
        for signo in EXIT_SIGNALS:
            previous = signal.signal(signo, self._note)
            self._before.setdefault(signo, previous)

    def ignore(self) -> None:
        """Ignore them from now on (SIG_IGN), for a process about to exit: Python's finalization puts SIG_DFL back
        for a signal it handles in Python, not for an ignored one, and a SIGTERM while it finalizes (threads joined,
        atexit) killed the process with status 143 after it had returned 0."""
        for signo in EXIT_SIGNALS:
            previous = signal.signal(signo, signal.SIG_IGN)
            self._before.setdefault(signo, previous)

    def release(self) -> None:
        for signo, previous in self._before.items():
            signal.signal(signo, previous)  # type: ignore[arg-type]  # what signal.signal returned for it
        self._before.clear()

    def _note(self, signo: int, _frame: FrameType | None) -> None:
        self.received.append(signo)
