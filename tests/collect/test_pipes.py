"""Pipes and FIFOs: real pipes between child processes, read back through scan() and checked against lsof."""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipcmon.model import Pipe, PipeEnd, Snapshot
from tests.helpers import Spawn, proc_view, scan_kinds, tool, wait_until


def pipe_by_inode(snapshot: Snapshot, inode: int) -> Pipe:
    found = [p for p in snapshot.pipes if p.inode == inode and p.kind == "pipe"]
    assert len(found) == 1, f"pipe {inode} appears {len(found)} times"
    return found[0]


class OwnPipe:
    """A new pipe in this process; close() the ends handed to children so only they hold them."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        self.inode = os.fstat(self.read_end).st_ino
        self.capacity = fcntl.fcntl(self.read_end, fcntl.F_GETPIPE_SZ)
        self._open = {self.read_end, self.write_end}

    def close(self, *ends: int) -> None:
        for fd in ends:
            self._open.discard(fd)
            os.close(fd)

    def close_all(self) -> None:
        self.close(*self._open)


@pytest.fixture
def pipe() -> Iterator[OwnPipe]:
    made = OwnPipe()
    yield made
    made.close_all()  # only ends still ours: a closed number may already be reused by something else


WRITER = """
    os.write({fd}, b"w" * {count})
    say("ready")
    hold()
"""
HOLDER = """
    say("ready")
    hold()
"""
READER = """
    say("ready")
    for command in commands():
        say("got", os.read({fd}, int(command)).hex())
