"""The demo workloads: their registry, where their scripts live, and running them as subprocesses.

A demo is a standalone script (``demos/NAME.py`` in a checkout, ``ipcmon/_demos`` in an installed wheel)
that narrates each step on stdout as ``step N/M: …``. ``DemoProcess.start`` runs one in its own session
for the dashboard or the CLI, reads its narration on a thread, and stops it the way Ctrl-C would, so it
removes everything it created. No Textual import here.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import psutil

from ipcmon.collect import procfs
from ipcmon.model import ProcessKey
from ipcmon.safe import printable

OBJECT_PREFIX = "/ipcmon-demo-"
"""Every demo object is named OBJECT_PREFIX + the demo's pid + '-' + what it is."""


@dataclass(frozen=True, slots=True)
class Demo:
    """One demo workload."""

    name: str
    description: str
    """One line for `ipcmon demo --list` and the dashboard."""
    script: str
    """File name in the demos directory."""
    lesson: bool = True
    """Part of `ipcmon demo all`; leak (leaves orphans on purpose) and stress (load) are not."""

    @property
    def path(self) -> Path:
        return demos_dir() / self.script


DEMOS: dict[str, Demo] = {
    demo.name: demo
    for demo in (
        Demo("shm", "POSIX shared memory: create, attach from two processes, share, detach, unlink", "shm.py"),
        Demo("memfd", "memfd and anonymous shared memory: a region shared across fork, a memfd passed over a socket",
             "memfd.py"),
        Demo("sysv-shm", "SysV shared memory: shmget, shmat/shmdt counted in nattch, IPC_RMID while attached",
             "sysv_shm.py"),
        Demo("mqueue", "POSIX message queue: blocking send and receive, O_NONBLOCK and EAGAIN, mq_notify",
             "mqueue.py"),
        Demo("pipe", "pipes: parent to child with EOF, the forgotten end (both-ends), a full pipe, SIGPIPE/EPIPE",
             "pipe.py"),
        Demo("pipeline", "dup2: a producer's stdout wired to a consumer's stdin, like `ls -l | less`", "pipeline.py"),
        Demo("signals", "signals: caught, ignored, blocked and left pending, a SIGSEGV handler", "signals.py"),
        Demo("leak", "a process killed before cleaning up leaves orphan segments and a queue, on purpose",
             "leak.py", lesson=False),
        Demo("stress", "many processes, pipes, segments and queues at once, sized by flags, held until stopped",
             "stress.py", lesson=False),
    )
}
LESSONS: tuple[str, ...] = tuple(name for name, demo in DEMOS.items() if demo.lesson)
"""What `ipcmon demo all` runs."""


