#!/usr/bin/env python3
"""Signals: a handler that catches, a process that ignores, a blocked signal left pending, a fault handler.

The rules, as in signal(7):

    kill(pid, sig)            send a signal; what happens depends on the receiver's disposition:
    signal(sig, handler)        caught: the handler runs
    signal(sig, SIG_IGN)        ignored: the signal is thrown away
    sigprocmask(SIG_BLOCK)    blocked: the signal waits, pending, until it is unblocked, then it is delivered
    SIGSEGV                   sent by the kernel on a bad memory access; a handler for it must not return

Watch it with `ipcmon` (or `ipcmon snapshot --kind signal --all-signals`): CAUGHT USR1, IGNORED INT,
BLOCKED USR1, then PENDING USR1 until the blocker unblocks it.
"""

from __future__ import annotations

import ctypes
import os
import signal
from types import FrameType

from demokit import Lesson, Turns

SIGNAL_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_int)
libc = ctypes.CDLL(None, use_errno=True)
libc.signal.argtypes = [ctypes.c_int, SIGNAL_HANDLER]
libc.signal.restype = ctypes.c_void_p
_handlers: list[object] = []  # a C callback must outlive its registration


def install_fault_handler(out_fd: int, report: str, status: int) -> None:
    """Install a C-level SIGSEGV handler (a ctypes callback given to signal(2)) that reports and exits.

    Python's own signal.signal() cannot catch a real fault: its C handler only sets a flag and returns,
    and returning from SIGSEGV runs the faulting instruction again, forever. So this handler never
    returns: it writes its report with write(2) and leaves with _exit(2), both safe inside a handler.
    """
    data = (report + "\n").encode()

    @SIGNAL_HANDLER
    def on_fault(_signo: int) -> None:
        os.write(out_fd, data)
        os._exit(status)

    _handlers.append(on_fault)
    libc.signal(signal.SIGSEGV, on_fault)


def lesson_round(lesson: Lesson, turns: Turns) -> None:
    parent = os.getpid()

    def catcher() -> None:
        me = os.getpid()

        def on_usr1(signo: int, _frame: FrameType | None) -> None:
            lesson.step(5, f"catcher {me}'s handler runs: it caught {signal.Signals(signo).name}")
            turns.give("parent")

        signal.signal(signal.SIGUSR1, on_usr1)
        turns.give("parent")
        while True:
            signal.pause()

    def stubborn() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        turns.give("parent")
        while True:
            signal.pause()  # an ignored signal does not even wake pause()

    def blocker() -> None:
        me = os.getpid()

        def on_usr1(signo: int, _frame: FrameType | None) -> None:
            lesson.step(9, f"blocker {me}'s handler runs: the {signal.Signals(signo).name} that waited pending "
                           f"is delivered the moment it is unblocked")
            turns.give("parent")

        signal.signal(signal.SIGUSR1, on_usr1)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        turns.give("parent")
        turns.take("blocker")
        lesson.step(8, f"blocker {me} unblocks SIGUSR1 (sigprocmask SIG_UNBLOCK)")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
        while True:
            signal.pause()

    def faulty() -> None:
        me = os.getpid()
        install_fault_handler(
            lesson.out_fd,
            f"step 11/{lesson.total}: faulty {me}'s SIGSEGV handler runs: it reports the bad memory access and "
            f"exits with status 3 (returning would run the faulting instruction again)",
            status=3,
        )
        turns.take("faulty")
        lesson.pause()
        ctypes.c_char.from_address(8).value  # noqa: B018 (address 8 is not mapped: the read faults)

    lesson.pause()
    catcher_pid = lesson.fork(catcher)
    turns.take("parent")
    lesson.step(1, f"parent {parent} forks catcher {catcher_pid}: it installs a handler for SIGUSR1 (caught) and "
                   f"waits in pause()", pause=False)
    lesson.pause()
    stubborn_pid = lesson.fork(stubborn)
    turns.take("parent")
    lesson.step(2, f"parent {parent} forks stubborn {stubborn_pid}: it ignores SIGINT (SIG_IGN)", pause=False)
    lesson.pause()
    blocker_pid = lesson.fork(blocker)
    turns.take("parent")
    lesson.step(3, f"parent {parent} forks blocker {blocker_pid}: it blocks SIGUSR1 (sigprocmask SIG_BLOCK) and "
                   f"has a handler for it", pause=False)

    lesson.step(4, f"parent {parent} sends SIGUSR1 to catcher {catcher_pid} (kill)")
    os.kill(catcher_pid, signal.SIGUSR1)
    turns.take("parent")

    lesson.pause()
    os.kill(stubborn_pid, signal.SIGINT)
    alive = os.waitpid(stubborn_pid, os.WNOHANG) == (0, 0)
    lesson.step(6, f"parent {parent} sends SIGINT (what Ctrl-C sends) to stubborn {stubborn_pid}: it is ignored, "
                   f"and stubborn is {'still running' if alive else 'gone'}", pause=False)

    lesson.step(7, f"parent {parent} sends SIGUSR1 to blocker {blocker_pid}: it is blocked there, so it stays "
                   f"pending")
    os.kill(blocker_pid, signal.SIGUSR1)
    turns.give("blocker")
    turns.take("parent")

    lesson.pause()
    faulty_pid = lesson.fork(faulty)
    lesson.step(10, f"parent {parent} forks faulty {faulty_pid}: it installs a SIGSEGV handler, then reads memory "
                    f"at address 0x8, which is not mapped", pause=False)
    turns.give("faulty")
    how = lesson.reap(faulty_pid)

    lesson.step(12, f"parent {parent} reaps faulty {faulty_pid}: {how} (its handler's status), then ends catcher, "
                    f"stubborn and blocker with SIGTERM")
    for pid in (catcher_pid, stubborn_pid, blocker_pid):
        os.kill(pid, signal.SIGTERM)
        lesson.reap(pid)


def main() -> None:
    lesson = Lesson(__doc__ or "", steps=12)
    turns = Turns("parent", "blocker", "faulty")
    lesson.run(lambda: lesson_round(lesson, turns))


if __name__ == "__main__":
    main()
