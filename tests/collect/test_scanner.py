"""Scanner: a process that has not run since the last scan is taken over; one that ran is read again.

Each test drives a real child that sleeps in read(2) on its stdin between commands, so the scheduler's
account of it stands still until the test tells it to act. The claim under test is the one the dashboard
relies on: whatever a process does to its own descriptors and mappings shows in the very next scan.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import posix_ipc
import pytest

from ipcmon.collect import ScanConfig, Scanner, pipes, procfs, scan
from ipcmon.collect import forked as forked_reader
from ipcmon.collect.fds import Devices, FdRef, read_fds
from ipcmon.collect.memory import REFRESH_SECONDS, ScanMemory
from ipcmon.collect.pipes import PipeIndex
from ipcmon.collect.pipes import collect as collect_pipes
from ipcmon.collect.process import run_signature
from ipcmon.model import Pipe, Process, ProcessSignals, ShmSegment, Snapshot
from tests.helpers import Child, Cleanup, Spawn, first_arguments, settle, wait_until

ACTOR = """
import posix_ipc, threading
def act(command):
    verb, _, arg = command.partition(" ")
    if verb == "open-shm":
        say("done", posix_ipc.SharedMemory(arg).fd)
    elif verb == "map-shm":
        segment = posix_ipc.SharedMemory(arg)
        map_fd(segment.fd, segment.size)
        segment.close_fd()
        say("done")
    elif verb == "pipe":
        read_end, write_end = os.pipe()
        say("done", os.fstat(read_end).st_ino, read_end, write_end)
    elif verb == "write":
        fd, _, count = arg.partition(" ")
        os.write(int(fd), b"x" * int(count))
        say("done")
    elif verb == "close":
        os.close(int(arg))
        say("done")
    elif verb == "rename":
        set_comm(arg)  # the calling thread's own name (PR_SET_NAME)
        say("done", threading.get_native_id())
"""
SINGLE = ACTOR + """
say("ready")
for command in commands():
    act(command)
"""
THREADED = ACTOR + """
def serve():
    for command in commands():
        act(command)
threading.Thread(target=serve).start()
say("ready")
signal.pause()  # the main thread never runs again; only the serving thread acts
"""


def segment_named(snapshot: Snapshot, name: str) -> ShmSegment:
    found = [segment for segment in snapshot.shm if segment.name == name]
    assert len(found) == 1, f"{name} appears {len(found)} times"
    return found[0]


def pipe_by_inode(snapshot: Snapshot, inode: int) -> Pipe:
    found = [pipe for pipe in snapshot.pipes if pipe.inode == inode and pipe.kind == "pipe"]
    assert len(found) == 1, f"pipe {inode} appears {len(found)} times"
    return found[0]


def process_of(snapshot: Snapshot, pid: int) -> Process:
    return next(process for process in snapshot.processes if process.pid == pid)


def ask(child: Child, command: str) -> list[str]:
    child.tell(command)
    return child.expect("done")


def new_segment(cleanup: Cleanup, name: str, size: int = 4096) -> None:
    posix_ipc.SharedMemory(cleanup.shm(name), posix_ipc.O_CREX, size=size).close_fd()


def holding_all(spawn: Spawn, cleanup: Cleanup, name: str, comm: str) -> tuple[Child, int]:
    """A child named comm that holds a new segment (a descriptor and a mapping) and both ends of a pipe; the
    child and the pipe's inode."""
    new_segment(cleanup, name)
    child = spawn(SINGLE, comm=comm)
    child.expect()
    ask(child, f"open-shm {name}")
    ask(child, f"map-shm {name}")
    return child, int(ask(child, "pipe")[0])


def test_a_process_taken_over_reads_as_a_fresh_scan(spawn: Spawn, cleanup: Cleanup, unique_name: str) -> None:
    child, inode = holding_all(spawn, cleanup, unique_name, "ipcmon-settled")

    scanner = Scanner()
    taken_over = settle(scanner, child.pid)
    fresh = scan()

    segment = segment_named(taken_over, unique_name)
    assert segment == segment_named(fresh, unique_name)
    assert sorted((h.pid, h.mapped) for h in segment.holders) == [(child.pid, False), (child.pid, True)]
    assert pipe_by_inode(taken_over, inode) == pipe_by_inode(fresh, inode)
    mine = [process for process in taken_over.processes if process.pid == child.pid]
    assert mine == [process for process in fresh.processes if process.pid == child.pid]
    assert mine[0].comm == "ipcmon-settled"


