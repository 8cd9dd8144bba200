"""Nothing consumed: scanning never takes a message or a byte, never wakes a blocked process, and never
disturbs a registered mq_notify. The one change reading makes (a queue file's atime and ctime) is pinned
down here as README.md documents it.
"""

from __future__ import annotations

import os
import select
import signal
import time
from pathlib import Path

import posix_ipc

from ipcmon.collect import ScanConfig, scan
from ipcmon.model import MessageQueue, Pipe, Snapshot
from tests.helpers import Child, Cleanup, Spawn, new_name, proc_view, wait_until

MQUEUE_DIR = "/dev/mqueue"
SCANS = 1000


def queue_named(snapshot: Snapshot, name: str) -> MessageQueue:
    (found,) = [queue for queue in snapshot.mqueues if queue.name == name]
    return found


def pipe_with_inode(snapshot: Snapshot, inode: int) -> Pipe:
    (found,) = [pipe for pipe in snapshot.pipes if pipe.inode == inode]
    return found


def said_nothing(child: Child) -> bool:
    """True when the child has written nothing more to its stdout (it is still inside its blocking call)."""
    assert child.popen.stdout is not None
    ready, _, _ = select.select([child.popen.stdout], [], [], 0)
    return not ready


def wchan(pid: int) -> str:
    return Path(f"/proc/{pid}/wchan").read_text()


HOLDER = """
    import posix_ipc
    q = posix_ipc.MessageQueue({name!r})
    say("ready", q.mqd)
    hold()
"""


def test_a_thousand_scans_leave_queue_messages_pipe_and_fifo_bytes_exactly_as_they_were(
    spawn: Spawn, cleanup: Cleanup, tmp_path: Path
) -> None:
    name = cleanup.mqueue(new_name("kept"))
    queue = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=8, max_message_size=64)
    sent = [(b"first", 0), (b"urgent", 5), (b"second", 0), (b"\x00bin\xff", 1), (b"third", 0)]
    for message, priority in sent:
        queue.send(message, priority=priority)
    pipe_bytes = os.urandom(3000)
    read_end, write_end = os.pipe()
    os.write(write_end, pipe_bytes)
    fifo = str(cleanup.path(str(tmp_path / "kept.fifo")))
    os.mkfifo(fifo)
    fifo_fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    os.write(fifo_fd, pipe_bytes[::-1])
    holder = spawn(HOLDER.format(name=name), pass_fds=(read_end, write_end, fifo_fd), comm="ipcm-keeper")
    holder.expect()
    inode = os.fstat(read_end).st_ino
    fifo_inode = os.fstat(fifo_fd).st_ino
    config = ScanConfig(proc=proc_view(tmp_path / "proc", [holder.pid, os.getpid()]), mqueue_dir=MQUEUE_DIR)

    for _ in range(SCANS):
        snapshot = scan(config)
        seen = queue_named(snapshot, name)
        assert (seen.messages, seen.qsize_bytes) == (len(sent), sum(len(message) for message, _ in sent))
        assert pipe_with_inode(snapshot, inode).buffered == len(pipe_bytes)
        assert pipe_with_inode(snapshot, fifo_inode).buffered == len(pipe_bytes)

    # Highest priority first, then first in, first out, exactly as sent.
    expected = sorted(sent, key=lambda item: -item[1])
    queue.block = False
    received = [queue.receive() for _ in sent]
    assert received == expected
    assert queue.current_messages == 0
    queue.close()
    os.set_blocking(read_end, False)
    assert os.read(read_end, 65536) == pipe_bytes
    assert os.read(fifo_fd, 65536) == pipe_bytes[::-1]
    for fd in (read_end, write_end, fifo_fd):
        os.close(fd)


