#!/usr/bin/env python3
"""POSIX shared memory: a segment is created, attached by two processes, shared, detached and destroyed.

The calls, as in shm_overview(7):

    shm_open(name, O_CREAT | O_EXCL)   create a named object (it appears as /dev/shm/NAME)
    ftruncate(fd, size)                give it a size
    mmap(MAP_SHARED)                   attach: the same pages appear in every process that maps them
    munmap()                           detach
    shm_unlink(name)                   destroy the name; the memory goes when the last mapping goes

Watch it with `ipcmon` (or `ipcmon snapshot --kind shm`): the segment's holders go 0 → 1 → 2 → 1 → 0.
"""

from __future__ import annotations

import mmap
import os

import posix_ipc
from demokit import Lesson, Turns

SIZE = 4096


def attach(name: str) -> mmap.mmap:
    """shm_open + mmap(MAP_SHARED, PROT_READ | PROT_WRITE); the descriptor is closed, the mapping stays."""
    segment = posix_ipc.SharedMemory(name)
    # Python's mmap keeps a duplicate of the descriptor for itself, so ipcmon shows the holder twice:
    # once by its mapping and once by that descriptor.
    memory = mmap.mmap(segment.fd, segment.size)
    segment.close_fd()
    return memory


def lesson_round(lesson: Lesson, turns: Turns) -> None:
    name = lesson.name("shm")
    parent = os.getpid()

    lesson.on_cleanup(name, posix_ipc.unlink_shared_memory, name)
    lesson.step(1, f"parent {parent} creates {name} (shm_open O_CREAT|O_EXCL, ftruncate to {SIZE} bytes) "
                   f"and closes its descriptor: the name stays in /dev/shm with no holder")
    posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=SIZE).close_fd()

    def child() -> None:
        me = os.getpid()
        turns.take("child")
        lesson.step(4, f"child {me} attaches {name} by name (shm_open + mmap MAP_SHARED): 2 holders")
        memory = attach(name)
        turns.give("parent")

        turns.take("child")
        lesson.pause()
        text = memory[:SIZE].rstrip(b"\0").decode()
        lesson.step(6, f"child {me} reads {text!r} from {name}: the parent's bytes, never copied", pause=False)
        lesson.step(7, f"child {me} detaches {name} (munmap) and exits: 1 holder")
        memory.close()

    lesson.pause()
    child_pid = lesson.fork(child)
    lesson.step(2, f"parent {parent} forks child {child_pid}; nothing is mapped yet, so the child inherits "
                   f"no attachment", pause=False)

    lesson.step(3, f"parent {parent} attaches {name} (shm_open + mmap MAP_SHARED): 1 holder")
    memory = attach(name)
    turns.give("child")
    turns.take("parent")

    message = f"Hello from {parent}".encode()
    lesson.step(5, f"parent {parent} writes {message.decode()!r} into {name}")
    memory[: len(message)] = message
    turns.give("child")
    lesson.reap(child_pid)

    lesson.step(8, f"parent {parent} detaches {name} (munmap): 0 holders, yet the segment and its bytes remain")
    memory.close()

    lesson.step(9, f"parent {parent} destroys {name} (shm_unlink): it is gone from /dev/shm")
    posix_ipc.unlink_shared_memory(name)


def main() -> None:
    lesson = Lesson(__doc__ or "", steps=9)
    turns = Turns("parent", "child")
    lesson.run(lambda: lesson_round(lesson, turns))


if __name__ == "__main__":
    main()