@pytest.mark.parametrize("code", [SINGLE, THREADED], ids=["single-threaded", "acting-thread"])
def test_what_a_process_does_shows_in_the_next_scan(
    spawn: Spawn, cleanup: Cleanup, unique_name: str, code: str
) -> None:
    new_segment(cleanup, unique_name)
    child = spawn(code)
    child.expect()
    scanner = Scanner()
    assert all(child.pid not in {h.pid for h in s.holders} for s in settle(scanner, child.pid).shm)

    fd = int(ask(child, f"open-shm {unique_name}")[0])
    attached = scanner.scan()  # the very next scan, no waiting
    assert child.pid not in scanner.reused
    assert [(h.pid, h.fd) for h in segment_named(attached, unique_name).holders] == [(child.pid, fd)]

    settle(scanner, child.pid)
    ask(child, f"close {fd}")
    detached = scanner.scan()
    assert segment_named(detached, unique_name).holders == ()
    assert segment_named(detached, unique_name).state == "orphaned"


def test_a_holder_renamed_shows_on_its_segment_and_pipe_in_the_next_scan(
    spawn: Spawn, cleanup: Cleanup, unique_name: str
) -> None:
    """Records are reused while their holders have not run; a holder that renames itself has, and the very next
    scan names it anew on what it holds."""
    child, inode = holding_all(spawn, cleanup, unique_name, "ipcm-old")
    scanner = Scanner()
    before = settle(scanner, child.pid)
    assert {h.comm for h in segment_named(before, unique_name).holders} == {"ipcm-old"}
    ask(child, "rename ipcm-new")
    after = scanner.scan()
    assert {h.comm for h in segment_named(after, unique_name).holders} == {"ipcm-new"}
    pipe = pipe_by_inode(after, inode)
    assert {end.comm for end in pipe.readers + pipe.writers} == {"ipcm-new"}


def test_a_thread_renamed_shows_in_the_next_scan(spawn: Spawn) -> None:
    """Thread names are kept for a process taken over; a thread that renames itself has run, so it shows at once."""
    child = spawn(THREADED)
    child.expect()
    scanner = Scanner(ScanConfig(kinds=("signal",)))
    tid = int(ask(child, "rename ipcm-before")[0])
    settle(scanner, child.pid)
    names = {thread.tid: thread.comm for thread in signals_of(settle(scanner, child.pid), child.pid).threads}
    assert names[tid] == "ipcm-before"

    assert int(ask(child, "rename ipcm-after")[0]) == tid
    renamed = scanner.scan()  # the very next scan
    assert child.pid not in scanner.reused
    assert {thread.tid: thread.comm for thread in signals_of(renamed, child.pid).threads}[tid] == "ipcm-after"


def signals_of(snapshot: Snapshot, pid: int) -> ProcessSignals:
    [found] = [record for record in snapshot.signals if record.pid == pid]
    return found


def test_what_others_change_shows_for_a_process_taken_over(
    spawn: Spawn, cleanup: Cleanup, unique_name: str
) -> None:
    """Size, mode and unlinking are changed by another process while the holder sleeps."""
    new_segment(cleanup, unique_name, size=4096)
    child = spawn(SINGLE)
    child.expect()
    ask(child, f"open-shm {unique_name}")
    scanner = Scanner()
    settle(scanner, child.pid)

    path = f"/dev/shm/{unique_name.lstrip('/')}"
    os.truncate(path, 3 * 4096)
    os.chmod(path, 0o640)
    changed = settle(scanner, child.pid)
    segment = segment_named(changed, unique_name)
    assert (segment.size, segment.mode) == (3 * 4096, 0o640)

    posix_ipc.unlink_shared_memory(unique_name)
    os.truncate(f"/proc/{child.pid}/fd/{segment.holders[0].fd}", 5 * 4096)  # through the holder's own fd
    unlinked = settle(scanner, child.pid)
    segment = segment_named(unlinked, unique_name)
    assert (segment.state, segment.size, segment.mode) == ("deleted", 5 * 4096, 0o640)
    assert [h.pid for h in segment.holders] == [child.pid]


