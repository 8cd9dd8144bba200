"""One vocabulary (issue 12, item 7): a signal has one name in every front end, event names say what happened,
one kernel action is one event, and the SysV detail shows its times as ipcs -t does.

Every test builds the real process, signal, queue or segment and reads it back through the printers.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import posix_ipc
import sysv_ipc

from ipcmon import report
from ipcmon.cli.lifecycle import format_event
from ipcmon.export import dumps
from ipcmon.live.events import diff
from ipcmon.model import Snapshot, SysvShm
from ipcmon.ui.view.describe import describe_record
from ipcmon.ui.view.rows import mqueue_rows, signal_rows
from ipcmon.ui.view.table import Context, RowCache
from tests.helpers import REPO, Child, Cleanup, Spawn, new_name, scan_kinds, tool, wait_until
from tests.lifecycle.test_watch import _read_until

RT3 = signal.SIGRTMIN + 3
GLIBC = 33
"""glibc's SIGSETXID: a real-time signal below the C library's SIGRTMIN (34)."""

# glibc's sigprocmask drops 32 and 33 from any set it is given, so the child blocks 33 with the raw system
# call (x86_64 number 14, aarch64 135); a machine of another architecture fails here, it does not skip.
MASKER = f"""
    import platform
    number = {{"x86_64": 14, "aarch64": 135}}[platform.machine()]
    glibc = ctypes.c_uint64(1 << ({GLIBC} - 1))
    assert _libc.syscall(number, 0, ctypes.byref(glibc), None, 8) == 0  # rt_sigprocmask(SIG_BLOCK)
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1, {RT3}}})
    signal.signal(signal.SIGUSR1, lambda number, frame: None)  # caught (and blocked: it stays pending)
    signal.signal({RT3}, signal.SIG_IGN)  # ignored; blocked, so a sent one is kept pending (signal(7))
    say("ready")
    hold()
