#!/usr/bin/env python3
"""Stress: many processes, pipes, shared memory segments and message queues at once, held until stopped.

For seeing ipcmon at scale and for benchmarking it. The sizes come from the flags, e.g.

    stress.py --processes 500 --pipes 5000 --segments 2000 --queues 200

Work is dealt out round robin: process k holds the write end of every pipe i with i % processes == k
(the demo holds the read ends), maps every segment with that index, and opens every such queue. When all
is in place it prints one line, `ready: N processes, …`, then holds until Ctrl-C, SIGTERM or --duration.
"""

from __future__ import annotations

import argparse
import mmap
import os
import resource
import signal
import time
from collections.abc import Iterable

import posix_ipc
from demokit import Lesson

SEGMENT_SIZE = 4096
QUEUE_CAPACITY = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--processes", type=int, default=20, help="child processes (default 20)")
    parser.add_argument("--pipes", type=int, default=100, help="pipes, child → demo (default 100)")
    parser.add_argument("--segments", type=int, default=50, help="POSIX shm segments of 4 KiB (default 50)")
    parser.add_argument("--queues", type=int, default=10, help="POSIX message queues (default 10)")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this long (default: hold until interrupted)")


def raise_limits(pipes: int, segments: int) -> None:
    """Lift the open-file and message-queue limits as far as the hard limits (or root) allow."""
    wanted_files = 2 * pipes + segments + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted_files:
        target = wanted_files if hard == resource.RLIM_INFINITY else min(wanted_files, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    try:  # RLIMIT_MSGQUEUE counts queue memory per user; only root may raise the hard limit
        resource.setrlimit(resource.RLIMIT_MSGQUEUE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass


def read_limit(path: str) -> str:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return "a limited number of"


def close_all_but(keep: Iterable[int]) -> None:
    """Close every descriptor above 2 except those in keep (close_range(2) over the gaps)."""
    low = 3
    for fd in sorted(set(keep)):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def main() -> None:
    lesson = Lesson(__doc__ or "", steps=4, default_step=0.0, can_loop=False, add_arguments=add_arguments)
    args = lesson.args
    count = max(args.processes, 1)

    def lesson_round() -> None:
        parent = os.getpid()
        raise_limits(args.pipes, args.segments)

        segment_names = [lesson.name(f"seg-{i}") for i in range(args.segments)]
        lesson.step(1, f"stress {parent} creates {args.segments} segments of {SEGMENT_SIZE} bytes "
                       f"({lesson.name('seg-*')}), one page of each written")
        for name in segment_names:
            lesson.on_cleanup(name, posix_ipc.unlink_shared_memory, name)
            segment = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=SEGMENT_SIZE)
            os.pwrite(segment.fd, b"stress", 0)
            segment.close_fd()

        queue_names = [lesson.name(f"q-{i}") for i in range(args.queues)]
        lesson.step(2, f"stress {parent} creates {args.queues} queues ({lesson.name('q-*')}) filled 0 to "
                       f"{QUEUE_CAPACITY} of {QUEUE_CAPACITY}")
        for i, name in enumerate(queue_names):
            lesson.on_cleanup(name, posix_ipc.unlink_message_queue, name)
            try:
                queue = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=QUEUE_CAPACITY,
                                               max_message_size=64)
            except OSError as error:  # ENOSPC: the system-wide count (every user's queues) is at its limit
                raise SystemExit(
                    f"stress: could not create queue {i + 1} of {args.queues} ({error}); the system allows "
                    f"{read_limit('/proc/sys/fs/mqueue/queues_max')} queues in all (fs.mqueue.queues_max; "
                    f"root without CAP_SYS_RESOURCE is held to it too): ask for fewer, or raise it with "
                    f"sysctl -w fs.mqueue.queues_max=N"
                ) from None
            for number in range(i % (QUEUE_CAPACITY + 1)):
                queue.send(f"message {number}".encode())
            queue.close()

        lesson.step(3, f"stress {parent} forks {count} processes; each holds its share of {args.pipes} pipes "
                       f"(write ends; the demo keeps the read ends), segments (mapped) and queues (open)")
        ready = os.eventfd(0)  # each child adds 1 when it holds all its share
        for k in range(count):
            pipes = [os.pipe() for _ in range(k, args.pipes, count)]
            my_segments = segment_names[k::count]
            my_queues = queue_names[k::count]

            def child(pipes: list[tuple[int, int]] = pipes, my_segments: list[str] = my_segments,
                      my_queues: list[str] = my_queues) -> None:
                write_ends = [write_end for _, write_end in pipes]
                close_all_but([ready, *write_ends])  # the read ends and every earlier child's share
                held: list[object] = []
                for name in my_segments:
                    segment = posix_ipc.SharedMemory(name)
                    held.append(mmap.mmap(segment.fd, SEGMENT_SIZE))
                    segment.close_fd()
                held.extend(posix_ipc.MessageQueue(name, write=False) for name in my_queues)
                os.eventfd_write(ready, 1)
                while True:
                    signal.pause()

            lesson.fork(child)
            for _, write_end in pipes:
                os.close(write_end)

        holding = 0
        while holding < count:
            holding += os.eventfd_read(ready)
        lesson.say(f"ready: {count} processes, {args.pipes} pipes, {args.segments} segments, {args.queues} queues "
                   f"(stress {parent})")
        if args.duration is None:
            lesson.step(4, f"stress {parent} holds everything until Ctrl-C or SIGTERM")
            while True:
                signal.pause()
        lesson.step(4, f"stress {parent} holds everything for {args.duration:g} s")
        time.sleep(args.duration)

    lesson.run(lesson_round)


if __name__ == "__main__":
    main()