def test_a_new_parent_shows_for_a_process_taken_over(spawn: Spawn) -> None:
    """A process is reparented when its parent exits, without running itself."""
    parent = spawn("""
        grandchild = os.fork()
        if grandchild == 0:
            signal.pause()
            os._exit(0)
        say("ready", grandchild)
        hold()
    """)
    grandchild = int(parent.expect()[0])
    try:
        scanner = Scanner()
        before = settle(scanner, grandchild)
        assert [p.ppid for p in before.processes if p.pid == grandchild] == [parent.pid]
        parent.stop()
        wait_until(lambda: procfs.parse_stat(procfs.read_bytes(f"/proc/{grandchild}/stat")).ppid != parent.pid,
                   "the grandchild to be reparented")
        after = settle(scanner, grandchild)
        assert [p.ppid for p in after.processes if p.pid == grandchild] not in ([parent.pid], [])
    finally:
        os.kill(grandchild, signal.SIGKILL)


def test_a_pipe_fill_follows_its_writer(spawn: Spawn) -> None:
    child = spawn(SINGLE)
    child.expect()
    inode, _read_end, write_end = (int(word) for word in ask(child, "pipe"))
    scanner = Scanner()
    assert pipe_by_inode(settle(scanner, child.pid), inode).buffered == 0
    ask(child, f"write {write_end} 100")
    assert pipe_by_inode(scanner.scan(), inode).buffered == 100


def test_a_fifo_fill_is_read_even_when_its_holders_have_not_run(spawn: Spawn, tmp_path: object) -> None:
    """Anyone can open a FIFO by its path, write and go: its holders need not run for its fill to change."""
    fifo = os.path.join(str(tmp_path), "fifo")
    os.mkfifo(fifo)
    child = spawn(f"fd = os.open({fifo!r}, os.O_RDWR)\nsay('ready', fd)\nhold()\n")
    child.expect()
    devices = Devices(None, None)
    refs = [ref for ref in read_fds(child.pid, devices) if ref.kind == "fifo"]
    assert len(refs) == 1
    processes = {p.pid: p for p in scan().processes if p.pid == child.pid}
    index = PipeIndex()
    with procfs.PidFds() as pidfds:
        (before,) = collect_pipes(processes, refs, pidfds, index=index, settled={child.pid})
        writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.write(writer, b"y" * 64)
        os.close(writer)
        (after,) = collect_pipes(processes, refs, pidfds, index=index, settled={child.pid})
    assert (before.buffered, after.buffered) == (0, 64)


def test_an_anonymous_pipe_of_settled_holders_is_the_previous_record(spawn: Spawn) -> None:
    """The documented trade: no holder ran, so its fill is not read again (pipes.collect)."""
    child = spawn(SINGLE)
    child.expect()
    inode = int(ask(child, "pipe")[0])
    refs = [ref for ref in read_fds(child.pid, Devices(None, None)) if ref.inode == inode]
    processes = {p.pid: p for p in scan().processes if p.pid == child.pid}
    index = PipeIndex()
    with procfs.PidFds() as pidfds:
        (first,) = collect_pipes(processes, refs, pidfds, index=index, settled={child.pid})
        (again,) = collect_pipes(processes, refs, pidfds, index=index, settled={child.pid})
        (unsettled,) = collect_pipes(processes, refs, pidfds, index=index, settled=set())
    assert again is first
    assert unsettled is first  # read again, found equal: still the same record
    assert (first.buffered, len(first.readers), len(first.writers)) == (0, 1, 1)


def test_a_holder_s_turn_that_finds_its_pipes_as_they_were_hands_the_same_tuple(spawn: Spawn) -> None:
    """A turn reads the fills of its holder's pipes again (turned); when every record is the one it was, the result
    is the previous tuple itself, which later readers (events.diff, waiting.analyse's keyed pipes) take as
    unchanged; a fill that moved makes a new one."""
    child = spawn(SINGLE)
    child.expect()
    inode, _read_end, write_end = (int(word) for word in ask(child, "pipe"))
    listed = {child.pid: [ref for ref in read_fds(child.pid, Devices(None, None)) if ref.inode == inode]}
    refs = listed[child.pid]
    processes = {p.pid: p for p in scan().processes if p.pid == child.pid}
    index = PipeIndex()
    with procfs.PidFds() as pidfds:
        first = collect_pipes(processes, refs, pidfds, index=index, settled={child.pid}, fds_by_pid=listed)
        turn = collect_pipes(processes, refs, pidfds, index=index, settled={child.pid}, turned={child.pid},
                             fds_by_pid=listed)
        assert index.looked_at == 1
        outside = os.open(f"/proc/{child.pid}/fd/{write_end}", os.O_WRONLY)
        try:
            os.write(outside, b"z" * 10)
        finally:
            os.close(outside)
        settled = collect_pipes(processes, refs, pidfds, index=index, settled={child.pid}, fds_by_pid=listed)
        moved = collect_pipes(processes, refs, pidfds, index=index, settled={child.pid}, turned={child.pid},
                              fds_by_pid=listed)
    assert turn is first
    assert settled is first  # no holder ran and it is not its turn: the fill is not read
    assert moved is not first and pipe_by_inode_in(moved, inode).buffered == 10


