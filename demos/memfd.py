#!/usr/bin/env python3
"""memfd and anonymous shared memory: a region shared across fork, and a memfd passed to another process.

Shared memory with no name in /dev/shm, as modern programs do it (Wayland, browsers, PipeWire):

    mmap(MAP_SHARED | MAP_ANONYMOUS)   a region of fresh zeroed memory; a child forked afterwards shares it
    memfd_create(name)                 an anonymous file of memory, known only by its descriptors
    ftruncate(fd, size)                give it a size
    sendmsg(SCM_RIGHTS)                pass the descriptor to another process over a UNIX socket (unix(7))
    mmap(fd, MAP_SHARED)               map it: the same pages in every process that maps it
    close(fd), munmap()                there is no name to unlink: the memory goes with its last holder

Watch it with `ipcmon` (or `ipcmon snapshot --kind memfd`): the anonymous region's holders go 1 → 2 → 1
and it is gone; the memfd is held by the parent's fd, then also by the receiver's, then by the receiver's
mapping alone (and the duplicate descriptor Python's mmap keeps), and it is gone when the receiver exits.
"""

from __future__ import annotations

import mmap
import os
import socket

from demokit import Lesson, Turns

SIZE = 8192


class Descriptor:
    """A descriptor closed once, whichever comes first: the lesson's close or the cleanup on Ctrl-C."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def close(self) -> None:
        """Close it; FileNotFoundError when it is closed already (demokit's "already gone")."""
        if self.fd is None:
            raise FileNotFoundError("closed already")
        fd, self.fd = self.fd, None
        os.close(fd)


def unmap(region: mmap.mmap) -> None:
    """munmap(2) the region; FileNotFoundError when it is unmapped already (demokit's "already gone")."""
    if region.closed:
        raise FileNotFoundError("unmapped already")
    region.close()


def lesson_round(lesson: Lesson, turns: Turns) -> None:
    parent = os.getpid()

    # -- an anonymous shared region, inherited across fork ------------------------------------------------
    lesson.step(1, f"parent {parent} maps an anonymous shared region of {SIZE} bytes (mmap MAP_SHARED|"
                   f"MAP_ANONYMOUS): ipcmon shows it as 'anonymous', /dev/zero (deleted) in maps, 1 holder")
    region = mmap.mmap(-1, SIZE)  # fileno -1: MAP_SHARED | MAP_ANONYMOUS
    lesson.on_cleanup("the anonymous region", unmap, region)

    def child() -> None:
        me = os.getpid()
        turns.take("child")
        message = f"Hello from child {me}".encode()
        lesson.step(3, f"child {me} writes {message.decode()!r} into the region it inherited")
        region[: len(message)] = message
        turns.give("parent")
        turns.take("child")
        text = region[:SIZE].rstrip(b"\0").decode()
        lesson.step(5, f"child {me} reads {text!r}: the parent's write, in the same pages", pause=False)
        lesson.step(6, f"child {me} exits: its mapping goes, 1 holder")

    lesson.pause()
    child_pid = lesson.fork(child)
    lesson.step(2, f"parent {parent} forks child {child_pid}: the child shares the region (2 holders)",
                pause=False)
    turns.give("child")
    turns.take("parent")
    text = region[:SIZE].rstrip(b"\0").decode()
    lesson.step(4, f"parent {parent} reads {text!r} and writes its answer over it")
    region[:SIZE] = b"\0" * SIZE
    answer = f"Hello back from parent {parent}".encode()
    region[: len(answer)] = answer
    turns.give("child")
    lesson.reap(child_pid)

    # -- a memfd, passed to another process over a UNIX socket --------------------------------------------
    name = lesson.name("frames").lstrip("/")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def receiver() -> None:
        me = os.getpid()
        ours.close()
        region.close()  # forked after the region was mapped: drop our copy, this part is about the memfd
        _, (fd,), _, _ = socket.recv_fds(theirs, 16, 1)
        lesson.step(9, f"receiver {me} gets the descriptor as its fd {fd} (recvmsg SCM_RIGHTS): 2 holders")
        turns.give("parent")
        turns.take("receiver")
        lesson.step(10, f"receiver {me} maps memfd:{name} (mmap MAP_SHARED) and closes fd {fd}: it holds "
                        f"the memory by its mapping (and by the duplicate descriptor Python's mmap keeps)")
        frames = mmap.mmap(fd, SIZE)
        os.close(fd)
        turns.give("parent")
        turns.take("receiver")
        text = frames[:SIZE].rstrip(b"\0").decode()
        lesson.step(12, f"receiver {me} reads {text!r}; then unmaps and exits: memfd:{name} is gone, "
                        f"there was no name to unlink")
        frames.close()

    lesson.step(7, f"parent {parent} forks a receiver process, connected by a UNIX socket pair (socketpair)")
    receiver_pid = lesson.fork(receiver)
    theirs.close()
    with lesson.uninterrupted():  # registered before a stop can act
        memfd = Descriptor(os.memfd_create(name, os.MFD_CLOEXEC))
        lesson.on_cleanup(f"memfd:{name}", memfd.close)
    assert memfd.fd is not None
    os.ftruncate(memfd.fd, SIZE)
    os.pwrite(memfd.fd, f"frame 1 from parent {parent}".encode(), 0)
    lesson.step(8, f"parent {parent} creates memfd:{name} (memfd_create, ftruncate to {SIZE} bytes), writes a "
                   f"frame, and sends its fd {memfd.fd} to receiver {receiver_pid} (sendmsg SCM_RIGHTS)")
    socket.send_fds(ours, [b"x"], [memfd.fd])
    turns.take("parent")
    turns.give("receiver")
    turns.take("parent")
    lesson.step(11, f"parent {parent} closes its fd {memfd.fd}: only the receiver holds memfd:{name}")
    memfd.close()
    ours.close()
    turns.give("receiver")
    lesson.reap(receiver_pid)

    lesson.step(13, f"parent {parent} unmaps the anonymous region (munmap): it is gone too")
    region.close()


def main() -> None:
    lesson = Lesson(__doc__ or "", steps=13)
    turns = Turns("parent", "child", "receiver")
    lesson.run(lambda: lesson_round(lesson, turns))


if __name__ == "__main__":
    main()