"""

PENDING = ["SIGUSR1", "SIG33 (glibc)", "SIGRTMIN+3"]
"""In signal-number order: 10, 33, 37."""


def _masked_child(spawn: Spawn) -> Child:
    child = spawn(MASKER, comm="ipcm-sigmask")
    child.expect()
    return child


def _send_all(pid: int) -> None:
    for number in (signal.SIGUSR1, GLIBC, RT3):
        os.kill(pid, number)


def _signals_of(pid: int) -> Snapshot:
    return scan_kinds("signal", pids=(pid,))


def test_one_signal_name_in_the_text_report_json_and_dashboard_rows(spawn: Spawn) -> None:
    child = _masked_child(spawn)
    _send_all(child.pid)
    snapshot = _signals_of(child.pid)
    (signals,) = snapshot.signals

    assert list(signals.pending) == PENDING
    assert {"SIGUSR1", "SIG33 (glibc)", "SIGRTMIN+3"} <= set(signals.blocked)
    assert "SIGUSR1" in signals.caught and "SIGRTMIN+3" in signals.ignored

    (line,) = [line for line in report.render(snapshot).splitlines() if line.startswith(f"{child.pid} ")]
    assert "SIGUSR1,SIG33 (glibc),SIGRTMIN+3" in line  # PENDING, and BLOCKED holds the same three
    assert "SIGRTMIN+3" in line.split("SIGUSR1,SIG33 (glibc),SIGRTMIN+3", 2)[-1]  # IGNORED
    assert " USR1" not in line and ",33" not in line  # no short or bare forms left

    (record,) = json.loads(dumps(snapshot))["signals"]
    assert record["pending"] == PENDING
    assert {"SIGUSR1", "SIG33 (glibc)", "SIGRTMIN+3"} <= set(record["blocked"])

    (row,) = signal_rows(Context(snapshot), RowCache())
    cells = [cell.plain for cell in row.cells]
    assert cells[2] == "SIGUSR1,SIG33 (glibc),SIGRTMIN+3"  # PENDING
    assert cells[3].startswith("SIGUSR1,SIG33 (glibc)")  # BLOCKED (cut to the column)
    detail = describe_record(signals, Context(snapshot), ()).plain
    assert "pending     SIGUSR1, SIG33 (glibc), SIGRTMIN+3  (whole process)" in detail


def test_watch_names_pending_signals_as_everywhere_else(spawn: Spawn) -> None:
    child = _masked_child(spawn)
    watch = subprocess.Popen(
        [sys.executable, "-m", "ipcmon", "watch", "--kind", "signal", "--pid", str(child.pid), "--interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        _read_until(watch, lambda text: text.startswith("watching"), stderr=True)  # the baseline is taken
        _send_all(child.pid)
        seen = [_read_until(watch, lambda text: " pending " in text).rstrip("\n") for _ in PENDING]
    finally:
        watch.terminate()
        watch.communicate(timeout=10)
    assert sorted(line.rsplit("ipcm-sigmask  ", 1)[1] for line in seen) == sorted(PENDING)


def test_events_name_signals_by_their_one_name(spawn: Spawn) -> None:
    child = _masked_child(spawn)
    before = _signals_of(child.pid)
    _send_all(child.pid)
    events = [event for event in diff(before, _signals_of(child.pid)) if event.pid == child.pid]
    assert [(event.event, event.detail) for event in events] == [("pending", name) for name in PENDING]
    assert format_event(events[1]).endswith(f"pid {child.pid} ipcm-sigmask  SIG33 (glibc)")


def test_mqueue_notify_names_its_signal(spawn: Spawn, cleanup: Cleanup) -> None:
    name = cleanup.mqueue(new_name())
    posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=4, max_message_size=64).close()
    before = scan_kinds("mqueue")
    child = spawn(f"""
        import posix_ipc
        queue = posix_ipc.MessageQueue({name!r})
        queue.request_notification(signal.SIGUSR1)  # mq_notify(SIGEV_SIGNAL, SIGUSR1)
        say("ready")
        hold()
    """)
    child.expect()
    snapshot = scan_kinds("mqueue")
    (queue,) = [queue for queue in snapshot.mqueues if queue.name == name]
    assert (queue.notify, queue.signo, queue.notify_pid) == (0, signal.SIGUSR1, child.pid)
    expected = f"SIGUSR1 to pid {child.pid}"

    (line,) = [line for line in report.render(snapshot).splitlines() if line.startswith(name + " ")]
    assert expected in line
    (row,) = [row for row in mqueue_rows(Context(snapshot), RowCache()) if row.key == queue.object_key]
    assert row.cells[7].plain == expected  # NOTIFY
    assert f"notify      {expected}  (SIGEV_SIGNAL)" in describe_record(queue, Context(snapshot), ()).plain
    (record,) = [record for record in json.loads(dumps(snapshot))["mqueues"] if record["name"] == name]
    assert (record["signo"], record["signal"]) == (signal.SIGUSR1, "SIGUSR1")
    registered = [event for event in diff(before, snapshot) if event.object == name and event.event != "opened"]
    assert [(event.event, event.pid, event.detail) for event in registered] == [
        ("notify-registered", child.pid, "SIGUSR1")]


def test_a_mask_change_and_a_wait_have_distinct_event_names(spawn: Spawn) -> None:
    read_end, write_end = os.pipe()
    try:
        inode = os.fstat(read_end).st_ino
        child = spawn(f"""
            say("ready")
            for command in commands():
                if command == "mask":
                    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
                elif command == "unmask":
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {{signal.SIGUSR1}})
                elif command == "write":
                    fill_pipe({write_end})
                    say("ready")
                    os.write({write_end}, b"w" * 4096)  # blocks: the pipe is full
                say("ready")
        """, pass_fds=(write_end,))
        child.expect()
        steps = [_scan_pipes_and_signals(child.pid)]
        for command in ("mask", "unmask", "write"):
            child.tell(command)
            child.expect()
            steps.append(_scan_pipes_and_signals(child.pid))
        _waits_on_a_pipe(child.pid, steps)
        os.read(read_end, 1 << 20)  # the write completes
        child.expect()
        steps.append(_scan_pipes_and_signals(child.pid))
    finally:
        os.close(read_end)
        os.close(write_end)
    events = [[(event.event, event.mechanism, event.detail.split("(")[0]) for event in diff(before, after)
               # Not its waits in read(0) for the next command: only the signal mask and the pipe it fills.
               if event.pid == child.pid and (event.mechanism == "signal" or event.object == f"pipe:[{inode}]")]
              for before, after in itertools.pairwise(steps)]
    assert events[0] == [("mask-blocked", "signal", "SIGUSR1")]
    assert events[1] == [("mask-unblocked", "signal", "SIGUSR1")]
    assert events[2] == [("waiting", "pipe", "write")]
    assert events[3] == [("wait-ended", "pipe", "write")]


def _scan_pipes_and_signals(pid: int) -> Snapshot:
    return scan_kinds("pipe", "signal", pids=(pid,))


def _waits_on_a_pipe(pid: int, steps: list[Snapshot]) -> None:
    """The child said it is about to write; rescan until its write is seen blocked (it may not be in it yet)."""
    def blocked() -> bool:
        steps[-1] = _scan_pipes_and_signals(pid)
        return any(process.pid == pid and process.waiting is not None for process in steps[-1].processes)

    wait_until(blocked, f"pid {pid} blocked in write")


def _events_by_step(steps: list[Snapshot], key: str) -> list[list[tuple[str, int | None, str]]]:
    return [[(event.event, event.pid, event.detail) for event in diff(before, after) if event.key == key]
            for before, after in itertools.pairwise(steps)]


def test_one_shmat_is_one_attached_and_one_shmdt_one_detached(spawn: Spawn, cleanup: Cleanup) -> None:
    segment = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, size=1 << 20)
    cleanup.sysv_shm(segment.id)
    segment.detach()
    child = spawn(f"""
        import sysv_ipc
        say("ready")
        for command in commands():
            if command == "shmat":
                memory = sysv_ipc.attach({segment.id})
            elif command == "shmdt":
                memory.detach()
            say("ready")
    """)
    child.expect()
    steps = [scan_kinds("shm", "memfd", "sysv")]
    for command in ("shmat", "shmdt"):
        child.tell(command)
        child.expect()
        steps.append(scan_kinds("shm", "memfd", "sysv"))
    attach, detach = _events_by_step(steps, f"sysv-shm:{segment.id}")
    assert attach == [("attached", child.pid, "mapped rw-s 1.0M")]
    assert [(event, pid) for event, pid, _ in detach] == [("detached", child.pid), ("orphaned", None)]


def test_shm_open_and_mmap_are_one_attached_and_exit_one_detached(spawn: Spawn, cleanup: Cleanup) -> None:
    name = cleanup.shm(new_name())
    posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=8192).close_fd()
    child = spawn(f"""
        import posix_ipc
        say("ready")
        for command in commands():
            shm = posix_ipc.SharedMemory({name!r})
            map_fd(shm.fd, 8192)  # the descriptor stays open too: two holds, one attach
            say("ready", shm.fd)
    """)
    child.expect()
    steps = [scan_kinds("shm")]
    child.tell("attach")
    (fd,) = child.expect()
    steps.append(scan_kinds("shm"))
    child.stop()
    steps.append(scan_kinds("shm"))
    key = next(segment.object_key for segment in steps[1].shm if segment.name == name)
    attach, detach = _events_by_step(steps, key)
    assert attach == [("attached", child.pid, f"fd {fd} rw, mapped rw-s 8.0K")]
    assert [(event, pid) for event, pid, _ in detach] == [("detached", child.pid), ("orphaned", None)]
    assert detach[0][2] == f"fd {fd} rw, mapped rw-s 8.0K"


def test_a_writer_whose_stdout_and_stderr_share_a_pipe_closes_it_once(spawn: Spawn) -> None:
    read_end, write_end = os.pipe()
    try:
        inode = os.fstat(read_end).st_ino
        child = spawn(f"""
            os.dup2({write_end}, 40); os.dup2({write_end}, 41); os.close({write_end})
            say("ready")
            hold()
        """, pass_fds=(write_end,))
        child.expect()
        os.close(write_end)
        write_end = -1
        steps = [scan_kinds("pipe")]
        child.stop()
        steps.append(scan_kinds("pipe"))
        key = next(pipe.object_key for pipe in steps[0].pipes if pipe.inode == inode)
        (closed,) = _events_by_step(steps, key)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    assert closed == [("writer-closed", child.pid, "fd 40, fd 41")]  # the reader (this test) keeps it open


def _ipcs_times(shmid: int) -> dict[str, int]:
    """att_time, det_time and change_time as `ipcs -m -i` prints them, in epoch seconds (0 for "Not set")."""
    output = subprocess.run([tool("ipcs"), "-m", "-i", str(shmid)], capture_output=True, text=True, check=True).stdout
    times = {}
    for field in ("att_time", "det_time", "change_time"):
        (value,) = [line.split("=", 1)[1].strip() for line in output.splitlines() if line.startswith(field + "=")]
        times[field] = 0 if value == "Not set" else int(time.mktime(time.strptime(value, "%a %b %d %H:%M:%S %Y")))
    return times


def _sysv_detail(shmid: int) -> tuple[str, str, SysvShm]:
    snapshot = scan_kinds("sysv")
    (segment,) = [segment for segment in snapshot.sysv.shm if segment.id == shmid]
    (row,) = [line for line in report.render(snapshot).splitlines() if line.split()[1:2] == [str(shmid)]]
    return describe_record(segment, Context(snapshot), ()).plain, row, segment


def test_sysv_detail_shows_attach_detach_and_change_times_as_ipcs(spawn: Spawn, cleanup: Cleanup) -> None:
    segment = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, size=4096)
    cleanup.sysv_shm(segment.id)
    segment.detach()  # sysv_ipc attaches on creation: start from a clean attach with no detach yet
    child = spawn(f"""
        import sysv_ipc
        memory = sysv_ipc.attach({segment.id})
        say("ready")
        for command in commands():
            memory.detach()
            say("ready")
    """)
    child.expect()
    attached, row, record = _sysv_detail(segment.id)
    ipcs = _ipcs_times(segment.id)
    assert (record.atime, record.ctime) == (ipcs["att_time"], ipcs["change_time"])
    assert record.atime and record.ctime
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.atime))
    assert f"attached    {stamp} (" in attached
    assert f"changed     {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.ctime))} (" in attached
    # The test process's own detach above set shm_dtime; ipcs and the detail agree on it.
    assert record.dtime == ipcs["det_time"]

    child.tell("shmdt")
    child.expect()
    detached, row, record = _sysv_detail(segment.id)
    ipcs = _ipcs_times(segment.id)
    assert record.dtime == ipcs["det_time"] >= record.atime
    assert f"detached    {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(record.dtime))} (" in detached
    assert "ago" in row and "never" not in row  # LAST ATTACH, LAST DETACH, CHANGED as ages


def test_sysv_times_never_set_read_never(cleanup: Cleanup) -> None:
    queue = sysv_ipc.MessageQueue(None, sysv_ipc.IPC_CREX)
    cleanup.sysv_msg(queue.id)
    snapshot = scan_kinds("sysv")
    (record,) = [record for record in snapshot.sysv.msg if record.id == queue.id]
    assert (record.stime, record.rtime) == (0, 0) and record.ctime
    detail = describe_record(record, Context(snapshot), ()).plain
    assert "sent        never" in detail and "received    never" in detail
    (row,) = [line for line in report.render(snapshot).splitlines() if line.split()[1:2] == [str(queue.id)]]
    assert row.split()[-4:-2] == ["never", "never"]  # LAST SEND, LAST RECV; then CHANGED "Ns ago"


def test_an_event_with_only_a_pid_from_the_kernel_gets_its_processs_name(spawn: Spawn, cleanup: Cleanup) -> None:
    """A SysV segment's record names its creator by pid alone (shm_cpid): the ``created`` event says its COMM too,
    from the scan's processes (it had none: a PID with an empty COMM)."""
    before = scan_kinds("sysv")
    child = spawn("""
        import sysv_ipc
        segment = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, size=4096)
        say("ready", segment.id)
        hold()
    """, comm="ipcm-sysv-maker")
    (segment_id,) = (int(word) for word in child.expect())
    cleanup.sysv_shm(segment_id)
    after = scan_kinds("sysv")
    made = [event for event in diff(before, after) if event.event == "created" and f"id {segment_id}" in event.object]
    assert [(event.pid, event.comm) for event in made] == [(child.pid, "ipcm-sysv-maker")], made


def test_one_sigprocmask_of_many_signals_is_one_mask_event(spawn: Spawn) -> None:
    """Seen in review: a full set blocked (as around a fork) gave 60 mask-blocked lines, one per signal."""
    child = spawn("""
        import signal
        say("ready")
        for command in commands():
            if command == "block":
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH})
            else:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH})
            say("ready")
    """)
    child.expect()
    steps = [scan_kinds("signal", pids=(child.pid,))]
    for command in ("block", "unblock"):
        child.tell(command)
        child.expect()
        steps.append(scan_kinds("signal", pids=(child.pid,)))
    events = [[(event.event, event.detail) for event in diff(before, after)
               if event.pid == child.pid and event.event.startswith("mask-")]
              for before, after in itertools.pairwise(steps)]
    assert events == [[("mask-blocked", "SIGUSR1, SIGUSR2, SIGWINCH")],
                      [("mask-unblocked", "SIGUSR1, SIGUSR2, SIGWINCH")]], events