def pipe_by_inode_in(pipes: tuple[Pipe, ...], inode: int) -> Pipe:
    (found,) = [pipe for pipe in pipes if pipe.inode == inode]
    return found


def two_holders_of_a_pipe(spawn: Spawn) -> tuple[int, int, list[Child]]:
    """A pipe only two sleeping children hold, both ends each (the same descriptor numbers): its inode, the number
    of its write end, the children."""
    read_end, write_end = os.pipe()
    try:
        inode = os.fstat(read_end).st_ino
        holders = [spawn("say('ready')\nhold()\n", pass_fds=(read_end, write_end)) for _ in range(2)]
    finally:
        os.close(read_end)
        os.close(write_end)
    for holder in holders:
        holder.expect()
    return inode, write_end, holders


def test_a_pipe_s_fill_is_read_at_its_first_holder_s_turn_in_a_rotation_not_at_every_holder_s(spawn: Spawn) -> None:
    """Two sleeping processes hold one pipe. At the first one's turn its fill is read; at the other's, in the same
    rotation, it is not (a turn read it four scans ago); at the first one's next turn, a rotation later, it is
    again, and shows what was written meanwhile through /proc/PID/fd/N (an end no scanned process holds)."""
    inode, write_end, holders = two_holders_of_a_pipe(spawn)
    first, second = (holder.pid for holder in holders)
    pids = {first, second}
    listed = {pid: [ref for ref in read_fds(pid, Devices(None, None)) if ref.inode == inode] for pid in sorted(pids)}
    refs = [ref for pid in sorted(pids) for ref in listed[pid]]
    processes = {p.pid: p for p in scan().processes if p.pid in pids}
    index = PipeIndex()
    every = 10
    with procfs.PidFds() as pidfds:

        def at(scan_number: int, turned: set[int]) -> tuple[Pipe, ...]:
            return collect_pipes(processes, refs, pidfds, index=index, settled=pids, turned=turned,
                                 fds_by_pid=listed, rotation=(scan_number, every))

        at(1, set())
        assert index.looked_at == 1  # the first scan reads every pipe
        read = at(3, {first})
        assert index.looked_at == 1  # the first holder's turn: read again
        outside = os.open(f"/proc/{first}/fd/{write_end}", os.O_WRONLY)
        try:
            os.write(outside, b"z" * 7)
        finally:
            os.close(outside)
        unread = at(7, {second})
        assert index.looked_at == 0  # the other holder's turn, four scans after that turn read the fill: not again
        assert unread is read
        moved = at(13, {first})
        assert index.looked_at == 1  # a rotation after: read again
    assert pipe_by_inode_in(moved, inode).buffered == 7

def test_a_pipe_whose_settled_holder_lost_a_fellow_holder_is_built_again(spawn: Spawn) -> None:
    """The previous record is taken as it stands only with as many ends as it had: when one of two holders exits,
    the one left (which never ran) holds the pipe alone."""
    read_end, write_end = os.pipe()
    try:
        inode = os.fstat(read_end).st_ino
        holders = [spawn("say('ready')\nhold()\n", pass_fds=(read_end,)) for _ in range(2)]
    finally:
        os.close(read_end)
    try:
        for holder in holders:
            holder.expect()
        pids = {holder.pid for holder in holders}

        def refs_of(wanted: set[int]) -> list[FdRef]:
            return [ref for pid in sorted(wanted) for ref in read_fds(pid, Devices(None, None)) if ref.inode == inode]

        processes = {p.pid: p for p in scan().processes if p.pid in pids}
        index = PipeIndex()
        with procfs.PidFds() as pidfds:
            (first,) = collect_pipes(processes, refs_of(pids), pidfds, index=index, settled=pids)
            (again,) = collect_pipes(processes, refs_of(pids), pidfds, index=index, settled=pids)
            holders[0].stop()
            left = {holders[1].pid}
            (alone,) = collect_pipes(processes, refs_of(left), pidfds, index=index, settled=left)
    finally:
        os.close(write_end)
    assert again is first
    assert sorted(end.pid for end in first.readers) == sorted(pids)
    assert [end.pid for end in alone.readers] == [holders[1].pid]


