"""What every ipcmon demo needs but is not the lesson: numbered narration, taking turns, and cleanup.

Each demo script reads top to bottom as the lesson it teaches and imports this module for the rest:

- ``Lesson.step(n, text)`` pauses ``--step`` seconds, then prints ``step n/total: text`` as one write, so
  lines from several processes never interleave mid-line.
- ``Lesson.fork(child_main)`` starts a child that dies with the demo, even if the demo is SIGKILLed
  (``PR_SET_PDEATHSIG``, prctl(2)).
- ``Turns`` lets processes act in the order the narration promises. It uses eventfds (eventfd(2)), which
  ipcmon does not list, so the coordination does not clutter what the lesson shows.
- ``Lesson.run(lesson_round)`` turns Ctrl-C (SIGINT) and SIGTERM into a clean stop: the demo kills and reaps
  its children, removes every object it registered with ``on_cleanup``, and exits 0.

Every object name is ``/ipcmon-demo-<pid of the demo>-<what>`` so demos never collide with each other or
with anything real.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import NoReturn

import posix_ipc
import sysv_ipc

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# Removing what is already gone is the normal case at the end of a round: the lesson removed it itself.
ALREADY_GONE = (FileNotFoundError, ProcessLookupError, posix_ipc.ExistentialError, sysv_ipc.ExistentialError)


class Stop(Exception):
    """Raised in the demo's main process by SIGINT or SIGTERM: stop now and clean up."""


