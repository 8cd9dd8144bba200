#!/usr/bin/env python3
"""SysV shared memory: shmget, shmat, shmdt and shmctl(IPC_RMID), with the kernel counting attaches.

The calls, as in svipc(7) and shmget(2):

    shmget(key, size, IPC_CREAT | IPC_EXCL)   create a segment; it has a key and an id, no name or file
    shmat(id)                                 attach it; the kernel counts attaches in nattch
    shmdt(addr)                               detach; nattch goes down
    shmctl(id, IPC_RMID)                      mark it for removal: no new attach by key, and the kernel
                                              destroys it when the last process detaches

Watch it with `ipcmon` (or `ipcmon snapshot --kind sysv`): nattch goes 0 → 1 → 2, the segment is marked
removed while still attached, then 1, and it disappears at the last detach.
"""

from __future__ import annotations

import os

import sysv_ipc
from demokit import Lesson, Turns

SIZE = 4096


def lesson_round(lesson: Lesson, turns: Turns) -> None:
    parent = os.getpid()

    # sysv_ipc's constructor is shmget followed by shmat; detach at once to start, like shmget, at nattch 0.
    # A random key with IPC_EXCL (sysv_ipc picks again on a clash) so the demo never meets another's segment.
    with lesson.uninterrupted():  # the id is known only once it exists: register it before a stop can act
        segment = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, size=SIZE, init_character=b"\0")
        lesson.on_cleanup(f"SysV segment {segment.id}", sysv_ipc.remove_shared_memory, segment.id)
    segment.detach()
    shmid = segment.id
    what = f"SysV segment {shmid}"
    lesson.step(1, f"parent {parent} creates {what} (shmget key {segment.key:#x}, IPC_CREAT|IPC_EXCL, "
                   f"{SIZE} bytes): nattch 0")

    def child() -> None:
        me = os.getpid()
        turns.take("child")
        lesson.step(4, f"child {me} attaches {what} by its id (shmat): nattch 2")
        memory = sysv_ipc.attach(shmid)
        turns.give("parent")

        turns.take("child")
        lesson.pause()
        text = memory.read().rstrip(b"\0").decode()
        lesson.step(6, f"child {me} reads {text!r} from {what}", pause=False)
        turns.give("parent")

        turns.take("child")
        lesson.step(8, f"child {me} detaches {what} (shmdt) and exits: nattch 1")
        memory.detach()

    lesson.pause()
    child_pid = lesson.fork(child)
    lesson.step(2, f"parent {parent} forks child {child_pid}; nothing is attached yet, so the child inherits "
                   f"no attachment", pause=False)

    lesson.step(3, f"parent {parent} attaches {what} (shmat): nattch 1")
    segment.attach()
    turns.give("child")
    turns.take("parent")

    message = f"Hello from {parent}".encode()
    lesson.step(5, f"parent {parent} writes {message.decode()!r} into {what}")
    segment.write(message)
    turns.give("child")
    turns.take("parent")

    lesson.step(7, f"parent {parent} marks {what} for removal (shmctl IPC_RMID) while both are attached: "
                   f"its key becomes 0 (private) and it lives on until the last detach")
    segment.remove()
    turns.give("child")
    lesson.reap(child_pid)

    lesson.step(9, f"parent {parent} detaches {what} (shmdt): nattch 0, and the kernel destroys it")
    segment.detach()


def main() -> None:
    lesson = Lesson(__doc__ or "", steps=9)
    turns = Turns("parent", "child")
    lesson.run(lambda: lesson_round(lesson, turns))


if __name__ == "__main__":
    main()