def test_a_scanner_looks_again_only_at_the_pipes_of_processes_that_ran(
    spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pipes.PipeIndex: the pipe of a process that did not run is the previous record, not looked at again; the new
    pipe of a process that ran is."""
    still = spawn(SINGLE)
    still.expect()
    quiet = int(ask(still, "pipe")[0])
    actor = spawn(SINGLE)
    actor.expect()
    scanner = Scanner()
    first = pipe_by_inode(settle(scanner, still.pid), quiet)
    looked: list[int] = []
    original = pipes._one

    def one(identity: tuple[int, int], *args: Any) -> Any:
        looked.append(identity[1])
        return original(identity, *args)

    monkeypatch.setattr(pipes, "_one", one)
    for _ in range(3):  # a full-read turn of the still process makes it run no more, but be read again
        looked.clear()
        made = int(ask(actor, "pipe")[0])
        snapshot = scanner.scan()
        if still.pid in scanner.reused:
            break
    else:
        pytest.fail(f"process {still.pid} was read in full at three scans in a row")
    assert made in looked
    assert quiet not in looked
    assert pipe_by_inode(snapshot, quiet) is first
    assert [end.pid for end in pipe_by_inode(snapshot, made).readers] == [actor.pid]


def test_a_scanner_drops_the_ends_of_a_holder_that_exited(spawn: Spawn) -> None:
    """Gone is a change: two processes hold a pipe (nobody else does), one exits, and the one left, which never
    ran, holds it alone."""
    inode, _write_end, holders = two_holders_of_a_pipe(spawn)
    scanner = Scanner()
    settle(scanner, holders[1].pid)
    assert sorted(end.pid for end in pipe_by_inode(scanner.scan(), inode).readers) == sorted(h.pid for h in holders)
    holders[0].stop()
    snapshot = scanner.scan()
    assert [end.pid for end in pipe_by_inode(snapshot, inode).readers] == [holders[1].pid]
    assert [end.pid for end in pipe_by_inode(snapshot, inode).writers] == [holders[1].pid]


def test_a_pipe_the_scanner_let_go_of_shows_with_its_other_holders(spawn: Spawn) -> None:
    """hide_self drops ipcmon's own pipes, ends in other processes too (scan._drop_pipes); once ipcmon closes its
    ends, the pipe is a child's alone, and shows though the child never ran."""
    read_end, write_end = os.pipe()
    inode = os.fstat(read_end).st_ino
    try:
        child = spawn("say('ready')\nhold()\n", pass_fds=(read_end, write_end))
        child.expect()
        scanner = Scanner(ScanConfig(hide_self=True))
        snapshot = settle(scanner, child.pid)
        assert not [pipe for pipe in snapshot.pipes if pipe.inode == inode]
    finally:
        os.close(read_end)
        os.close(write_end)
    for _ in range(3):
        snapshot = scanner.scan()
        if child.pid in scanner.reused:
            break
    else:
        pytest.fail(f"process {child.pid} was read in full at three scans in a row")
    assert [end.pid for end in pipe_by_inode(snapshot, inode).readers] == [child.pid]


def test_a_write_through_an_end_ipcmon_does_not_see_shows_by_the_holders_full_read_turn(spawn: Spawn) -> None:
    """The bound of that trade: a write through an end no scanned process holds (here /proc/PID/fd/N opened by
    the test; as well a process whose descriptors cannot be read) shows at the latest at the holder's next full
    read, every refresh_every scans, though the holder never ran."""
    child = spawn(SINGLE)
    child.expect()
    inode, _read_end, write_end = (int(word) for word in ask(child, "pipe"))
    scanner = Scanner(refresh_every=3)
    assert pipe_by_inode(settle(scanner, child.pid), inode).buffered == 0
    before = run_signature(child.pid, procfs.parse_stat(procfs.read_bytes(f"/proc/{child.pid}/stat")))
    outside = os.open(f"/proc/{child.pid}/fd/{write_end}", os.O_WRONLY)
    try:
        os.write(outside, b"z" * 100)
    finally:
        os.close(outside)
    seen = [pipe_by_inode(scanner.scan(), inode).buffered for _ in range(3)]
    assert 100 in seen, f"fills over refresh_every scans: {seen}"
    after = run_signature(child.pid, procfs.parse_stat(procfs.read_bytes(f"/proc/{child.pid}/stat")))
    assert before is not None and before == after  # the holder never ran: only its full-read turn read the fill


def test_every_process_is_read_in_full_in_turn(spawn: Spawn) -> None:
    child = spawn(SINGLE)
    child.expect()
    scanner = Scanner(refresh_every=3)
    read: list[bool] = []
    for _ in range(9):
        scanner.scan()
        read.append(child.pid not in scanner.reused or child.pid in scanner.turned)
    assert read.count(True) >= 3  # the first scan and every third
    always = Scanner(refresh_every=1)
    always.scan()
    always.scan()
    assert always.reused == always.turned  # every process read in full: the still ones found as they were


SHARING = ACTOR + """
CLONE_FILES = 0x400
CLONE = {"x86_64": 56, "aarch64": 220}[os.uname().machine]  # clone(2)'s system call number
sharer = _libc.syscall(CLONE, CLONE_FILES | signal.SIGCHLD, 0, 0, 0, 0)  # a process sharing our descriptor table
if sharer == 0:
    say("ready", os.getpid())
    for command in commands():
        act(command)
    os._exit(0)
while True:
    signal.pause()  # never runs again: only the sharer acts, on the table both hold
"""


def test_a_descriptor_table_another_process_changed_shows_at_the_holder_s_turn(spawn: Spawn) -> None:
    """clone(CLONE_FILES) without CLONE_THREAD: the sharer makes a pipe in the table both hold, while the other never
    runs, so it is taken over with its old table until its full-read turn, which must not find it 'as it was'
    (process._confirmed)."""
    child = spawn(SHARING)
    sharer = int(child.expect()[0])
    try:
        scanner = Scanner(refresh_every=3)
        settle(scanner, child.pid)
        before = run_signature(child.pid, procfs.parse_stat(procfs.read_bytes(f"/proc/{child.pid}/stat")))
        inode = int(ask(child, "pipe")[0])  # the sharer serves it
        readers = [{end.pid for end in pipe_by_inode(scanner.scan(), inode).readers} for _ in range(3)]
        after = run_signature(child.pid, procfs.parse_stat(procfs.read_bytes(f"/proc/{child.pid}/stat")))
        assert before is not None and before == after  # it never ran: only its turn can see the new ends
        assert sharer in readers[0]
        assert readers[-1] == {child.pid, sharer}, f"readers over refresh_every scans: {readers}"
    finally:
        os.kill(sharer, signal.SIGKILL)


def test_a_turn_that_finds_the_process_as_it_was_keeps_its_records(
    spawn: Spawn, cleanup: Cleanup, unique_name: str
) -> None:
    """A process that has not run, read in full on its turn and found as it was, is settled as if taken over: its
    process, segment and pipe records are the last scan's objects (nothing is built again), and the turn still
    read its pipe's fill (the rotation is what sees a write through an end no scanned process holds)."""
    child, inode = holding_all(spawn, cleanup, unique_name, "ipcm-turned")
    scanner = Scanner(refresh_every=3)
    last = settle(scanner, child.pid)
    index = scanner._memory.kept("pipes", PipeIndex)
    turns = 0
    for _ in range(4):
        now = scanner.scan()
        if child.pid in scanner.turned:
            turns += 1
            assert index.looked_at >= 1  # the fill is read again at the holder's turn
            assert child.pid in scanner.reused
            assert process_of(now, child.pid) is process_of(last, child.pid)
            assert segment_named(now, unique_name) is segment_named(last, unique_name)
            assert pipe_by_inode(now, inode) is pipe_by_inode(last, inode)
        last = now
    assert turns >= 1


def test_run_signature_stands_still_only_while_the_process_sleeps(spawn: Spawn) -> None:
    sleeper = spawn(SINGLE)
    sleeper.expect()
    busy = spawn("say('ready')\nwhile True:\n    pass\n")
    busy.expect()

    def signature(child: Child) -> bytes | None:
        return run_signature(child.pid, procfs.parse_stat(procfs.read_bytes(f"/proc/{child.pid}/stat")))

    wait_until(lambda: signature(sleeper) is not None and signature(sleeper) == signature(sleeper),
               "the sleeping child to have a steady signature")
    before = signature(sleeper)
    ask(sleeper, "pipe")
    wait_until(lambda: signature(sleeper) is not None, "the child to sleep again")
    assert signature(sleeper) != before

    def running() -> bool:
        state = procfs.parse_stat(procfs.read_bytes(f"/proc/{busy.pid}/stat")).state
        return state == "R" and signature(busy) is None

    wait_until(running, "a running process to have no signature")


# --- the forked half-scan of a one-shot snapshot ------------------------------------------------------------


def reader_identity(pid: int) -> tuple[int, list[str]]:
    """Which process read pid, and which descriptors that process had open."""
    return os.getpid(), sorted(os.listdir("/proc/self/fd"), key=int)


def test_a_forked_read_splits_the_processes_and_keeps_nothing_of_the_parent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(forked_reader, "FORK_MIN_PROCESSES", 1)
    pids = procfs.pids()
    kept_open = os.open("/dev/null", os.O_RDONLY)  # one more of the parent's descriptors the child must close
    try:
        results = forked_reader.read_forked(pids, reader_identity)
    finally:
        os.close(kept_open)
    assert [pid for pid, _ in results] == pids  # each once, in order
    readers = {reader for _, (reader, _) in results}
    assert os.getpid() in readers and len(readers) == 2
    child_fds = {tuple(fds) for _, (reader, fds) in results if reader != os.getpid()}
    assert len(child_fds) == 1
    (fds,) = child_fds
    beyond_stdio = [fd for fd in fds if int(fd) > 2]
    assert len(beyond_stdio) == 2, fds  # its pipe to the parent, and the descriptor listdir itself opened


def test_a_forked_read_falls_back_when_the_child_dies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forked_reader, "FORK_MIN_PROCESSES", 1)
    parent = os.getpid()

    def dies_in_the_child(pid: int) -> int:
        if os.getpid() != parent:
            os._exit(3)
        return pid * 2

    pids = procfs.pids()
    assert forked_reader.read_forked(pids, dies_in_the_child) == [(pid, pid * 2) for pid in pids]


