"""Who waits on what: blocked pipe writers and queue senders named with their object; deadlock groups."""

from __future__ import annotations

import os

import posix_ipc

from ipcmon.live.events import diff, state_events
from ipcmon.live.monitor import mechanisms_for
from ipcmon.model import Process, Snapshot
from tests.helpers import Cleanup, Spawn, new_name, scan_kinds, wait_until

_FILL_AND_BLOCK = """
fd = {fd}
fill_pipe(fd)
say("ready")
os.write(fd, b"y" * 65536)   # blocks: the pipe is full and nobody reads
say("unblocked")
hold()
"""


def _process(snapshot: Snapshot, pid: int) -> Process:
    return next(process for process in snapshot.processes if process.pid == pid)


def _waiting(pid: int, kinds: tuple[str, ...] = ("pipe",)) -> Snapshot:
    holder: list[Snapshot] = []

    def blocked() -> bool:
        snapshot = scan_kinds(*kinds)
        holder[:] = [snapshot]
        return _process(snapshot, pid).waiting is not None

    wait_until(blocked, f"pid {pid} to be seen waiting")
    return holder[0]


def test_blocked_pipe_writer_waits_on_its_pipe(spawn: Spawn) -> None:
    read_end, write_end = os.pipe()
    try:
        before = scan_kinds("pipe")
        child = spawn(_FILL_AND_BLOCK.format(fd=write_end), pass_fds=(write_end,))
        write_fd_in_child = write_end  # pass_fds keeps the number
        os.close(write_end)
        write_end = -1
        child.expect()
        snapshot = _waiting(child.pid)
        wait = _process(snapshot, child.pid).waiting
        inode = os.fstat(read_end).st_ino
        assert wait is not None
        assert (wait.syscall, wait.fd, wait.object) == ("write", write_fd_in_child, f"pipe:[{inode}]")
        assert wait.kind == "write"
        assert wait.key == next(p.object_key for p in snapshot.pipes if p.inode == inode)
        assert "full" in next(p.flags for p in snapshot.pipes if p.inode == inode)
        blocked = [e for e in diff(before, snapshot) if e.event == "waiting" and e.pid == child.pid]
        assert blocked and blocked[0].object == f"pipe:[{inode}]" and blocked[0].detail.startswith("write(")

        os.read(read_end, 65536 * 2)  # drain: the writer finishes its write
        child.expect("unblocked")
        after = scan_kinds("pipe")
        assert any(e.event == "wait-ended" and e.pid == child.pid for e in diff(snapshot, after))
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_blocked_mq_sender_and_receiver(spawn: Spawn, cleanup: Cleanup) -> None:
    name = cleanup.mqueue(new_name("q"))
    posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=1, max_message_size=16).close()
    sender = spawn(
        f"""
        import posix_ipc
        queue = posix_ipc.MessageQueue({name!r}, read=False)
        queue.send(b"first")
        say("ready")
        queue.send(b"second")   # blocks: the queue holds one message at most
        say("sent")
        hold()
        """
    )
    sender.expect()
    snapshot = _waiting(sender.pid, ("mqueue",))
    wait = _process(snapshot, sender.pid).waiting
    assert wait is not None and wait.syscall == "mq_timedsend" and wait.object == f"mqueue:{name}"
    assert wait.kind == "send" and not wait.timed
    queue = next(q for q in snapshot.mqueues if q.name == name)
    assert wait.key == queue.object_key and queue.messages == 1

    receiver_queue = posix_ipc.MessageQueue(name, write=False)
    try:
        assert receiver_queue.receive()[0] == b"first"
        sender.expect("sent")
        assert receiver_queue.receive()[0] == b"second"
    finally:
        receiver_queue.close()
    receiver = spawn(
        f"""
        import posix_ipc
        queue = posix_ipc.MessageQueue({name!r}, write=False)
        say("ready")
        queue.receive()         # blocks: the queue is empty
        """
    )
    receiver.expect()
    snapshot = _waiting(receiver.pid, ("mqueue",))
    wait = _process(snapshot, receiver.pid).waiting
    assert wait is not None and wait.syscall == "mq_timedreceive" and wait.object == f"mqueue:{name}"
    assert wait.kind == "receive"
    entry = next(entry for entry in snapshot.stuck if entry.pid == receiver.pid)
    # The sender still has it open for sending (it holds on after its two messages).
    assert entry.state == "waiting" and entry.releasers == (sender.pid,)
    assert entry.release.startswith(f"pid {sender.pid} python3 (fd ")


def test_waiting_for_a_signal(spawn: Spawn) -> None:
    child = spawn('import signal\nsay("ready")\nsignal.pause()\n')
    child.expect()
    snapshot = _waiting(child.pid, ("signal",))
    wait = _process(snapshot, child.pid).waiting
    assert wait is not None and (wait.syscall, wait.object, wait.kind) == ("pause", "signal", "signal")


def test_two_process_pipe_deadlock_is_reported(spawn: Spawn) -> None:
    a_read, a_write = os.pipe()
    b_read, b_write = os.pipe()
    first = spawn(_FILL_AND_BLOCK.format(fd=a_write), pass_fds=(a_write, b_read))
    second = spawn(_FILL_AND_BLOCK.format(fd=b_write), pass_fds=(b_write, a_read))
    for fd in (a_read, a_write, b_read, b_write):
        os.close(fd)  # only the two children hold the pipes now
    first.expect()
    second.expect()
    found: list[tuple[int, ...]] = []

    def deadlocked() -> bool:
        snapshot = scan_kinds("pipe")
        found[:] = [group.pids for group in snapshot.deadlocks if first.pid in group.pids]
        return bool(found)

    wait_until(deadlocked, "the deadlock to be reported")
    assert found[0] == tuple(sorted((first.pid, second.pid)))


def test_a_waiter_someone_free_can_release_is_no_deadlock(spawn: Spawn) -> None:
    read_end, write_end = os.pipe()
    try:
        child = spawn(_FILL_AND_BLOCK.format(fd=write_end), pass_fds=(write_end,))
        child.expect()
        snapshot = _waiting(child.pid)
        # This test process still holds the read end and is not blocked: it could drain the pipe.
        assert not [group for group in snapshot.deadlocks if child.pid in group.pids]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_watch_s_first_state_lines_are_of_the_kinds_asked_for(spawn: Spawn, cleanup: Cleanup) -> None:
    """events.state_events with --kind's mechanisms: a receiver blocked on a queue nobody can send to is a state line
    for ``--kind mqueue``, none for ``--kind shm`` (a reviewer saw it under ``watch --kind shm``), which then says
    that nothing is blocked."""
    name = cleanup.mqueue(new_name())
    posix_ipc.MessageQueue(name, posix_ipc.O_CREX).close()
    receiver = spawn(f"import posix_ipc\nqueue = posix_ipc.MessageQueue({name!r}, write=False)\nsay('ready')\n"
                     "queue.receive()\n")
    receiver.expect()

    def blocked() -> bool:
        holder[:] = [scan_kinds("mqueue")]
        return any(entry.pid == receiver.pid and entry.state == "blocked" for entry in holder[0].stuck)

    holder: list[Snapshot] = []
    wait_until(blocked, "the receiver seen blocked")
    snapshot = holder[0]
    mine = [event for event in state_events(snapshot, mechanisms_for(("mqueue",))) if event.pid == receiver.pid]
    assert [(event.mechanism, event.event, event.object) for event in mine] == [("mqueue", "state", f"mqueue:{name}")]
    assert not [event for event in state_events(snapshot, mechanisms_for(("shm",))) if event.mechanism == "mqueue"]