def demos_dir() -> Path:
    """The directory of the demo scripts: ipcmon/_demos in an installed wheel, demos/ in a checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_demos", package.parent / "demos"):
        if (candidate / "demokit.py").is_file():
            return candidate
    raise FileNotFoundError(f"the demo scripts are missing: neither {package / '_demos'} nor "
                            f"{package.parent / 'demos'} holds them")


def _start_ticks(pid: int) -> int | None:
    try:
        return procfs.parse_stat(procfs.read_bytes(f"{procfs.PROC}/{pid}/stat")).start_ticks
    except (procfs.Gone, procfs.Denied, ValueError, IndexError):
        return None


class DemoProcess:
    """A demo running as a subprocess in its own session, its narration read line by line on a thread."""

    def __init__(self, demo: Demo, popen: subprocess.Popen[bytes],
                 on_line: Callable[[str], None] | None = None) -> None:
        self.demo = demo
        self.name = demo.name
        self.pid = popen.pid
        self.prefix = f"{OBJECT_PREFIX}{self.pid}-"
        """The start of every object name this demo creates."""
        self.lines: queue.Queue[str] = queue.Queue()
        """Narration lines as they come (raw text: show it through ipcmon.safe)."""
        self.finished = threading.Event()
        """Set once the narration has ended (every line is in `lines`)."""
        self._popen = popen
        self._on_line = on_line
        self._interrupted = False
        # Not yet reaped, so this pid cannot have been reused: its start time identifies it from now on.
        self._start_ticks = _start_ticks(self.pid)
        threading.Thread(target=self._read, name=f"demo-{self.name}-{self.pid}", daemon=True).start()

    @classmethod
    def start(cls, name: str, step: float | None = None, *, args: Sequence[str] = (),
              on_line: Callable[[str], None] | None = None) -> DemoProcess:
        """Start demo `name` pausing `step` seconds between steps (None: its default).

        `args` go to the script (e.g. ``["--loop"]``, or stress's sizes); `on_line` is called on the reader
        thread with each narration line, in addition to `lines`.
        """
        demo = DEMOS.get(name)
        if demo is None:
            raise ValueError(f"no demo {name!r} (choose from {', '.join(DEMOS)})")
        command = [sys.executable, str(demo.path), "--exit-with-parent"]
        if step is not None:
            command += ["--step", str(step)]
        command += list(args)
        # The script imports demokit from its own directory, which PYTHONSAFEPATH would leave off sys.path.
        env = {key: value for key, value in os.environ.items() if key != "PYTHONSAFEPATH"}
        popen = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, start_new_session=True, env=env)
        return cls(demo, popen, on_line)

    def _read(self) -> None:
        stream = self._popen.stdout
        assert stream is not None
        with stream:
            for raw in stream:
                line = raw.rstrip(b"\n").decode("utf-8", "surrogateescape")
                self.lines.put(line)
                if self._on_line is not None:
                    try:
                        self._on_line(line)
                    except Exception:  # a failing callback must not end the narration for everyone else
                        pass
        self.finished.set()

    @property
    def running(self) -> bool:
        return self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the demo to end and its narration to be read; its exit status, or None on timeout."""
        try:
            code = self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.finished.wait(timeout)
        return code

    def interrupt(self, signo: int = signal.SIGINT) -> None:
        """Ask the demo to stop like Ctrl-C (SIGINT, or SIGTERM, which it takes alike: it cleans up, says which
        signal stopped it, and exits 0), once, without waiting (see `stop`).

        Once only: the demo ignores a second SIGINT while it cleans up, but one sent before its handler ran
        could cut that cleanup short.
        """
        if not self._interrupted and self._popen.poll() is None:  # unreaped, so the pid is still the demo's own
            self._interrupted = True
            self._popen.send_signal(signo)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the demo like Ctrl-C (`interrupt`) and wait for its cleanup; SIGKILL its group if it takes longer
        than `timeout` seconds. The demo's exit status (negative: the signal that ended it)."""
        if self._popen.poll() is None:
            self.interrupt()
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                # Still unreaped, so its process group is still the one we started: no stranger shares it.
                os.killpg(self.pid, signal.SIGKILL)
                self._popen.wait()
        self.finished.wait(2.0)
        return self._popen.returncode

    def pids(self) -> frozenset[ProcessKey]:
        """The demo process and its descendants now, keyed by pid and start time; empty once it has ended.

        The tree comes from psutil's ``Process.children(recursive=True)``, which reads the ppid in every
        /proc/PID/stat: fine for a look now and then, and never on the scan's measured path (issue 11).
        """
        if self._start_ticks is None or self._popen.poll() is not None:
            return frozenset()
        if _start_ticks(self.pid) != self._start_ticks:
            return frozenset()
        found = {ProcessKey(self.pid, self._start_ticks)}
        try:
            descendants = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:  # the demo ended meanwhile (NoSuchProcess, ZombieProcess): the next look is empty
            return frozenset(found)
        for child in descendants:
            ticks = _start_ticks(child.pid)  # None: that child ended meanwhile, and drops out
            if ticks is not None:
                found.add(ProcessKey(child.pid, ticks))
        return frozenset(found)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What stops `run_foreground` cleanly: Ctrl-C, ``kill``, and the terminal closing."""


class _Stopped(Exception):
    """Raised by SIGTERM or SIGHUP in `run_foreground`, as Ctrl-C raises KeyboardInterrupt."""


def run_foreground(names: Sequence[str], step: float | None = None, args: Sequence[str] = (),
                   out: TextIO = sys.stdout) -> int:
    """Run demos together, printing their narration (each line led by the demo's name if several).

    Ctrl-C (SIGINT), SIGTERM and SIGHUP stop them all, let each clean up (its ``cleanup:`` lines are printed)
    and return 0; otherwise returns the first non-zero exit status, or 0. Call it from the main thread: it
    handles SIGTERM and SIGHUP until it returns.
    """
    merged: queue.Queue[tuple[str, str]] = queue.Queue()
    label = len(names) > 1
    width = max(len(name) for name in names)

    def show(name: str, line: str) -> None:
        text = printable(line)
        out.write(f"{name:<{width}}  {text}\n" if label else f"{text}\n")
        out.flush()

    def forward(name: str) -> Callable[[str], None]:
        return lambda line: merged.put((name, line))

    def drain() -> None:
        try:
            while not merged.empty():
                show(*merged.get())
        except OSError:  # the terminal is gone (SIGHUP): the demos cleaned up all the same
            pass

    def stop(signo: int, _frame: object) -> None:
        # One stop is enough: a second signal must not cut the demos' cleanup short.
        for each in STOP_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        raise _Stopped(signal.Signals(signo).name)

    previous = {signo: signal.getsignal(signo) for signo in STOP_SIGNALS}
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    running: list[DemoProcess] = []
    try:
        for name in names:
            # Held back while a demo starts, so none runs unrecorded (and so never stopped).
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                running.append(DemoProcess.start(name, step, args=args, on_line=forward(name)))
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        while not (all(demo.finished.is_set() for demo in running) and merged.empty()):
            try:
                show(*merged.get(timeout=0.2))
            except queue.Empty:
                continue
    except (KeyboardInterrupt, _Stopped) as why:
        for each in STOP_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        # Passed on as it came, so the demo says what stopped it (a lesson takes each of them: demokit.Lesson.run).
        passed_on = signal.Signals[str(why)] if str(why) in ("SIGTERM", "SIGHUP") else signal.SIGINT
        for demo in running:
            demo.interrupt(passed_on)
        for demo in running:
            demo.stop()
        drain()
        return 0
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)
    codes = [demo.wait() for demo in running]
    drain()
    return next((code for code in codes if code), 0)
