#!/usr/bin/env python3
"""A shell pipeline by hand: dup2 wires a producer's stdout to a consumer's stdin, like `ls -l | less`.

What the shell does for `producer | consumer`, as in pipe(2) and dup2(2):

    pipe()                       one pipe for the two programs
    fork(); dup2(write end, 1)   in the producer: its standard output (fd 1) becomes the pipe
    fork(); dup2(read end, 0)    in the consumer: its standard input (fd 0) becomes the pipe
    close() the originals        everywhere, the shell included, or the consumer never sees end of file

Neither program knows about the pipe: one prints, the other reads its input.
Watch it with `ipcmon` (or `ipcmon snapshot --kind pipe`): one pipe, written by the producer on fd 1 and
read by the consumer on fd 0.
"""

from __future__ import annotations

import os
import sys

from demokit import Lesson, Turns

LISTING = (
    "-rw-r--r-- 1 root root  4096 notes.txt",
    "-rwxr-xr-x 1 root root 16384 run.sh",
)


def lesson_round(lesson: Lesson, turns: Turns) -> None:
    parent = os.getpid()
    read_end, write_end = os.pipe()
    pipe = f"pipe:[{os.fstat(read_end).st_ino}]"
    lesson.step(1, f"parent {parent} creates {pipe} (fd {read_end} reads, fd {write_end} writes)")

    def producer() -> None:
        me = os.getpid()
        lesson.out_fd = os.dup(1)  # keep the terminal, so the producer can still narrate
        os.dup2(write_end, 1)  # stdout is now the pipe
        os.close(write_end)
        os.close(read_end)
        for number, line in enumerate(LISTING):
            turns.take("producer")
            lesson.step(5 + 2 * number, f"producer {me} prints {line!r} to its stdout, which is {pipe}")
            print(line, flush=True)  # an ordinary print: the producer does not know it writes to a pipe
            turns.give("consumer")
        turns.take("producer")
        lesson.step(9, f"producer {me} is done and exits: the last write end of {pipe} closes")
        sys.stdout.close()  # closes fd 1: the write end

    def consumer() -> None:
        me = os.getpid()
        os.dup2(read_end, 0)  # stdin is now the pipe
        os.close(read_end)
        os.close(write_end)
        with open(0, closefd=False) as stdin:  # fd 0, now the pipe, read like any standard input
            for number in range(len(LISTING)):
                turns.take("consumer")
                lesson.pause()
                line = stdin.readline().rstrip("\n")
                lesson.step(6 + 2 * number, f"consumer {me} reads {line!r} from its stdin, which is {pipe}",
                            pause=False)
                turns.give("producer")
            lesson.pause()
            rest = stdin.read()  # returns only at end of file
        lesson.step(10, f"consumer {me} reads {len(rest)} more bytes: end of file on its stdin; it exits", pause=False)

    lesson.pause()
    producer_pid = lesson.fork(producer)
    lesson.step(2, f"parent {parent} forks producer {producer_pid}: dup2 puts the write end of {pipe} on its "
                   f"fd 1 (stdout), and it closes the original descriptors", pause=False)
    lesson.pause()
    consumer_pid = lesson.fork(consumer)
    lesson.step(3, f"parent {parent} forks consumer {consumer_pid}: dup2 puts the read end of {pipe} on its "
                   f"fd 0 (stdin), and it closes the original descriptors", pause=False)
    lesson.step(4, f"parent {parent} closes both its ends of {pipe}: only producer {producer_pid} writes, "
                   f"only consumer {consumer_pid} reads, like `ls -l | less`")
    os.close(read_end)
    os.close(write_end)
    turns.give("producer")
    lesson.reap(producer_pid)
    lesson.reap(consumer_pid)


def main() -> None:
    lesson = Lesson(__doc__ or "", steps=10)
    turns = Turns("producer", "consumer")
    lesson.run(lambda: lesson_round(lesson, turns))


if __name__ == "__main__":
    main()
