#!/usr/bin/env python3
"""A leak: a process creates shared memory and a message queue, then is killed before it cleans up.

Exit unmaps a process's memory and closes its descriptors, but a name in /dev/shm or /dev/mqueue goes
away only with shm_unlink(3) or mq_unlink(3). A process killed by SIGKILL never gets to call them, so
its segments and queue stay behind as orphans: no process holds them, and the segments keep their memory.

This demo leaves them on purpose, even when interrupted. Then:

    ipcmon leaks --match '/ipcmon-demo-<pid>-*'          lists them
    ipcmon clean --yes --match '/ipcmon-demo-<pid>-*'    removes them (once they are 10 s old: clean's --min-age)
"""

from __future__ import annotations

import mmap
import os
import signal

import posix_ipc
from demokit import Lesson, Stop, Turns

SEGMENTS = {"leak-a": 64 * 1024, "leak-b": 1024 * 1024}


def lesson_round(lesson: Lesson, turns: Turns) -> None:
    parent = os.getpid()
    names = [lesson.name(what) for what in SEGMENTS]
    queue_name = lesson.name("leak-q")
    prefix = lesson.name("")
    how_to_clean = (f"to find them: ipcmon leaks --match '{prefix}*'; to remove them: ipcmon clean --yes --match "
                    f"'{prefix}*' (clean leaves what changed in the last 10 s: wait, or add --min-age 0)")

    def worker() -> None:
        me = os.getpid()
        turns.take("worker")
        lesson.step(2, f"worker {me} creates {' and '.join(names)}, maps them and fills them: the memory is "
                       f"now in use, and the worker holds them")
        mappings = []
        for name, size in zip(names, SEGMENTS.values(), strict=True):
            segment = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=size)
            memory = mmap.mmap(segment.fd, size)
            segment.close_fd()
            memory.write(b"leak" * (size // 4))
            mappings.append(memory)
        lesson.step(3, f"worker {me} creates {queue_name} and sends it 2 messages; it keeps it open")
        queue = posix_ipc.MessageQueue(queue_name, posix_ipc.O_CREX, max_messages=4, max_message_size=64)
        queue.send(b"never received 1")
        queue.send(b"never received 2")
        turns.give("parent")
        while True:
            signal.pause()  # it would clean up after its work; it never gets there

    lesson.pause()
    worker_pid = lesson.fork(worker)
    lesson.step(1, f"parent {parent} forks worker {worker_pid}", pause=False)
    try:
        turns.give("worker")
        turns.take("parent")
        lesson.step(4, f"parent {parent} kills worker {worker_pid} with SIGKILL: it cannot clean up; the kernel "
                       f"unmaps and closes for it, but the names stay")
        os.kill(worker_pid, signal.SIGKILL)
        lesson.reap(worker_pid)
        lesson.step(5, f"left behind as orphans (no process holds them): {', '.join([*names, queue_name])}; "
                       f"{how_to_clean}")
    except Stop:
        lesson.say(f"stopped: this demo leaves what it created on purpose; {how_to_clean}")
        raise


def main() -> None:
    lesson = Lesson(__doc__ or "", steps=5, can_loop=False)
    turns = Turns("parent", "worker")
    lesson.run(lambda: lesson_round(lesson, turns))


if __name__ == "__main__":
    main()
