#!/usr/bin/env python3
"""POSIX message queues: a producer and a consumer pass messages through a kernel mailbox.

The calls, as in mq_overview(7):

    mq_open(name, O_CREAT | O_EXCL, attr)   create a queue (it appears as /dev/mqueue/NAME) holding at
                                            most attr.mq_maxmsg messages of attr.mq_msgsize bytes
    mq_send / mq_receive                    blocking by default: a send to a full queue and a receive
                                            from an empty one wait
    O_NONBLOCK                              instead they fail at once with EAGAIN
    mq_notify(SIGEV_SIGNAL)                 ask for a signal when a message arrives in the empty queue
    mq_unlink(name)                         destroy the queue

Watch it with `ipcmon` (or `ipcmon snapshot --kind mqueue`): the queue fills to 4/4 and drains, and the
blocked producer and consumer show as waiting on it.
"""

from __future__ import annotations

import os
import signal

import posix_ipc
from demokit import Lesson, Turns

CAPACITY = 4
MESSAGE_SIZE = 64


def lesson_round(lesson: Lesson, turns: Turns) -> None:
    name = lesson.name("mq")
    parent = os.getpid()

    lesson.on_cleanup(name, posix_ipc.unlink_message_queue, name)
    lesson.step(1, f"parent {parent} creates {name} (mq_open O_CREAT|O_EXCL, room for {CAPACITY} messages "
                   f"of up to {MESSAGE_SIZE} bytes) and closes its descriptor")
    posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=CAPACITY, max_message_size=MESSAGE_SIZE).close()

    def producer() -> None:
        me = os.getpid()
        queue = posix_ipc.MessageQueue(name, read=False)  # write-only, blocking (the default)
        turns.take("producer")
        lesson.step(4, f"producer {me} sends 'job 1': the kernel hands it to the waiting consumer")
        queue.send(b"job 1")
        turns.give("consumer")

        turns.take("producer")
        lesson.step(6, f"producer {me} sends 'job 2' to 'job 5': {name} is full ({CAPACITY}/{CAPACITY})")
        for number in range(2, 6):
            queue.send(f"job {number}".encode())
        lesson.step(7, f"producer {me} sends 'job 6' to the full {name}: mq_send blocks, the producer waits")
        turns.give("consumer")
        queue.send(b"job 6")  # returns only when the consumer has made room

        # Asynchronous phase: the same queue opened with O_NONBLOCK never makes the producer wait.
        queue.close()
        queue = posix_ipc.MessageQueue(name, posix_ipc.O_NONBLOCK, read=False)
        turns.take("producer")
        lesson.step(11, f"producer {me} reopens {name} with O_NONBLOCK and sends 'job 7': the queue was "
                        f"empty, so the kernel signals the consumer")
        queue.send(b"job 7")

        turns.take("producer")
        lesson.pause()
        sent = []
        for number in range(8, 8 + CAPACITY + 1):
            try:
                queue.send(f"job {number}".encode())
            except posix_ipc.BusyError:  # EAGAIN: the queue is full and O_NONBLOCK says do not wait
                lesson.step(14, f"producer {me} sends {', '.join(sent)} without waiting, then 'job {number}' "
                                f"fails with EAGAIN: {name} is full, so it keeps that job to retry later",
                            pause=False)
                break
            sent.append(f"'job {number}'")
        queue.close()
        turns.give("consumer")

    def consumer() -> None:
        me = os.getpid()
        queue = posix_ipc.MessageQueue(name, write=False)  # read-only
        turns.take("consumer")
        lesson.step(3, f"consumer {me} calls mq_receive on the empty {name}: it blocks, waiting for a message")
        turns.give("producer")
        message, _priority = queue.receive()
        turns.take("consumer")
        lesson.step(5, f"consumer {me} wakes up with {message.decode()!r}")
        turns.give("producer")

        turns.take("consumer")
        lesson.pause()
        message, _priority = queue.receive()
        lesson.step(8, f"consumer {me} receives {message.decode()!r}: that makes room, so the producer's "
                       f"blocked send completes ({CAPACITY}/{CAPACITY} again)", pause=False)
        lesson.pause()
        drained = [queue.receive()[0].decode() for _ in range(CAPACITY)]
        lesson.step(9, f"consumer {me} drains {name}: {', '.join(drained)} (0/{CAPACITY})", pause=False)

        # Asynchronous phase: ask for a signal instead of waiting in mq_receive.
        queue.close()
        queue = posix_ipc.MessageQueue(name, posix_ipc.O_NONBLOCK, write=False)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # taken below with sigwaitinfo
        lesson.step(10, f"consumer {me} registers for notification (mq_notify, SIGEV_SIGNAL SIGUSR1) and is "
                        f"free to do other work")
        queue.request_notification(signal.SIGUSR1)
        turns.give("producer")
        info = signal.sigwaitinfo({signal.SIGUSR1})
        lesson.pause()
        message, _priority = queue.receive()
        lesson.step(12, f"consumer {me} gets SIGUSR1 (sent for {name} by producer {info.si_pid}; a notification "
                        f"fires once) and receives {message.decode()!r} without blocking", pause=False)

        lesson.pause()
        try:
            queue.receive()
        except posix_ipc.BusyError:  # EAGAIN: empty, and O_NONBLOCK says do not wait
            lesson.step(13, f"consumer {me} tries again: mq_receive fails with EAGAIN at once, as {name} is "
                            f"empty; it would do other work and try later", pause=False)
        turns.give("producer")

        turns.take("consumer")
        lesson.pause()
        drained = []
        while True:
            try:
                drained.append(queue.receive()[0].decode())
            except posix_ipc.BusyError:
                break
        lesson.step(15, f"consumer {me} drains {', '.join(drained)} until EAGAIN says {name} is empty",
                    pause=False)
        queue.close()

    lesson.pause()
    producer_pid = lesson.fork(producer)
    consumer_pid = lesson.fork(consumer)
    lesson.step(2, f"parent {parent} forks producer {producer_pid} (opens {name} to write) and consumer "
                   f"{consumer_pid} (opens it to read)", pause=False)
    turns.give("consumer")
    lesson.reap(producer_pid)
    lesson.reap(consumer_pid)

    lesson.step(16, f"parent {parent} destroys {name} (mq_unlink)")
    posix_ipc.unlink_message_queue(name)


def main() -> None:
    lesson = Lesson(__doc__ or "", steps=16)
    turns = Turns("producer", "consumer")
    lesson.run(lambda: lesson_round(lesson, turns))


if __name__ == "__main__":
    main()
