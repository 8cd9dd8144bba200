"""The dashboard App and its factory: the views composed and bound to the App's state, and the demos it runs.

The App is built in layers, each a module: ``refresh.py`` (scans and inotify → the App-level reactives),
``views.py`` (the views and moving between them), ``key_actions.py`` (keys, dialogs, system-changing flows),
and this one (layout, demos, start and stop). Widgets and screens never import it: data comes down by
``data_bind``, intentions come up as messages (``messages.py``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any, TextIO

from textual import on, work
from textual.app import App, ComposeResult
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.widgets import Input, TabPane

from ipcmon import actions, export
from ipcmon.collect import ScanConfig
from ipcmon.demos import DEMOS, DemoProcess
from ipcmon.model import KINDS
from ipcmon.text import PlaceSelector
from ipcmon.ui.commands import IpcmonCommands
from ipcmon.ui.exit_signals import EXIT_SIGNALS, HeldSignals
from ipcmon.ui.feed import Feed, SnapshotSource, SourceFeed
from ipcmon.ui.key_actions import ActingApp
from ipcmon.ui.messages import DemoStopped, ShowFiltered, StartDemo, StopDemo
from ipcmon.ui.refresh import HISTORY_EVENTS
from ipcmon.ui.view.actors import Attributions
from ipcmon.ui.views import OBJECT_SPECS, Views
from ipcmon.ui.widgets.demos_view import DemosView, expand_names
from ipcmon.ui.widgets.events_view import EventsView
from ipcmon.ui.widgets.footer import SteadyFooter
from ipcmon.ui.widgets.header import StatusHeader
from ipcmon.ui.widgets.object_view import ObjectView
from ipcmon.ui.widgets.overview import Overview

"""Signals that end the dashboard cleanly: the terminal restored, the demos stopped, exit status 0."""


class _TerminalOutput:
    """The terminal as Textual writes to it, whose writes and flushes never raise: once the terminal is gone (a
    closed window hangs it up: EIO) what is written is dropped.

    Textual writes from a thread that dies at the first error, and the App then blocks for ever on that thread's
    full queue: the SIGHUP that follows was never handled, and the demos were never stopped (issue 12).
    """

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self._file.write(text)
            except OSError:
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._file.flush()
            except OSError:
                self.gone = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


class _HangupSafeDriver(LinuxDriver):
    """Textual's Linux driver, writing through :class:`_TerminalOutput`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._file is not None:  # None: Python was started without stderr
            self._file = _TerminalOutput(self._file)  # type: ignore[assignment]  # a file in all Textual uses


