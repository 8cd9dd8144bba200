#!/usr/bin/env python3
"""Pipes: parent → child "Hello there!", the forgotten end that hides EOF, a full pipe, and a broken pipe.

The rules, as in pipe(7):

    pipe()            gives two descriptors: one reads, one writes; fork() copies both to the child
    close()           each process closes the end it does not use
    read()            returns 0 bytes (end of file) only once *no process* holds a write end, so a reader
                      that forgot to close its own write end waits forever
    write()           blocks while the pipe is full (64 KiB by default), until a reader makes room
    no reader left    a write raises SIGPIPE, which kills the writer; if SIGPIPE is ignored, write fails
                      with EPIPE instead

Watch it with `ipcmon` (or `ipcmon snapshot --kind pipe`): each pipe is shown as pipe:[INODE] with its
readers and writers, and the flags both-ends, full and no-reader light up in turn.
"""

from __future__ import annotations

import fcntl
import os
import signal
from types import FrameType

from demokit import Lesson, Turns


def pipe_name(fd: int) -> str:
    """How /proc/PID/fd (and ipcmon) names a pipe: pipe:[INODE]."""
    return f"pipe:[{os.fstat(fd).st_ino}]"


def read_to_end(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def lesson_round(lesson: Lesson, turns: Turns) -> None:
    parent = os.getpid()

    # 1. The classic: the parent writes, the child reads, and each closes the end it does not use.
    read_end, write_end = os.pipe()
    pipe = pipe_name(read_end)
    lesson.step(1, f"parent {parent} creates {pipe} (fd {read_end} reads, fd {write_end} writes); for now it "
                   f"holds both ends")

    def reader() -> None:
        me = os.getpid()
        turns.take("child")
        lesson.step(4, f"child {me} closes its write end of {pipe}: it only reads")
        os.close(write_end)
        turns.give("parent")
        turns.take("child")
        lesson.pause()
        data = read_to_end(read_end)
        lesson.step(6, f"child {me} reads {data.decode()!r}, then read() returns 0 bytes: end of file, as no "
                       f"process holds a write end of {pipe} any more; it exits", pause=False)

    lesson.pause()
    child = lesson.fork(reader)
    lesson.step(2, f"parent {parent} forks child {child}: now both processes hold both ends of {pipe}", pause=False)
    lesson.step(3, f"parent {parent} closes its read end of {pipe}: it only writes")
    os.close(read_end)
    turns.give("child")
    turns.take("parent")
    lesson.step(5, f"parent {parent} writes 'Hello there!' into {pipe} and closes its write end: 12 bytes wait "
                   f"in the pipe, and no writer is left")
    os.write(write_end, b"Hello there!")
    os.close(write_end)
    turns.give("child")
    lesson.reap(child)

    # 2. The same, but the child forgets to close its write end: its read never sees end of file.
    lesson.pause()
    read_end, write_end = os.pipe()
    pipe = pipe_name(read_end)

    def forgetful_reader() -> None:
        me = os.getpid()
        # Here it should close write_end, as the reader above did. It forgets.
        turns.take("child")
        lesson.pause()
        data = os.read(read_end, 100)
        lesson.step(9, f"child {me} reads {data.decode()!r}, then waits for end of file, which cannot come: "
                       f"it holds a write end of {pipe} itself (the both-ends hazard)", pause=False)
        patience = max(2 * lesson.step_seconds, 0.5)

        def give_up(_signo: int, _frame: FrameType | None) -> None:
            raise TimeoutError

        # This read() would wait forever; an alarm (SIGALRM) stands in for the programmer who notices.
        signal.signal(signal.SIGALRM, give_up)
        signal.setitimer(signal.ITIMER_REAL, patience)
        try:
            os.read(read_end, 100)
        except TimeoutError:
            pass
        lesson.step(10, f"child {me}: still no end of file after {patience:.1f} s; it closes the write end it "
                        f"forgot", pause=False)
        os.close(write_end)
        lesson.pause()
        rest = os.read(read_end, 100)
        lesson.step(11, f"child {me}: read() now returns {len(rest)} bytes, end of file at last; it exits",
                    pause=False)

    child = lesson.fork(forgetful_reader)
    lesson.step(7, f"parent {parent} creates {pipe} and forks child {child}, which forgets to close its write "
                   f"end", pause=False)
    lesson.step(8, f"parent {parent} closes its read end, writes 'Hello again!' into {pipe} and closes its "
                   f"write end")
    os.close(read_end)
    os.write(write_end, b"Hello again!")
    os.close(write_end)
    turns.give("child")
    lesson.reap(child)

    # 3. A writer faster than its reader: write() blocks while the pipe is full.
    lesson.pause()
    read_end, write_end = os.pipe()
    pipe = pipe_name(read_end)
    capacity = fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ)

    def flooder() -> None:
        me = os.getpid()
        os.close(read_end)
        turns.take("child")
        lesson.step(13, f"writer {me} writes 100000 bytes into {pipe}, which holds {capacity}: write() blocks "
                        f"when it is full, until a reader makes room")
        turns.give("parent")
        os.write(write_end, b"x" * 100_000)
        os.close(write_end)

    child = lesson.fork(flooder)
    os.close(write_end)
    lesson.step(12, f"parent {parent} creates {pipe} and forks writer {child}; the parent keeps only the read "
                    f"end, the writer only the write end", pause=False)
    turns.give("child")
    turns.take("parent")
    lesson.pause()
    total = len(read_to_end(read_end))
    lesson.step(14, f"parent {parent} reads {total} bytes from {pipe}: each read makes room and the writer's "
                    f"write() goes on; the writer finishes and exits, and the parent's read sees end of file",
                pause=False)
    os.close(read_end)
    lesson.reap(child)

    # 4. Nobody reads any more: SIGPIPE, or EPIPE when SIGPIPE is ignored.
    lesson.pause()
    read_end, write_end = os.pipe()
    pipe = pipe_name(read_end)

    def doomed_writer() -> None:
        me = os.getpid()
        os.close(read_end)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # what a C program has; Python ignores SIGPIPE
        turns.take("child")
        lesson.step(16, f"writer {me}, with SIGPIPE at its default action, writes into {pipe}: the kernel "
                        f"sends it SIGPIPE, which kills it")
        os.write(write_end, b"anyone there?")

    def careful_writer() -> None:
        me = os.getpid()
        os.close(read_end)
        turns.take("second")
        lesson.pause()
        try:
            os.write(write_end, b"anyone there?")
        except BrokenPipeError:
            lesson.step(18, f"writer {me} ignores SIGPIPE (Python does so at start-up), so its write into "
                            f"{pipe} fails with EPIPE (BrokenPipeError) instead; it exits", pause=False)

    doomed = lesson.fork(doomed_writer)
    careful = lesson.fork(careful_writer)
    os.close(read_end)
    os.close(write_end)
    lesson.step(15, f"parent {parent} creates {pipe}, forks writers {doomed} and {careful} and closes both its "
                    f"ends; the writers close their read ends: nobody can read (no-reader)", pause=False)
    turns.give("child")
    how = lesson.reap(doomed)
    lesson.step(17, f"parent {parent} reaps writer {doomed}: {how}")
    turns.give("second")
    lesson.reap(careful)


def main() -> None:
    lesson = Lesson(__doc__ or "", steps=18)
    turns = Turns("parent", "child", "second")
    lesson.run(lambda: lesson_round(lesson, turns))


if __name__ == "__main__":
    main()