class Lesson:
    """One demo run: its options, its narration, its children and what to remove at the end."""

    def __init__(
        self,
        description: str,
        steps: int,
        *,
        default_step: float = 1.5,
        can_loop: bool = True,
        add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    ) -> None:
        # A blocked signal mask is inherited through fork and exec: `ipcmon demo` holds SIGHUP, SIGINT and SIGTERM
        # back while it starts a demo, and a shell or service manager may hold others. A lesson starts with none
        # blocked, as a program run from a terminal does (each step that blocks one says so).
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        # A demo started with fd 0, 1 or 2 closed would hand those numbers to its pipes and eventfds, and
        # a later dup2 onto stdin or stdout would clobber them: fill the gaps with /dev/null first.
        for fd in (0, 1, 2):
            try:
                os.fstat(fd)
            except OSError:
                os.open(os.devnull, os.O_RDWR)  # open() takes the lowest free number: this one
        parser = argparse.ArgumentParser(description=description.strip().splitlines()[0])
        parser.add_argument("--step", type=float, default=default_step, metavar="SECONDS",
                            help=f"pause between steps (default {default_step})")
        if can_loop:
            parser.add_argument("--loop", action="store_true", help="start the lesson again after it ends")
        parser.add_argument("--exit-with-parent", action="store_true",
                            help="stop and clean up when the process that started the demo goes away")
        if add_arguments is not None:
            add_arguments(parser)
        self.args = parser.parse_args()
        self.step_seconds: float = max(self.args.step, 0.0)
        self.total = steps
        self.loop: bool = getattr(self.args, "loop", False)
        self.main_pid = os.getpid()
        self.out_fd = sys.stdout.fileno()
        self.children: list[int] = []
        self._cleanups: list[tuple[str, Callable[[], object]]] = []
        self._reader_gone = False
        self._failures = os.eventfd(0, os.EFD_NONBLOCK)  # children that failed add 1

    def name(self, what: str) -> str:
        """The name of one of this demo's objects: /ipcmon-demo-<pid>-<what>."""
        return f"/ipcmon-demo-{self.main_pid}-{what}"

    # -- narration ----------------------------------------------------------------------------------

    def pause(self) -> None:
        time.sleep(self.step_seconds)

    def step(self, number: int, text: str, *, pause: bool = True) -> None:
        """Pause (except before step 1), then narrate step `number`."""
        if pause and number > 1:
            self.pause()
        self.say(f"step {number}/{self.total}: {text}")

    def say(self, text: str) -> None:
        """Print one line with a single write(2), so it reaches the reader whole and at once."""
        if self._reader_gone:
            return
        try:
            os.write(self.out_fd, (text + "\n").encode())
        except BrokenPipeError:
            # Whoever read the narration is gone: stop (the main process cleans up, a child just ends).
            self._reader_gone = True
            if os.getpid() != self.main_pid:
                os._exit(0)
            raise Stop("the narration's reader leaving") from None

    # -- processes ----------------------------------------------------------------------------------

    def fork(self, child_main: Callable[[], object]) -> int:
        """Start a child running child_main; it exits when child_main returns, and dies with the demo."""
        with self.uninterrupted():  # a Ctrl-C right at fork must not reach the child's copy of our handler
            pid = os.fork()
            if pid == 0:
                self._run_child(child_main)
            self.children.append(pid)
        return pid

    def _run_child(self, child_main: Callable[[], object]) -> NoReturn:
        code = 0
        try:
            self._become_child()
            child_main()
        except BaseException:
            traceback.print_exc()
            code = 1
            # Whoever waits for this child's turn would wait forever: stop the whole demo instead, and
            # make it exit 1.
            os.eventfd_write(self._failures, 1)
            try:
                os.kill(self.main_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        finally:
            os._exit(code)

    def _become_child(self) -> None:
        # Ask the kernel to SIGKILL this child when the demo's main process dies, however it dies.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != self.main_pid:
            os._exit(0)  # the demo died before prctl took effect
        # Ctrl-C in a terminal (and its hangup) reaches every process of the group: a child just ends, the demo
        # cleans up.
        stops = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        for each in stops:
            signal.signal(each, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
        self.children = []
        self._cleanups = []

    def reap(self, pid: int) -> str:
        """Wait for a child to end; return how it ended, in words."""
        _, status = os.waitpid(pid, 0)
        if pid in self.children:
            self.children.remove(pid)
        if os.WIFSIGNALED(status):
            return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        return f"exited with status {os.WEXITSTATUS(status)}"

    def _kill_children(self) -> list[int]:
        """SIGKILL and reap every child still there; the pids that were (running, or exited and not yet reaped)."""
        ended = []
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            ended.append(pid)
        while self.children:
            try:
                os.waitpid(self.children[-1], 0)
            except ChildProcessError:
                pass
            self.children.pop()
        return ended

    # -- cleanup and the run loop -------------------------------------------------------------------

    def on_cleanup(self, what: str, remove: Callable[..., object], *args: object) -> None:
        """At the end of the round, or on Ctrl-C, call remove(*args) and say `cleanup: what` if it did something.

        Register before creating the object, so an interruption in between cannot leak it.
        """
        self._cleanups.append((what, lambda: remove(*args)))

    @contextlib.contextmanager
    def uninterrupted(self) -> Iterator[None]:
        """Hold SIGINT, SIGTERM and SIGHUP back (pending) for a moment, e.g. between creating and registering."""
        stops = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)

    def _finish_round(self) -> None:
        """Kill and reap the children, then remove what the round created. Safe to run twice."""
        ended = self._kill_children()
        if ended:
            shown = ", ".join(str(pid) for pid in ended[:6]) + (f" and {len(ended) - 6} more" if len(ended) > 6 else "")
            self.say(f"cleanup: ended {'process' if len(ended) == 1 else 'processes'} {shown}")
        removed = []
        while self._cleanups:
            what, remove = self._cleanups[-1]
            try:
                remove()
            except ALREADY_GONE:
                pass
            except Exception as error:
                self.say(f"cleanup: could not remove {what}: {error}")
            else:
                removed.append(what)
            self._cleanups.pop()  # only now: a stop in the middle retries this one
        if removed:
            shown = ", ".join(removed[:4]) + (f" and {len(removed) - 4} more" if len(removed) > 4 else "")
            self.say(f"cleanup: removed {shown}")

    def run(self, lesson_round: Callable[[], object]) -> NoReturn:
        """Run the lesson (again and again with --loop); on SIGINT, SIGTERM or SIGHUP clean up and exit 0.

        The exit status is 1 instead when a child failed (its traceback is on stderr).
        """

        def stop(signo: int, _frame: object) -> None:
            # One stop is enough: a second Ctrl-C must not cut the cleanup short.
            for each in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(each, signal.SIG_IGN)
            raise Stop(signal.Signals(signo).name)

        for each in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(each, stop)
        if self.args.exit_with_parent:
            _watch_parent(self.main_pid)
        try:
            while True:
                try:
                    lesson_round()
                finally:
                    self._finish_round()
                if not self.loop:
                    break
                self.say("(again)")
                self.pause()
        except Stop as why:
            self._finish_round()  # again, in case the stop came in the middle of the first one
            self.say(f"stopped by {why}")
        try:
            failed = os.eventfd_read(self._failures) > 0
        except BlockingIOError:
            failed = False
        sys.exit(1 if failed else 0)


class Turns:
    """Processes taking turns: `give(actor)` lets that actor's `take(actor)` return (once per give).

    One eventfd (eventfd(2)) per actor, as a counting semaphore: created before fork, so parent and
    children share them.
    """

    def __init__(self, *actors: str) -> None:
        self._fds = {actor: os.eventfd(0, os.EFD_SEMAPHORE) for actor in actors}

    def give(self, actor: str) -> None:
        os.eventfd_write(self._fds[actor], 1)

    def take(self, actor: str) -> None:
        os.eventfd_read(self._fds[actor])


def _watch_parent(main_pid: int) -> None:
    """SIGTERM the demo (which then cleans up) when the process that started it goes away.

    The thread sleeps in poll(2) on a pidfd of the parent, which becomes readable when the parent exits:
    it never wakes before that (a demo that woke up every so often would never look idle to a monitor).
    """
    parent = os.getppid()
    try:
        parent_fd = os.pidfd_open(parent)
    except OSError:
        parent_fd = None  # the parent is gone already
    if os.getppid() != parent and parent_fd is not None:  # it exited before the pidfd pinned it
        os.close(parent_fd)
        parent_fd = None

    def watch() -> None:
        if parent_fd is not None:
            select.select([parent_fd], [], [])
        os.kill(main_pid, signal.SIGTERM)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