class IpcmonApp(ActingApp):
    """Live view of every IPC mechanism. Build it with :func:`make_app`."""

    CSS_PATH = "ipcmon.tcss"
    TITLE = "ipcmon"
    COMMANDS = App.COMMANDS | {IpcmonCommands}

    def __init__(
        self,
        feed: Feed,
        *,
        interval: float = 1.0,
        read_only: bool = False,
        scan_config: ScanConfig = ScanConfig(),
        host: str | None = None,
        kernel: str | None = None,
        is_root: bool | None = None,
        export_dir: str | None = None,
        demos: Sequence[str] = (),
        demo_step: float | None = None,
        history: int = HISTORY_EVENTS,
        who: Attributions | None = None,
        freeze_gc: bool = False,
        held: HeldSignals | None = None,
    ) -> None:
        super().__init__(feed, interval=interval, history=history, who=who, freeze_gc=freeze_gc)
        self.held = held
        """The exit signals the CLI holds around this run (exit_signals): one already noted ends the App as soon as
        it has started; given back at the end of the shutdown, they are held again, not Python's defaults."""
        self.demo_step = demo_step
        """Seconds between demo steps (None: each demo's default)."""
        self.initial_demos = tuple(expand_names(demos))
        """Demos to start when the dashboard opens (--demo)."""
        uname = os.uname()
        self.read_only = actions.read_only(read_only)
        self.scan_config = scan_config
        self.host = host if host is not None else uname.nodename
        self.kernel = kernel if kernel is not None else uname.release
        self.is_root = is_root if is_root is not None else os.geteuid() == 0
        self.export_dir = export_dir if export_dir is not None else export.export_dir()
        self._exit_signals: list[tuple[asyncio.AbstractEventLoop, int]] = []
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            # No animations unless asked for (TEXTUAL_ANIMATIONS=full), as in htop: the tab underline's 0.3 s slide
            # made each view switch 21 frames instead of 2 or 3 (~60 ms more of the UI thread, measured with a full
            # history), on the busy machine a monitor is opened on, and for those 0.3 s the tab bar pointed at the
            # view just left (issue 12, key latency).
            self.animation_level = "none"

    # --- layout ---------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusHeader(self.host, self.kernel, self.is_root, read_only=self.read_only, id="status").data_bind(
            IpcmonApp.snapshot, IpcmonApp.interval, IpcmonApp.paused, IpcmonApp.scan_error
        )
        specs = {spec.id: spec for spec in OBJECT_SPECS}
        # snapshot last: it is what redraws a view, and the values bound before it are current by then.
        state = (IpcmonApp.context, IpcmonApp.active_view)
        with Views(id="views", initial="overview"):
            for number, (view_id, title) in enumerate(self.VIEWS, start=1):
                with TabPane(f"{number} {title}", id=view_id):
                    if view_id == "overview":
                        yield Overview().data_bind(*state, IpcmonApp.snapshot)
                    elif view_id == "events":
                        yield EventsView().data_bind(*state, IpcmonApp.events, IpcmonApp.snapshot)
                    elif view_id in specs:
                        yield ObjectView(specs[view_id]).data_bind(*state, IpcmonApp.events, IpcmonApp.snapshot)
                    else:
                        yield DemosView(read_only=self.read_only).data_bind(
                            *state, IpcmonApp.demo_processes, IpcmonApp.snapshot
                        )
        yield SteadyFooter()

    def on_mount(self) -> None:
        self._handle_exit_signals()
        if self.held is not None and self.held.received:
            self.exit(return_code=0)  # a signal came while Python and Textual were still starting: no demo is started
        else:
            for name in self.initial_demos:
                self.start_demo(name, asked_on_command_line=True)
        self.start_refreshing()

    def on_unmount(self) -> None:
        self.stop_refreshing()
        # Demos started here end with the dashboard, removing what they created (as on Ctrl-C): all are asked
        # at once, then each is waited for, so they clean up side by side.
        running = [process for process in self.demo_processes.values() if process.running]
        for process in running:
            process.interrupt()
        for process in running:
            process.stop()
        self._release_exit_signals()

    # --- leaving on a signal ----------------------------------------------------------------------------------

    def get_driver_class(self) -> type[Driver]:
        driver = super().get_driver_class()
        return _HangupSafeDriver if driver is LinuxDriver else driver

    def _handle_exit_signals(self) -> None:
        """SIGTERM, SIGHUP and SIGINT (``kill``, a closed terminal) end the dashboard as ``q`` does, exit status 0.

        Python's defaults would kill the process (SIGTERM: status 143) with the terminal still in the alternate
        screen, mouse reporting on and the cursor hidden, and leave the demos' objects behind. Handled on the
        event loop (loop.add_signal_handler), the signal becomes App.exit: Textual's own shutdown restores the
        terminal, and on_unmount stops the demos and waits for their cleanup. Textual turns ISIG off, so
        Ctrl+C typed in the terminal is a key (``ctrl+c``), not a SIGINT; a SIGINT comes only from ``kill -INT``.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop of ours (never the case under App.run or run_test)
        for signo in EXIT_SIGNALS:
            try:
                loop.add_signal_handler(signo, self._exit_on_signal, signo)
            except (ValueError, RuntimeError, NotImplementedError):
                return  # not the main thread (an App run in a thread by a test): the defaults stay
            self._exit_signals.append((loop, signo))

    def _exit_on_signal(self, signo: int) -> None:
        self.exit(return_code=0)

    def _release_exit_signals(self) -> None:
        """Give the signals back (the loop may outlive the App: a test's loop must get its Ctrl-C back)."""
        for loop, signo in self._exit_signals:
            if not loop.is_closed():
                loop.remove_signal_handler(signo)
        self._exit_signals.clear()
        if self.held is not None:
            self.held.hold()  # Python's defaults again would make a second signal fatal while Textual shuts down

    # --- demos ------------------------------------------------------------------------------------------------

    def start_demo(self, name: str, *, asked_on_command_line: bool = False) -> None:
        if self.read_only and not asked_on_command_line:
            self.notify("Read-only: ipcmon was started with --read-only, so demos cannot be started from the dashboard "
                        "(name them with --demo on the command line).",
                        title="Refused", severity="warning", markup=False)
            return
        try:
            args = ("--loop",) if DEMOS[name].lesson else ()
            process = DemoProcess.start(name, self.demo_step, args=args)
        except (OSError, ValueError) as error:
            self.notify(f"Could not start demo {name}: {error}", severity="error", markup=False)
            return
        self.demo_processes = {**self.demo_processes, name: process}
        self.request_scan()

    @on(StartDemo)
    def _start_demo(self, message: StartDemo) -> None:
        self.start_demo(message.name)

    @on(StopDemo)
    def _stop_demo(self, message: StopDemo) -> None:
        process = self.demo_processes.get(message.name)
        if process is not None and process.running:
            self.notify(f"Stopping demo {message.name}: it removes what it created.", markup=False)
            self._stop(message.name, process)

    @work(thread=True, group="demo-stop", exit_on_error=False)
    def _stop(self, name: str, process: DemoProcess) -> None:
        process.stop()  # waits for the demo to clean up: off the UI thread
        self.post_message(DemoStopped(name))

    @on(DemoStopped)
    def _demo_stopped(self, message: DemoStopped) -> None:
        self.demo_processes = dict(self.demo_processes)  # the same demos, one ended: the views show it
        self.request_scan()

    @on(ShowFiltered)
    def _show_filtered(self, message: ShowFiltered) -> None:
        self.show_view(message.view)
        view = self.current_view()
        if view is None:
            return
        # As if the query had been typed after "/" and Enter pressed: the box shows it, Escape clears it.
        box = view.query_one(".filter", Input)
        with box.prevent(Input.Changed):
            box.value = message.query
        box.add_class("-open")
        view.table.set_filter(message.query)
        if message.key is not None:
            view.select_key(message.key)
        view.show_detail()
        view.table.focus()


def make_app(
    source: SnapshotSource | None = None,
    interval: float = 1.0,
    read_only: bool = False,
    kinds: Sequence[str] = KINDS,
    pids: frozenset[int] | None = None,
    demos: Sequence[str] = (),
    *,
    host: str | None = None,
    kernel: str | None = None,
    is_root: bool | None = None,
    export_dir: str | None = None,
    history: int = HISTORY_EVENTS,
    demo_step: float | None = None,
    show_self: bool = True,
    places: PlaceSelector | None = None,
    journal: str | None = None,
    freeze_gc: bool = False,
    held: HeldSignals | None = None,
) -> IpcmonApp:
    """The dashboard over a snapshot source (None: the live system, with inotify) — the CLI and tests call this.

    show_self False leaves the dashboard's own process and pipes out of its scans (ScanConfig.hide_self): the CLI
    passes it unless ``--show-self``; tests that make objects in their own process keep the default. places
    (``--container``, ``--ns``) restricts the live system's scans and events to those places (Monitor).

    The live system's Monitor also reports who sends each signal (``senders``: root and tracefs), and the journal
    (journal: its path; default ``ipcmon.journal.default_path()``) is read, read-only, when it exists: the Signals
    view, the process view and the detail panes then name senders and creators. With a snapshot source, the journal
    is read only when its path is given.

    freeze_gc (the CLI's dashboard, which runs alone in its process) freezes the objects alive once the first scan is
    drawn out of the garbage collector's sight (garbage.freeze_startup_objects), and its full collections wait for a
    calm moment (garbage.CalmCollections); tests, many Apps in one process, leave it off. held: the exit signals the
    CLI holds while Python and Textual start and while Textual shuts down (exit_signals.HeldSignals)."""
    config = ScanConfig(kinds=tuple(kinds), pids=pids, hide_self=not show_self)
    app: IpcmonApp
    if source is None:
        from ipcmon.journal import default_path
        from ipcmon.live.monitor import Monitor
        from ipcmon.recorder import JournalWhenIdle

        # Names who created and removed and who sent signals (as root), and writes the journal while no ipcmon record
        # runs (issue 16).
        monitor = Monitor(config, history=history, on_event=lambda event: app.inotify_event(event), places=places,
                          actors=True, senders=True, sink=JournalWhenIdle(default_path()))
        feed: Feed = monitor
    else:
        feed = SourceFeed(source)
    reader = None
    if source is None or journal is not None:
        from ipcmon.journal import open_reader

        reader, _ = open_reader(journal)  # none, locked, corrupt: nothing to read (never an error)
    app = IpcmonApp(
        feed,
        interval=interval,
        read_only=read_only,
        scan_config=config,
        host=host,
        kernel=kernel,
        is_root=is_root,
        export_dir=export_dir,
        demos=demos,
        demo_step=demo_step,
        history=history,
        who=Attributions(reader, path=journal),
        freeze_gc=freeze_gc,
        held=held,
    )
    return app