def test_a_forked_scan_reads_what_a_serial_scan_reads(
    monkeypatch: pytest.MonkeyPatch, spawn: Spawn, cleanup: Cleanup, unique_name: str
) -> None:
    monkeypatch.setattr(forked_reader, "FORK_MIN_PROCESSES", 1)
    new_segment(cleanup, unique_name)
    children = [spawn(SINGLE) for _ in range(4)]
    for child in children:
        child.expect()
        ask(child, f"open-shm {unique_name}")
        ask(child, f"map-shm {unique_name}")
    inodes = [int(ask(child, "pipe")[0]) for child in children]

    serial, forked = scan(), scan(fork=True)
    assert segment_named(forked, unique_name) == segment_named(serial, unique_name)
    assert [pipe_by_inode(forked, inode) for inode in inodes] == [pipe_by_inode(serial, inode) for inode in inodes]
    mine = {child.pid for child in children} | {os.getpid()}
    assert [p for p in forked.processes if p.pid in mine] == [p for p in serial.processes if p.pid in mine]

    def held_by_me(snapshot: Snapshot) -> set[int]:
        return {p.inode for p in snapshot.pipes if os.getpid() in {e.pid for e in (*p.readers, *p.writers)}}

    assert held_by_me(forked) == held_by_me(serial)  # the pipe to the child is not in the snapshot