BLOCKED = {
    "pipe-reader": """
        fd = {fd}
        say("ready")
        data = os.read(fd, 100)
        say("returned", data.hex())
    """,
    "pipe-writer": """
        fd = {fd}
        fill_pipe(fd)
        say("ready")
        written = os.write(fd, b"LAST")
        say("returned", written)
    """,
    "mq-receiver": """
        import posix_ipc
        q = posix_ipc.MessageQueue({name!r})
        say("ready")
        message, priority = q.receive()
        say("returned", message.hex())
    """,
    "mq-sender": """
        import posix_ipc
        q = posix_ipc.MessageQueue({name!r})
        say("ready")
        q.send(b"late")
        say("returned", "sent")
    """,
    "fifo-opener": """
        say("ready")
        fd = os.open({path!r}, os.O_RDONLY)
        say("returned", os.read(fd, 100).hex())
    """,
}


def test_processes_blocked_on_pipes_queues_and_a_fifo_open_stay_blocked_through_scans(
    spawn: Spawn, cleanup: Cleanup, tmp_path: Path
) -> None:
    empty_name = cleanup.mqueue(new_name("empty"))
    empty = posix_ipc.MessageQueue(empty_name, posix_ipc.O_CREX, max_messages=1, max_message_size=16)
    full_name = cleanup.mqueue(new_name("full"))
    full = posix_ipc.MessageQueue(full_name, posix_ipc.O_CREX, max_messages=1, max_message_size=16)
    full.send(b"occupant")
    empty_read, empty_write = os.pipe()
    full_read, full_write = os.pipe()
    fifo = str(cleanup.path(str(tmp_path / "lonely.fifo")))
    os.mkfifo(fifo)

    children = {
        "pipe-reader": spawn(BLOCKED["pipe-reader"].format(fd=empty_read), pass_fds=(empty_read,)),
        "pipe-writer": spawn(BLOCKED["pipe-writer"].format(fd=full_write), pass_fds=(full_write,)),
        "mq-receiver": spawn(BLOCKED["mq-receiver"].format(name=empty_name)),
        "mq-sender": spawn(BLOCKED["mq-sender"].format(name=full_name)),
        "fifo-opener": spawn(BLOCKED["fifo-opener"].format(path=fifo)),
    }
    os.close(empty_read)
    os.close(full_write)
    blocked_in = {}
    for role, child in children.items():
        child.expect()
        wait_until(lambda child=child: wchan(child.pid) not in ("", "0"), f"{role} to block")
        time.sleep(0.05)
        blocked_in[role] = wchan(child.pid)
    pids = [child.pid for child in children.values()]
    configs = [
        ScanConfig(proc=proc_view(tmp_path / "proc", [*pids, os.getpid()]), mqueue_dir=MQUEUE_DIR),
        # No mount: the queue is read through a borrowed copy of a holder's descriptor instead.
        ScanConfig(proc=str(tmp_path / "proc"), find_mqueue=False),
        ScanConfig(),  # once over the whole machine
    ]
    for config in configs:
        for _ in range(50 if config.proc != "/proc" else 1):
            snapshot = scan(config)
        assert "full" in pipe_with_inode(snapshot, os.fstat(full_read).st_ino).flags
    waiting = {process.pid: process.waiting for process in snapshot.processes if process.pid in pids}
    assert waiting[children["pipe-reader"].pid] is not None
    assert waiting[children["mq-sender"].pid] is not None

    for role, child in children.items():
        assert said_nothing(child), f"{role} returned from its blocking call during the scans"
        assert wchan(child.pid) == blocked_in[role], f"{role} moved from {blocked_in[role]} to {wchan(child.pid)}"

    # Release each one: it returns with exactly what was waiting for it, so it really was blocked there.
    os.write(empty_write, b"wake")
    assert children["pipe-reader"].expect("returned") == [b"wake".hex()]
    os.set_blocking(full_read, False)
    while children["pipe-writer"].popen.poll() is None and said_nothing(children["pipe-writer"]):
        try:
            os.read(full_read, 65536)
        except BlockingIOError:
            time.sleep(0.01)
    assert children["pipe-writer"].expect("returned") == ["4"]
    empty.send(b"for you")
    assert children["mq-receiver"].expect("returned") == [b"for you".hex()]
    assert full.receive()[0] == b"occupant"
    assert children["mq-sender"].expect("returned") == ["sent"]
    assert full.receive()[0] == b"late"
    writer = os.open(fifo, os.O_WRONLY)
    os.write(writer, b"hi")
    assert children["fifo-opener"].expect("returned") == [b"hi".hex()]
    for fd in (writer, empty_write, full_read):
        os.close(fd)
    empty.close()
    full.close()


