"""Every way a process waits on IPC, built with real processes and read back from a scan: open() of a FIFO with
nobody at the other end, poll/select/epoll over pipes, wait4/waitid for children, signal waits with their set,
when the wait began; and the pipe that is full when it is full."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ipcmon import health
from ipcmon.collect import ScanConfig, Scanner, waiting
from ipcmon.collect.fds import Devices, read_fds
from ipcmon.collect.procmem import Memory
from ipcmon.model import PipeEnd, Snapshot, Stuck, file_key
from ipcmon.text import waiting_text
from ipcmon.ui.view.describe import describe_process
from ipcmon.ui.view.table import Context
from tests.helpers import Spawn, kill_pids, scan_kinds, settle, wait_until


def _stuck(pid: int, kinds: tuple[str, ...] = ("pipe",), until: Callable[[Stuck], bool] = lambda _: True
           ) -> tuple[Snapshot, Stuck]:
    """Scan until the process is listed as stuck (and until(entry) holds); the snapshot and its entry."""
    found: list[tuple[Snapshot, Stuck]] = []

    def listed() -> bool:
        snapshot = scan_kinds(*kinds)
        entry = next((entry for entry in snapshot.stuck if entry.pid == pid), None)
        if entry is not None and until(entry):
            found[:] = [(snapshot, entry)]
            return True
        return False

    wait_until(listed, f"pid {pid} to be listed as stuck")
    return found[0]


# --- open() of a FIFO -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("how", "missing"), [
    ("open(PATH, 'rb')", "writer"),                                      # openat(AT_FDCWD, absolute)
    ("os.chdir(DIR); open('x.fifo', 'wb')", "reader"),                   # relative to the working directory
    ("os.open('x.fifo', os.O_RDONLY, dir_fd=os.open(DIR, os.O_RDONLY))", "writer"),  # openat(dirfd, relative)
])
def test_fifo_open_with_nobody_at_the_other_end_names_path_and_missing_end(
    spawn: Spawn, tmp_path: Path, how: str, missing: str
) -> None:
    path = tmp_path / "x.fifo"
    os.mkfifo(path)
    child = spawn(f"DIR, PATH = {str(tmp_path)!r}, {str(path)!r}\nsay('ready')\n{how}\nsay('opened')\nhold()\n")
    child.expect()
    _, entry = _stuck(child.pid)
    wait = entry.waiting
    st = os.stat(path)
    assert (wait.kind, wait.path, wait.missing) == ("open", str(path), missing)
    assert wait.object == f"fifo:{path}" and wait.key == file_key("fifo", st.st_dev, st.st_ino)
    assert wait.wchan in ("fifo_open", "wait_for_partner")
    side = "writing" if missing == "writer" else "reading"
    assert entry.state == "blocked" and entry.release == f"anyone who opens {path} for {side}"
    assert entry.releasers == ()
    # Opening the other end (non-blocking, so this test never hangs) lets the child go.
    fd = os.open(path, (os.O_WRONLY if missing == "writer" else os.O_RDONLY) | os.O_NONBLOCK)
    try:
        child.expect("opened")
    finally:
        os.close(fd)


def test_fifo_open_whose_memory_cannot_be_read_says_the_path_is_unknown() -> None:
    # The kernel guards /proc/PID/syscall and /proc/PID/mem by the same ptrace check, so a scan that sees
    # the call but not the memory needs an unmapped path or a race; canned here.
    raw = waiting.RawWait("openat", (0xFFFFFF9C, 0x1000, os.O_WRONLY, 0, 0, 0), "fifo_open",
                          fifo=waiting.FifoOpen(None, None, None, os.O_WRONLY))
    wait = waiting.resolve(raw, 1, {})
    assert wait is not None
    assert (wait.kind, wait.object, wait.path, wait.missing, wait.key) == (
        "open", "fifo (path unknown)", None, "reader", None)
    with Memory(2**22 + 7) as memory:  # no such process: unknown, not an error
        assert memory.read(0x1000, 8) is None and memory.read_string(0x1000) is None


def test_a_blocked_fifo_opener_keeps_its_wait_when_the_scanner_takes_it_over(spawn: Spawn, tmp_path: Path) -> None:
    path = tmp_path / "x.fifo"
    os.mkfifo(path)
    child = spawn(f"say('ready')\nopen({str(path)!r}, 'rb')\n")
    child.expect()
    _stuck(child.pid)
    snapshot = settle(Scanner(ScanConfig(kinds=("pipe",))), child.pid)
    entry = next(entry for entry in snapshot.stuck if entry.pid == child.pid)
    assert (entry.waiting.kind, entry.waiting.path, entry.waiting.missing) == ("open", str(path), "writer")
    assert entry.since is not None


# --- poll, select, epoll ----------------------------------------------------------------------------------

_POLLERS = {
    "select": "select.select([FD], [], [], TIMEOUT)",
    "poll": "p = select.poll(); p.register(FD, select.POLLIN); p.poll(None if TIMEOUT is None else TIMEOUT * 1000)",
    "epoll": "e = select.epoll(); e.register(FD, select.EPOLLIN); e.poll(-1 if TIMEOUT is None else TIMEOUT)",
}


@pytest.mark.parametrize("timeout", [None, 60])
@pytest.mark.parametrize("poller", sorted(_POLLERS))
def test_poll_on_a_pipe_whose_writer_never_closes_names_the_pipe_and_the_writer(
    spawn: Spawn, poller: str, timeout: int | None
) -> None:
    read_end, write_end = os.pipe()  # this test process keeps the write end open, and never writes
    try:
        code = f"import select\nFD, TIMEOUT = {read_end}, {timeout}\nsay('ready')\n{_POLLERS[poller]}\nhold()\n"
        child = spawn(code, pass_fds=(read_end,))
        child.expect()
        snapshot, entry = _stuck(child.pid)
        wait = entry.waiting
        inode = os.fstat(read_end).st_ino
        pipe = next(pipe for pipe in snapshot.pipes if pipe.inode == inode)
        assert wait.kind == "poll" and wait.object == f"pipe:[{inode}]" and wait.key == pipe.object_key
        assert [(w.fd, w.object, w.key, w.events) for w in wait.watched] == [
            (read_end, f"pipe:[{inode}]", pipe.object_key, "read")]
        assert wait.timed is (timeout is not None) and wait.other_watched == 0
        assert os.getpid() in entry.releasers and entry.state == "waiting"
        assert f"pipe:[{inode}]: pid {os.getpid()}" in entry.release and f"fd {write_end}" in entry.release
        assert entry.release.endswith("or its timeout") == (timeout is not None)
        if poller == "epoll":
            assert wait.syscall.startswith("epoll") and wait.fd is not None
    finally:
        os.close(read_end)
        os.close(write_end)


def test_poll_over_a_pipe_and_a_socket_counts_the_socket_as_another_way_out(spawn: Spawn) -> None:
    read_end, write_end = os.pipe()
    try:
        child = spawn(
            f"""
            import select, socket
            left, right = socket.socketpair()
            say("ready")
            select.select([{read_end}, left], [], [])
            """,
            pass_fds=(read_end,),
        )
        child.expect()
        _, entry = _stuck(child.pid)
        assert [w.fd for w in entry.waiting.watched] == [read_end]
        assert entry.waiting.other_watched == 1
        assert entry.release.endswith("or 1 other descriptor it watches")
    finally:
        os.close(read_end)
        os.close(write_end)


def test_poll_with_no_ipc_descriptor_is_no_ipc_wait(spawn: Spawn) -> None:
    read_end, write_end = os.pipe()  # held, so the scan reads its poll set; but it polls a socket only
    try:
        child = spawn("import select, socket\nleft, right = socket.socketpair()\nsay('ready')\n"
                      "select.select([left], [], [])\n", pass_fds=(read_end,))
        child.expect()
        snapshot = scan_kinds("pipe")
        process = next(process for process in snapshot.processes if process.pid == child.pid)
        raw = waiting.read_raw(child.pid, fds=read_fds(child.pid, Devices(None, None)))
        assert raw is not None and raw.syscall in ("select", "pselect6") and raw.polled is not None
        assert process.waiting is None and child.pid not in {entry.pid for entry in snapshot.stuck}
    finally:
        os.close(read_end)
        os.close(write_end)


# --- wait4, waitid ----------------------------------------------------------------------------------------

_GRANDCHILD = "import ctypes, time; ctypes.CDLL(None).prctl(1, 9); time.sleep(120)"  # PR_SET_PDEATHSIG: SIGKILL


@pytest.mark.parametrize(("call", "both"), [
    ("os.waitpid(-1, 0)", True),
    ("os.waitpid(first.pid, 0)", False),
    ("os.waitpid(0, 0)", True),
    ("os.waitid(os.P_ALL, 0, os.WEXITED)", True),
    ("os.waitid(os.P_PID, first.pid, os.WEXITED)", False),
    ("os.waitid(os.P_PIDFD, os.pidfd_open(first.pid), os.WEXITED)", False),
])
def test_wait_for_children_names_them(spawn: Spawn, call: str, both: bool) -> None:
    parent = spawn(
        f"""
        import subprocess
        first = subprocess.Popen([sys.executable, "-c", {_GRANDCHILD!r}])
        second = subprocess.Popen([sys.executable, "-c", {_GRANDCHILD!r}])
        say("ready", first.pid, second.pid)
        {call}
        """
    )
    first, second = map(int, parent.expect())
    try:
        _, entry = _stuck(parent.pid)
        wait = entry.waiting
        expected = (first, second) if both else (first,)
        assert wait.kind == "child" and wait.syscall in ("wait4", "waitid")
        assert wait.children == expected and entry.releasers == expected
        assert wait.object == (f"children {first}, {second}" if both else f"child {first}")
        assert entry.state == "waiting"
        assert entry.release.startswith(f"child {first} python3 (not blocked on IPC)")
    finally:
        kill_pids(first, second)


# --- signals ----------------------------------------------------------------------------------------------

def test_sigtimedwait_names_its_set(spawn: Spawn) -> None:
    child = spawn(
        """
        import signal
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGRTMIN + 2})
        say("ready")
        signal.sigwaitinfo({signal.SIGUSR1, signal.SIGRTMIN + 2})
        say("woken")
        hold()
        """
    )
    child.expect()
    _, entry = _stuck(child.pid, ("signal",))
    wait = entry.waiting
    assert (wait.syscall, wait.kind, wait.object, wait.timed) == ("rt_sigtimedwait", "signal", "signal", False)
    assert wait.signals == ("SIGUSR1", "SIGRTMIN+2")
    assert entry.release == "a signal sent to it: SIGUSR1, SIGRTMIN+2" and entry.state == "waiting"
    os.kill(child.pid, signal.SIGUSR1)
    child.expect("woken")


def test_sigtimedwait_with_a_timeout_is_timed(spawn: Spawn) -> None:
    child = spawn("import signal\nsay('ready')\nsignal.sigtimedwait({signal.SIGUSR2}, 120)\n")
    child.expect()
    _, entry = _stuck(child.pid, ("signal",))
    assert entry.waiting.signals == ("SIGUSR2",) and entry.waiting.timed


def test_pause_is_ended_by_the_signals_it_neither_blocks_nor_ignores(spawn: Spawn) -> None:
    child = spawn(
        """
        import signal
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        say("ready")
        signal.pause()
        """
    )
    child.expect()
    _, entry = _stuck(child.pid, ("signal",))
    names = entry.waiting.signals
    assert entry.waiting.syscall == "pause"
    assert {"SIGINT", "SIGKILL", "SIGHUP", "SIGUSR2", "SIGCHLD"} <= set(names)  # caught, or they end it
    assert not {"SIGUSR1", "SIGTERM", "SIGTSTP", "SIGSTOP", "SIGWINCH"} & set(names)  # blocked, ignored, stop
    # Fifty-odd signals: the words give their count and the first few, not all of them.
    assert entry.release == f"a signal sent to it: any of {len(names)} ({', '.join(names[:6])}, …)"


def test_sigsuspend_is_ended_by_what_its_temporary_mask_lets_through(spawn: Spawn) -> None:
    child = spawn(
        """
        import signal
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        mask = ctypes.create_string_buffer(128)  # sigset_t
        _libc.sigemptyset(mask)
        _libc.sigaddset(mask, signal.SIGUSR2)
        say("ready")
        _libc.sigsuspend(mask)   # SIGUSR1 let through while it waits, SIGUSR2 held back
        """
    )
    child.expect()
    _, entry = _stuck(child.pid, ("signal",))
    names = entry.waiting.signals
    assert entry.waiting.syscall == "rt_sigsuspend"
    assert "SIGUSR1" in names and "SIGUSR2" not in names


# --- since ------------------------------------------------------------------------------------------------

def test_since_is_when_the_wait_began_on_every_cpu(spawn: Spawn) -> None:
    """Each CPU keeps its own task clock, seconds off CLOCK_MONOTONIC on a virtual machine (schedclock): one
    child pinned to each CPU this test may use, each blocked for 2 s; each one's "since" lies between the moment
    it was started and the moment it said it was about to block (a naive mapping was a minute off)."""
    read_end, write_end = os.pipe()
    try:
        children = {}
        for cpu in sorted(os.sched_getaffinity(0))[:4]:
            started = time.time()
            child = spawn(f"os.sched_setaffinity(0, {{{cpu}}})\nsay('ready')\nos.read({read_end}, 1)\n",
                          pass_fds=(read_end,))
            child.expect()
            children[child.pid] = (cpu, started, time.time())
        time.sleep(2)
        for pid, (cpu, started, ready) in children.items():
            _, entry = _stuck(pid)
            assert entry.since is not None and entry.since == entry.waiting.since
            # Slack at either end for the clock's offset, measured per CPU on a loaded machine (a few ms when idle);
            # a naive mapping onto CLOCK_MONOTONIC was a minute off here.
            assert started - 0.5 <= entry.since <= ready + 0.5, (cpu, entry.since - started, ready - entry.since)
            assert time.time() - entry.since >= 2 - 0.5  # blocked 2 s ago, within the same slack
    finally:
        os.close(read_end)
        os.close(write_end)


# --- full ---------------------------------------------------------------------------------------------------

def test_64000_of_65536_bytes_with_the_writer_blocked_is_full(spawn: Spawn) -> None:
    read_end, write_end = os.pipe()
    try:
        assert os.write(write_end, b"x" * 64000) == 64000
        # 2,000 bytes do not fit in the 1,536 left (nor in the last page): the write blocks, whole (PIPE_BUF).
        child = spawn(f"say('ready')\nos.write({write_end}, b'y' * 2000)\n", pass_fds=(write_end,))
        os.close(write_end)
        write_end = -1
        child.expect()
        snapshot, entry = _stuck(child.pid, until=lambda found: found.waiting.kind == "write")
        inode = os.fstat(read_end).st_ino
        pipe = next(pipe for pipe in snapshot.pipes if pipe.inode == inode)
        assert (pipe.buffered, pipe.capacity) == (64000, 65536) and "full" in pipe.flags
        assert entry.waiting.key == pipe.object_key
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_a_packet_pipe_with_16_bytes_and_a_blocked_writer_is_full(spawn: Spawn) -> None:
    # In packet mode (O_DIRECT) every write takes a page of its own: 16 one-byte writes fill 16 pages, and
    # the 17th write blocks with 16 bytes buffered. Only the blocked writer says the pipe is full.
    read_end, write_end = os.pipe2(os.O_DIRECT)
    try:
        for _ in range(16):
            os.write(write_end, b"z")
        child = spawn(f"say('ready')\nos.write({write_end}, b'z')\n", pass_fds=(write_end,))
        child.expect()
        snapshot, _ = _stuck(child.pid, until=lambda found: found.waiting.kind == "write")
        inode = os.fstat(read_end).st_ino
        pipe = next(pipe for pipe in snapshot.pipes if pipe.inode == inode)
        assert pipe.buffered == 16 and "full" in pipe.flags
    finally:
        os.close(read_end)
        os.close(write_end)


def test_full_means_less_than_pipe_buf_free() -> None:
    ends = (PipeEnd(1, "a", 3),), (PipeEnd(2, "b", 4),)
    assert "full" in health.pipe_flags(*ends, 64000, 65536)
    assert "full" in health.pipe_flags(*ends, 61441, 65536)
    assert "full" not in health.pipe_flags(*ends, 61440, 65536)  # exactly PIPE_BUF free: a write still fits
    assert "full" in health.pipe_flags(*ends, 16, 65536, writer_blocked=True)
    assert "full" not in health.pipe_flags(*ends, None, 65536)  # unknown fill is not full


def test_waits_on_no_pipe_leave_the_pipes_unkeyed(spawn: Spawn) -> None:
    """waiting.analyse keys the pipes by object (5,000 on a large machine) only when a wait needs them: a process in
    pause(2) is told without them; one blocked reading a pipe still finds its writer."""
    read_end, write_end = os.pipe()
    try:
        reader = spawn(f"say('ready')\nos.read({read_end}, 1)\n", pass_fds=(read_end,))
        reader.expect()
        pauser = spawn("say('ready')\nsignal.pause()\n")
        pauser.expect()
        seen: list[Snapshot] = []
        wait_until(lambda: _with_waits(seen, scan_kinds("pipe"), reader.pid, pauser.pid), "both waits seen")
        snapshot = seen[-1]

        class Untouchable(tuple):  # type: ignore[type-arg]
            def __iter__(self) -> Any:
                raise AssertionError("the pipes were keyed for waits that need none")

        pausing = [process for process in snapshot.processes if process.pid == pauser.pid]
        (found,), _ = waiting.analyse(pausing, Untouchable(snapshot.pipes), snapshot.mqueues)
        assert found.pid == pauser.pid and found.waiting.kind == "signal"
        reading = [process for process in snapshot.processes if process.pid == reader.pid]
        (found,), _ = waiting.analyse(reading, snapshot.pipes, snapshot.mqueues)
        assert found.releasers == (os.getpid(),)
        # A Scanner's memory keys the very same tuple once: the next scan's analyse, handed it again, keys nothing.
        keyed: list[int] = []

        class Counted(tuple):  # type: ignore[type-arg]
            def __iter__(self) -> Any:
                keyed.append(1)
                return super().__iter__()

        pipes = Counted(snapshot.pipes)
        memory = waiting.WaitMemory()
        for _ in range(3):
            (found,), _ = waiting.analyse(reading, pipes, snapshot.mqueues, memory=memory)
            assert found.releasers == (os.getpid(),)
        assert len(keyed) == 1
        waiting.analyse(reading, Counted(snapshot.pipes), snapshot.mqueues, memory=memory)
        assert len(keyed) == 2  # another tuple: keyed again
    finally:
        os.close(read_end)
        os.close(write_end)


def _with_waits(seen: list[Snapshot], snapshot: Snapshot, *pids: int) -> bool:
    seen.append(snapshot)
    return set(pids) <= {process.pid for process in snapshot.processes if process.waiting is not None}


def test_a_process_in_pause_that_did_not_move_keeps_its_record(spawn: Spawn) -> None:
    """waiting.analyse(alone=…): a signal wait depends on its process alone; while a Scanner hands the same process
    record again, its Stuck record is the last scan's; renamed (by its own handler), it is made again."""
    child = spawn("signal.signal(signal.SIGUSR1, lambda *_: set_comm('moved'))\nsay('ready')\n"
                  "while True:\n    signal.pause()\n")
    child.expect()
    scanner = Scanner()

    def stuck_of(snapshot: Snapshot) -> Stuck | None:
        found = [found for found in snapshot.stuck if found.pid == child.pid]
        return found[0] if found else None

    settle(scanner, child.pid)
    for _ in range(3):  # a full-read turn in between makes a new process record
        before = stuck_of(scanner.scan())
        if before is not None and stuck_of(scanner.scan()) is before:
            break
    else:
        pytest.fail("the Stuck record of a process that did not move was made anew at every scan")
    assert before.waiting.kind == "signal"
    os.kill(child.pid, signal.SIGUSR1)
    renamed: list[Stuck] = []

    def moved() -> bool:
        found = stuck_of(scanner.scan())
        if found is not None and found.comm == "moved":
            renamed.append(found)
        return bool(renamed)

    wait_until(moved, "the renamed process's wait")
    assert renamed[0] is not before