@pytest.mark.parametrize(("interval", "every"), [(1.0, 30), (15.0, 2), (60.0, 1), (0.25, 120)])
def test_the_full_read_rotation_follows_the_interval_between_scans(interval: float, every: int) -> None:
    """By default each process is read in full about every REFRESH_SECONDS, at any interval (the dashboard at 1 Hz,
    an exporter scraped every 15 s), once the interval is known; a fixed refresh_every stays."""
    assert REFRESH_SECONDS == 30
    memory = ScanMemory()
    for scan_number in range(40):
        memory.scans_begun = scan_number + 1  # as begin_scan counts them
        memory._pace(scan_number * interval + (10 if scan_number else 0))  # the first scan took 10 s: not counted
        if scan_number == 3:
            assert memory.refresh_every == every  # from the third scan on, at once
    assert memory.refresh_every == every
    memory.scans_begun = 41
    memory._pace(40 * interval + 10 + interval * 1.3)  # one slow scan does not move the rotation
    assert memory.refresh_every == every
    fixed = ScanMemory(3)
    for _ in range(40):
        fixed.begin_scan()
    assert fixed.refresh_every == 3


@pytest.mark.usefixtures("fds_above_1024")
def test_a_scanner_keeps_the_proc_files_of_live_processes_only(spawn: Spawn) -> None:
    """Its stat and schedstat are kept open while the process lives, and closed by the first scan after it is
    gone; Scanner.close() closes the rest."""
    child = spawn(SINGLE)
    child.expect()
    scanner = Scanner()
    files = scanner._memory.files
    try:
        settle(scanner, child.pid)
        assert files.holds(child.pid) and files.alive(child.pid)
        child.stop()
        snapshot = scanner.scan()
        assert child.pid not in {process.pid for process in snapshot.processes}
        assert not files.holds(child.pid)
        # stat, schedstat and status at most, of processes read, and task/TID/stat and schedstat of each of their
        # threads when they have several
        threads = sum(entry.read.stat.threads for entry in scanner._memory.processes.values()
                      if entry.read.stat is not None and entry.read.stat.threads > 1)
        assert len(files) <= 3 * len(snapshot.processes) + 2 * threads
    finally:
        scanner.close()
    assert len(files) == 0