"""


def test_pipe_between_two_processes_with_bytes_buffered(
    spawn: Spawn, pipe: OwnPipe
) -> None:
    read_end, write_end, inode, capacity = pipe.read_end, pipe.write_end, pipe.inode, pipe.capacity
    writer = spawn(WRITER.format(fd=write_end, count=1234), pass_fds=(write_end,), comm="ipcm-writer")
    reader = spawn(HOLDER, pass_fds=(read_end,), comm="ipcm-reader")
    pipe.close(read_end, write_end)
    writer.expect()
    reader.expect()

    found = pipe_by_inode(scan_kinds("pipe"), inode)
    assert found.kind == "pipe"
    assert found.path is None
    assert (found.buffered, found.capacity) == (1234, capacity)
    assert found.writers == (PipeEnd(pid=writer.pid, comm="ipcm-writer", fd=write_end),)
    assert found.readers == (PipeEnd(pid=reader.pid, comm="ipcm-reader", fd=read_end),)
    assert found.flags == ()


def test_pipe_holders_agree_with_lsof(spawn: Spawn, pipe: OwnPipe) -> None:
    read_end, write_end, inode = pipe.read_end, pipe.write_end, pipe.inode
    writer = spawn(WRITER.format(fd=write_end, count=10), pass_fds=(write_end,))
    reader = spawn(HOLDER, pass_fds=(read_end,))
    pipe.close(read_end, write_end)
    writer.expect()
    reader.expect()

    found = pipe_by_inode(scan_kinds("pipe"), inode)
    ours = {(end.pid, str(end.fd), "r") for end in found.readers}
    ours |= {(end.pid, str(end.fd), "w") for end in found.writers}

    # lsof -F: p starts a process, f a file; a is its access (r, w, u), i its inode.
    output = subprocess.run(
        [tool("lsof"), "-n", "-w", "-F", "pfai", "-p", f"{writer.pid},{reader.pid}"],
        capture_output=True, text=True, check=False,
    ).stdout
    theirs = set()
    pid = fd = access = ""
    for line in output.splitlines():
        field, value = line[:1], line[1:]
        if field == "p":
            pid = value
        elif field == "f":
            fd, access = value, ""
        elif field == "a":
            access = value
        elif field == "i" and value == str(inode):
            theirs.add((int(pid), fd, access))
    assert ours == theirs == {(writer.pid, str(write_end), "w"), (reader.pid, str(read_end), "r")}


def test_pipe_without_reader_is_flagged(spawn: Spawn, pipe: OwnPipe) -> None:
    read_end, write_end, inode = pipe.read_end, pipe.write_end, pipe.inode
    writer = spawn(HOLDER, pass_fds=(write_end,), comm="ipcm-writer")
    pipe.close(read_end, write_end)
    writer.expect()

    found = pipe_by_inode(scan_kinds("pipe"), inode)
    assert found.readers == ()
    assert found.writers == (PipeEnd(pid=writer.pid, comm="ipcm-writer", fd=write_end),)
    assert found.flags == ("no-reader",)
    assert found.buffered == 0


def test_process_holding_both_ends_is_flagged(spawn: Spawn) -> None:
    child = spawn(
        """
        read_end, write_end = os.pipe()
        os.write(write_end, b"to myself!!!")
        say("ready", os.fstat(read_end).st_ino, read_end, write_end)
        hold()
        """,
        comm="ipcm-forgetful",
    )
    inode, read_end, write_end = (int(word) for word in child.expect())

    found = pipe_by_inode(scan_kinds("pipe"), inode)
    assert found.flags == ("both-ends",)
    assert found.buffered == 12
    assert found.readers == (PipeEnd(pid=child.pid, comm="ipcm-forgetful", fd=read_end),)
    assert found.writers == (PipeEnd(pid=child.pid, comm="ipcm-forgetful", fd=write_end),)


def test_full_pipe_is_flagged(spawn: Spawn, pipe: OwnPipe) -> None:
    read_end, write_end, inode, capacity = pipe.read_end, pipe.write_end, pipe.inode, pipe.capacity
    writer = spawn(
        f"""
        os.set_blocking({write_end}, False)
        written = 0
        try:
            while True:
                written += os.write({write_end}, b"f" * 4096)
        except BlockingIOError:
            pass
        say("ready", written)
        hold()
        """,
        pass_fds=(write_end,),
    )
    reader = spawn(HOLDER, pass_fds=(read_end,))
    pipe.close(read_end, write_end)
    (written,) = writer.expect()
    reader.expect()

    found = pipe_by_inode(scan_kinds("pipe"), inode)
    assert int(written) == capacity
    assert (found.buffered, found.capacity) == (capacity, capacity)
    assert found.flags == ("full",)


def test_fifo_with_a_reader_and_a_writer(spawn: Spawn, tmp_path: Path) -> None:
    path = tmp_path / "ipcmon-test-fifo"
    os.mkfifo(path, 0o620)
    # The reader opens without blocking, so the writer's open finds it there and does not block either.
    reader = spawn(f'fd = os.open({str(path)!r}, os.O_RDONLY | os.O_NONBLOCK)\nsay("ready", fd)\nhold()\n',
                   comm="ipcm-fiforeader")
    (reader_fd,) = reader.expect()
    writer = spawn(f'fd = os.open({str(path)!r}, os.O_WRONLY)\nos.write(fd, b"12345")\nsay("ready", fd)\nhold()\n',
                   comm="ipcm-fifowriter")
    (writer_fd,) = writer.expect()

    st = os.stat(path)
    found = [p for p in scan_kinds("pipe").pipes if (p.dev, p.inode) == (st.st_dev, st.st_ino)]
    assert len(found) == 1
    (fifo,) = found
    assert fifo.kind == "fifo"
    assert fifo.path == str(path)
    assert fifo.buffered == 5
    assert fifo.readers == (PipeEnd(pid=reader.pid, comm="ipcm-fiforeader", fd=int(reader_fd)),)
    assert fifo.writers == (PipeEnd(pid=writer.pid, comm="ipcm-fifowriter", fd=int(writer_fd)),)
    assert fifo.flags == ()


def test_scans_leave_buffered_bytes_in_place(spawn: Spawn, pipe: OwnPipe, tmp_path: Path) -> None:
    read_end, write_end, inode = pipe.read_end, pipe.write_end, pipe.inode
    data = bytes(range(256)) * 3
    os.write(write_end, data)
    reader = spawn(READER.format(fd=read_end), pass_fds=(read_end,))
    pipe.close(read_end)
    reader.expect()

    proc = proc_view(tmp_path / "proc", [reader.pid, os.getpid()])
    for _ in range(50):
        assert pipe_by_inode(scan_kinds("pipe", proc=proc), inode).buffered == len(data)
    reader.tell(str(len(data) + 100))
    (received,) = reader.expect("got")
    assert bytes.fromhex(received) == data


def test_scans_do_not_wake_a_blocked_reader(spawn: Spawn, pipe: OwnPipe, tmp_path: Path) -> None:
    read_end, write_end, inode = pipe.read_end, pipe.write_end, pipe.inode
    reader = spawn(READER.format(fd=read_end), pass_fds=(read_end,))
    pipe.close(read_end)
    reader.expect()
    reader.tell("100")
    wait_until(lambda: "pipe_read" in Path(f"/proc/{reader.pid}/wchan").read_text(), "the reader to block in read")

    proc = proc_view(tmp_path / "proc", [reader.pid, os.getpid()])
    for _ in range(50):
        found = pipe_by_inode(scan_kinds("pipe", proc=proc), inode)
        assert found.buffered == 0
        assert found.readers == (PipeEnd(pid=reader.pid, comm=found.readers[0].comm, fd=read_end),)
    assert reader.popen.stdout is not None
    readable, _, _ = select.select([reader.popen.stdout], [], [], 0)
    assert not readable, "the reader returned from read() during the scans"
    assert "pipe_read" in Path(f"/proc/{reader.pid}/wchan").read_text()

    os.write(write_end, b"wake up")
    (received,) = reader.expect("got")
    assert bytes.fromhex(received) == b"wake up"