def test_a_stopped_process_says_so(spawn: Spawn) -> None:
    """A newcomer stopped a process (SIGSTOP) and the process view said ``not blocked on IPC``: its state letter
    (Process.state) now reads ``stopped`` in the WAITING cell and the process view, and not once SIGCONT resumed it."""
    child = spawn("say('ready')\nhold()\n")
    child.expect()
    os.kill(child.pid, signal.SIGSTOP)
    try:
        seen: list[Snapshot] = []
        wait_until(lambda: _state_of(seen, child.pid) == "T", "the child stopped")
        (process,) = [process for process in seen[-1].processes if process.pid == child.pid]
        assert waiting_text(process) == "stopped"
        assert "stopped: not running until SIGCONT" in describe_process(child.pid, Context(seen[-1])).plain
    finally:
        os.kill(child.pid, signal.SIGCONT)
    wait_until(lambda: _state_of(seen, child.pid) not in ("T", ""), "the child resumed")
    (process,) = [process for process in seen[-1].processes if process.pid == child.pid]
    assert waiting_text(process) != "stopped"
    assert "not blocked on IPC" in describe_process(child.pid, Context(seen[-1])).plain or process.waiting


def _state_of(seen: list[Snapshot], pid: int) -> str:
    seen.append(scan_kinds("signal"))
    return next((process.state for process in seen[-1].processes if process.pid == pid), "")