@pytest.mark.usefixtures("fds_above_1024")
def test_a_scanner_hiding_itself_reads_none_of_the_proc_files_it_keeps(
    spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its own descriptors are read for its pipes (hide_self), not the /proc files it keeps open (one readlink
    each: thousands on a large machine), while a pipe it holds is still left out."""
    read_end, write_end = os.pipe()
    try:
        child = spawn("say('ready')\nhold()\n", pass_fds=(read_end, write_end))
        child.expect()
        scanner = Scanner(ScanConfig(hide_self=True))
        try:
            settle(scanner, child.pid)
            kept = scanner._memory.files.numbers()
            assert kept
            paths = first_arguments(monkeypatch, os, "readlink")
            snapshot = scanner.scan()
            monkeypatch.undo()
            own = f"/proc/{os.getpid()}/fd/"
            looked = [path.removeprefix(own) for path in paths if path.startswith(own)]
        finally:
            scanner.close()
        assert str(read_end) in looked
        assert not kept & set(looked)
        assert not [pipe for pipe in snapshot.pipes if pipe.inode == os.fstat(read_end).st_ino]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_full_read_turns_are_spread_over_the_scans_whatever_the_pids_stride() -> None:
    """A program forking workers gets pids a fixed stride apart (24 on the benchmark's stress workload): their full
    reads must not come in bursts (a scan that reads a fifth of them in full stalls). Arithmetic only: which scan
    reads each pid in full (ScanMemory.is_turn), over one rotation."""
    memory = ScanMemory(refresh_every=30)
    for stride in (1, 6, 24, 30, 64):
        pids = range(10_000, 10_000 + 500 * stride, stride)
        per_scan = []
        for scan_number in range(30):
            memory.scans_begun = scan_number
            per_scan.append(sum(memory.is_turn(pid) for pid in pids))
        assert sum(per_scan) == 500  # each once in a rotation
        assert max(per_scan) <= 1.5 * 500 / 30, f"stride {stride}: {per_scan}"


@pytest.mark.usefixtures("fds_above_1024")
def test_a_process_that_did_not_move_is_the_previous_read_itself(spawn: Spawn) -> None:
    """process._still: taken over once, a process whose stat and schedstat read the same again is the previous read
    object, and its record the snapshot's same object; once it runs, it is read again."""
    child = spawn(SINGLE)
    child.expect()
    scanner = Scanner()
    memory = scanner._memory
    settle(scanner, child.pid)
    for _ in range(3):  # a full-read turn of the child in between starts it over
        entry = memory.processes[child.pid]
        before = entry.read
        snapshot = scanner.scan()
        if memory.processes[child.pid] is entry:  # the same read, and the same entry kept of it
            break
    else:
        pytest.fail(f"process {child.pid} was read anew at three scans in a row")
    record = next(process for process in snapshot.processes if process.pid == child.pid)
    assert record is before.process
    ask(child, "rename moved")
    snapshot = scanner.scan()
    assert memory.processes[child.pid].read is not before
    assert next(process for process in snapshot.processes if process.pid == child.pid).comm == "moved"