NOTIFIED = """
    import posix_ipc
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
    q = posix_ipc.MessageQueue({name!r})
    q.request_notification(signal.SIGUSR1)
    say("ready")
    info = signal.sigtimedwait({{signal.SIGUSR1}}, 30)
    say("notified", info.si_signo if info else "none")
"""


def test_scans_leave_a_registered_mq_notify_in_place_and_it_still_fires_for_its_owner(
    spawn: Spawn, cleanup: Cleanup, tmp_path: Path
) -> None:
    name = cleanup.mqueue(new_name("notify"))
    queue = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=4, max_message_size=32)
    owner = spawn(NOTIFIED.format(name=name), comm="ipcm-notified")
    owner.expect()
    proc = proc_view(tmp_path / "proc", [owner.pid])
    # Through the mount (ipcmon's own read-only open) and through a borrowed copy of the owner's descriptor:
    # closing either must not drop the registration (the kernel drops it only when the owner closes).
    for config in (ScanConfig(proc=proc, mqueue_dir=MQUEUE_DIR), ScanConfig(proc=proc, find_mqueue=False)):
        for _ in range(100):
            seen = queue_named(scan(config), name)
            assert (seen.notify_pid, seen.notify, seen.signo) == (owner.pid, 0, signal.SIGUSR1)
    assert said_nothing(owner)
    queue.send(b"ping")
    assert owner.expect("notified") == [str(int(signal.SIGUSR1))]
    assert queue.receive()[0] == b"ping"
    queue.close()


def _next_second() -> None:
    """Sleep into the next wall-clock second (the mqueue filesystem's timestamps here have 1 s granularity)."""
    time.sleep(1.05 - time.time() % 1)


def test_the_only_change_reading_makes_is_a_queue_files_atime_and_ctime(
    spawn: Spawn, cleanup: Cleanup, tmp_path: Path
) -> None:
    name = cleanup.mqueue(new_name("times"))
    queue = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=4, max_message_size=32)
    queue.send(b"x")
    segment = cleanup.shm(new_name("times"))
    posix_ipc.SharedMemory(segment, posix_ipc.O_CREX, size=4096).close_fd()
    fifo = str(cleanup.path(str(tmp_path / "times.fifo")))
    os.mkfifo(fifo)
    fifo_fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
    os.write(fifo_fd, b"abc")
    holder = spawn(HOLDER.format(name=name), pass_fds=(fifo_fd,))
    holder.expect()
    paths = {"queue": f"{MQUEUE_DIR}{name}", "segment": f"/dev/shm{segment}", "fifo": fifo}
    _next_second()
    before = {what: os.stat(path) for what, path in paths.items()}
    _next_second()
    snapshot = scan(ScanConfig(proc=proc_view(tmp_path / "proc", [holder.pid]), mqueue_dir=MQUEUE_DIR))
    assert queue_named(snapshot, name).messages == 1
    after = {what: os.stat(path) for what, path in paths.items()}

    def times(st: os.stat_result) -> tuple[int, int, int]:
        return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns

    assert times(after["segment"]) == times(before["segment"])
    assert times(after["fifo"]) == times(before["fifo"])
    assert after["queue"].st_mtime_ns == before["queue"].st_mtime_ns
    assert after["queue"].st_atime_ns > before["queue"].st_atime_ns  # reading QSIZE (ipc/mqueue.c)
    assert after["queue"].st_ctime_ns > before["queue"].st_ctime_ns
    os.close(fifo_fd)
    queue.close()
