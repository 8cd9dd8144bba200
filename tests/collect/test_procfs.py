"""Races and odd /proc text a test cannot make with real objects: canned /proc trees and the parsers directly.

Also one real race: processes that start and exit while scans run must drop out whole.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from ipcmon.collect import ScanConfig, Scanner, procfs, scan
from ipcmon.collect.fds import parse_maps
from ipcmon.collect.sysv import parse_table
from ipcmon.model import Snapshot
from ipcmon.report import render
from tests.helpers import REPO, Spawn, wait_until

BTIME = 1_700_000_000


def stat_line(pid: int, comm: bytes, ppid: int = 1, start_ticks: int = 4200, state: bytes = b"S") -> bytes:
    """A /proc/PID/stat line: comm sits between the first '(' and the last ')'; starttime is field 22."""
    after = b"%s %d %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %d 0 0\n" % (state, ppid, pid, pid, start_ticks)
    return b"%d (%s) " % (pid, comm) + after


STATUS = (
    b"Name:\tcanned\nState:\tS (sleeping)\nThreads:\t1\nSigQ:\t1/7000\nSigPnd:\t0000000000000000\n"
    b"ShdPnd:\t0000000000000200\nSigBlk:\t0000000000000200\nSigIgn:\t0000000000001000\n"
    b"SigCgt:\t0000000000004002\n"
)


class CannedProc:
    """A directory shaped like /proc, with only the files a test writes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "self").mkdir(parents=True)
        (root / "stat").write_bytes(b"cpu 0 0 0 0\nbtime %d\n" % BTIME)
        (root / "self" / "mountinfo").write_bytes(b"")
        self.shm_dir = root / "shm"
        self.shm_dir.mkdir()

    def process(self, pid: int, comm: bytes = b"canned", *, skip: tuple[str, ...] = (), ppid: int = 1) -> Path:
        """A process directory with stat, cmdline, status, an empty fd dir and maps, minus the `skip` names."""
        base = self.root / str(pid)
        base.mkdir()
        files = {
            "stat": stat_line(pid, comm, ppid=ppid),
            "cmdline": b"canned\0--flag\0",
            "status": STATUS,
            "maps": b"",
        }
        for name, content in files.items():
            if name not in skip:
                (base / name).write_bytes(content)
        if "fd" not in skip:
            (base / "fd").mkdir()
        return base

    def scan(self, *kinds: str) -> Snapshot:
        return scan(ScanConfig(kinds=kinds or ("shm", "mqueue", "pipe", "signal", "sysv"), proc=str(self.root),
                               shm_dir=str(self.shm_dir)))


@pytest.fixture
def canned(tmp_path: Path) -> CannedProc:
    return CannedProc(tmp_path / "proc")


def test_parse_stat_splits_at_the_last_parenthesis() -> None:
    parsed = procfs.parse_stat(stat_line(77, b"evil) (S 666 name", ppid=5, start_ticks=123456))
    assert (parsed.comm, parsed.state, parsed.ppid, parsed.start_ticks) == ("evil) (S 666 name", "S", 5, 123456)
    assert procfs.parse_stat(stat_line(78, b"a b c")).comm == "a b c"
    assert procfs.parse_stat(stat_line(79, b")")).comm == ")"
    assert procfs.parse_stat(stat_line(80, b"\xff\xfe")).comm == "\udcff\udcfe"


def test_canned_process_with_a_hostile_comm(canned: CannedProc) -> None:
    canned.process(4242, b"x) (Z 1 2 [red]", ppid=7)
    snapshot = canned.scan()
    (process,) = snapshot.processes
    assert (process.pid, process.comm, process.ppid, process.start_ticks) == (4242, "x) (Z 1 2 [red]", 7, 4200)
    assert process.cmdline == ("canned", "--flag")
    assert process.start_time == BTIME + 4200 / os.sysconf("SC_CLK_TCK")
    (signals,) = snapshot.signals
    assert (signals.comm, signals.pending, signals.blocked) == ("x) (Z 1 2 [red]", ("SIGUSR1",), ("SIGUSR1",))
    assert (signals.ignored, signals.caught) == (("SIGPIPE",), ("SIGINT", "SIGTERM"))
    assert (signals.queued, signals.queue_limit) == (1, 7000)


@pytest.mark.parametrize("missing", ["fd", "status", "maps", "cmdline"])
def test_process_vanishing_mid_scan_drops_out_whole(canned: CannedProc, missing: str) -> None:
    """The process exited between two reads: whatever was read of it before must not show up."""
    canned.process(100)
    canned.process(200, skip=(missing,))
    snapshot = canned.scan()
    assert [process.pid for process in snapshot.processes] == [100]
    assert [entry.pid for entry in snapshot.signals] == [100]
    assert snapshot.hidden_processes == 0


def test_process_without_a_stat_file_is_skipped(canned: CannedProc) -> None:
    canned.process(100)
    canned.process(300, skip=("stat",))
    (canned.root / "400").mkdir()  # a pid directory already emptied by the exit
    assert [process.pid for process in canned.scan().processes] == [100]


@pytest.mark.parametrize("stat", [b"", b"500 (cut", b"500 (cut) S 1 500", b"500 (ok) S x 1"])
def test_process_with_a_cut_or_garbled_stat_is_skipped(canned: CannedProc, stat: bytes) -> None:
    canned.process(100)
    (canned.process(500) / "stat").write_bytes(stat)
    assert [process.pid for process in canned.scan().processes] == [100]


def test_descriptor_closed_mid_scan_drops_only_that_descriptor(canned: CannedProc) -> None:
    fd_dir = canned.process(100) / "fd"
    os.symlink("pipe:[123456]", fd_dir / "3")  # the link stays, but what it named is gone: stat fails
    snapshot = canned.scan("pipe", "signal")
    assert [process.pid for process in snapshot.processes] == [100]
    assert snapshot.pipes == ()


SHM_HEADER = (
    b"       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime"
    b"      dtime      ctime                   rss                  swap\n"
)
SHM_ROW = b"  1234   7  1600  4096  10  11  1  0  0  0  0  1700000001  0  1700000000  4096  0\n"


def test_sysvipc_row_cut_short_is_skipped() -> None:
    rows = parse_table(SHM_HEADER + SHM_ROW + SHM_ROW.replace(b" 7 ", b" 8 ")[:30])
    assert [row["shmid"] for row in rows] == [7]
    assert rows[0]["perms"] == 0o1600  # octal in the file
    assert rows[0]["key"] == 1234
    assert parse_table(b"") == []
    assert parse_table(SHM_HEADER) == []


def test_sysvipc_garbled_row_is_skipped_not_fatal(canned: CannedProc) -> None:
    sysvipc = canned.root / "sysvipc"
    sysvipc.mkdir()
    (sysvipc / "shm").write_bytes(SHM_HEADER + SHM_ROW.replace(b"1600", b"16x0") + SHM_ROW.replace(b" 7 ", b" 9 "))
    (sysvipc / "msg").write_bytes(
        b"key msqid perms cbytes qnum lspid lrpid uid gid cuid cgid stime rtime ctime\n"
        b"5 3 600 12 2 10 0 0 0 0 0 1 0 1\n5 4 600 12"
    )
    (sysvipc / "sem").write_bytes(b"key semid perms nsems uid gid cuid cgid otime ctime\n")
    sysv = canned.scan("sysv").sysv
    assert sysv.available
    assert [(segment.id, segment.removed, segment.mode) for segment in sysv.shm] == [(9, True, 0o600)]
    assert [(msg.id, msg.qnum, msg.qbytes) for msg in sysv.msg] == [(3, 2, 12)]
    assert sysv.sem == ()


def test_missing_sysvipc_is_a_note(canned: CannedProc) -> None:
    snapshot = canned.scan("sysv")
    assert snapshot.sysv.available is False
    assert any("/proc/sysvipc is missing" in note for note in snapshot.notes)


MOUNTINFO = (
    b"22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
    b"41 24 0:20 / %s rw,relatime - mqueue my\\040queue rw\n"
    b"42 24 0:27 / /dev/shm rw - tmpfs tmpfs rw\n"
    b"garbage line without separator\n"
)


def test_mountinfo_octal_escapes(canned: CannedProc) -> None:
    (canned.root / "self" / "mountinfo").write_bytes(MOUNTINFO % b"/run/mq\\040dir\\011tab\\012nl\\134back")
    mounts = procfs.mounts(str(canned.root))
    assert [mount.fstype for mount in mounts] == ["proc", "mqueue", "tmpfs"]
    mqueue = procfs.find_mount("mqueue", str(canned.root))
    assert mqueue is not None
    assert mqueue.mount_point == "/run/mq dir\ttab\nnl\\back"
    assert mqueue.source == "my queue"
    assert mqueue.dev == os.makedev(0, 20)


MOUNTS_FOLLOW_THE_TABLE = """
import os, subprocess, sys
from ipcmon.collect import procfs
where = sys.argv[1]
subprocess.run(["mount", "--make-rprivate", "/"], check=True)  # this namespace's mounts stay its own
def has():
    return [mount.fstype for mount in procfs.mounts() if mount.mount_point == where]
before = has()
subprocess.run(["mount", "-t", "mqueue", "none", where], check=True)
mounted = has()
subprocess.run(["umount", where], check=True)
print(before, mounted, has())
"""


def test_mounts_follow_a_mount_and_an_unmount_between_reads(tmp_path: Path) -> None:
    """The parsed table is kept while mountinfo reads the same: a mount and an unmount must still show at once
    (in a mount namespace of the test's own, so nothing else sees them)."""
    where = tmp_path / "mq"
    where.mkdir()
    done = subprocess.run(["unshare", "--mount", sys.executable, "-c", MOUNTS_FOLLOW_THE_TABLE, str(where)],
                          capture_output=True, text=True, timeout=60, check=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.split() == ["[]", "['mqueue']", "[]"]


def test_scan_lists_the_mqueue_mount_found_under_an_escaped_path(canned: CannedProc, tmp_path: Path) -> None:
    mount_point = tmp_path / "mq dir"
    mount_point.mkdir()
    (canned.root / "self" / "mountinfo").write_bytes(MOUNTINFO % str(mount_point).replace(" ", "\\040").encode())
    snapshot = canned.scan("mqueue")
    assert snapshot.mqueue_dir == str(mount_point)
    assert not any("mount -t mqueue" in note for note in snapshot.notes)


def test_report_shows_a_hostile_mount_point_inert(canned: CannedProc, tmp_path: Path) -> None:
    # The kernel escapes only space, tab, newline and backslash in mountinfo; an ESC comes through raw.
    mount_point = os.fsencode(tmp_path) + b"/mq\x1b]2;t\x07\ndir"
    os.mkdir(mount_point)
    (canned.root / "self" / "mountinfo").write_bytes(MOUNTINFO % mount_point.replace(b"\n", b"\\012"))
    snapshot = canned.scan("mqueue")
    assert snapshot.mqueue_dir == os.fsdecode(mount_point)
    text = render(snapshot)
    assert "\x1b" not in text and "\x07" not in text
    assert "/mq\\x1b]2;t\\x07\\x0adir)" in text


def test_no_mqueue_mount_is_a_note_with_the_mount_command(canned: CannedProc) -> None:
    snapshot = canned.scan("mqueue")
    assert snapshot.mqueue_dir is None
    assert any("mount -t mqueue none /dev/mqueue" in note for note in snapshot.notes)


def test_maps_lines_with_spaces_and_deleted_marks() -> None:
    token = b"00:1b"
    data = (
        b"7f0000000000-7f0000002000 rw-s 00000000 00:1b 3                          /dev/shm/a name (deleted)\n"
        b"7f0000003000-7f0000004000 r--p 00000000 00:1b 4                          /dev/shm/b\n"
        b"7f0000005000-7f0000006000 rw-s 00000000 00:01 32769                      /SYSV00000000 (deleted)\n"
        b"7f0000007000-7f0000008000 r-xp 00000000 08:01 1234                       /usr/lib/00:1b.so\n"
        b"7f0000009000-7f000000a000 rw-p 00000000 00:00 0 \n"
    )
    refs = parse_maps(9, data, token)
    assert [(ref.path, ref.deleted, ref.sysv, ref.inode, ref.size, ref.prot) for ref in refs] == [
        ("/dev/shm/a name", True, False, 3, 0x2000, "rw-s"),
        ("/dev/shm/b", False, False, 4, 0x1000, "r--p"),
        ("/SYSV00000000", True, True, 32769, 0x1000, "rw-s"),
    ]


def test_processes_exiting_during_scans_drop_out_whole(spawn: Spawn) -> None:
    """Real races: short-lived processes holding pipes start and exit while scans run."""
    churner = spawn("""
        say("ready")
        os.execvp("sh", ["sh", "-c", "while :; do echo x | cat >/dev/null; sleep 0.01; done"])
    """)
    churner.expect()
    for _ in range(5):
        snapshot = scan(ScanConfig())
        pids = {process.pid for process in snapshot.processes}
        for pipe in snapshot.pipes:
            assert {end.pid for end in pipe.readers + pipe.writers} <= pids
        for segment in snapshot.shm:
            assert {holder.pid for holder in segment.holders} <= pids
        for queue in snapshot.mqueues:
            assert {holder.pid for holder in queue.holders} <= pids
        assert {entry.pid for entry in snapshot.signals} <= pids
    assert churner.popen.poll() is None  # it churned all along


def test_a_kernel_thread_is_read_without_its_empty_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """kthreadd (pid 2, PF_KTHREAD) has no command line, descriptors or map, and its syscall file shows zeroed
    registers (``0 0x0 …``, read(2) of fd 0 to the eye): none of them is read, and it waits on nothing."""
    stat = procfs.parse_stat(procfs.read_bytes("/proc/2/stat"))
    assert stat.flags & procfs.PF_KTHREAD, "pid 2 is kthreadd in the initial PID namespace"
    assert procfs.read_bytes("/proc/2/syscall").split()[0] == b"0"  # the quirk the scan must not take for a read
    read: list[str] = []
    listed: list[str] = []
    real_read, real_listdir = procfs.read_bytes, os.listdir

    def read_bytes(path: str, **options: bool) -> bytes:
        read.append(path)
        return real_read(path, **options)

    def listdir(path: str) -> list[str]:
        listed.append(str(path))
        return real_listdir(path)

    monkeypatch.setattr(procfs, "read_bytes", read_bytes)
    monkeypatch.setattr(os, "listdir", listdir)
    snapshot = scan(ScanConfig(kinds=("pipe", "shm", "signal")))
    (kthreadd,) = [process for process in snapshot.processes if process.pid == 2]
    assert (kthreadd.comm, kthreadd.cmdline, kthreadd.waiting) == ("kthreadd", (), None)
    assert [path for path in read if path.startswith("/proc/2/")] == ["/proc/2/stat", "/proc/2/status"]
    assert "/proc/2/fd" not in listed
    assert any(path.startswith(f"/proc/{os.getpid()}/") and path.endswith("/cmdline") for path in read)


def own_fds() -> int:
    return len(os.listdir("/proc/self/fd"))




@pytest.mark.usefixtures("fds_above_1024")
def test_kept_proc_files_are_read_again_with_pread_and_closed_with_their_process(spawn: Spawn) -> None:
    """OpenProcFiles: the second read of a process's stat opens nothing; once the process is reaped its kept files
    read Gone (stat by its path, the rest at once), and retain() closes what the last scan did not read."""
    child = spawn("say('ready')\nhold()\n")
    child.expect()
    files = procfs.OpenProcFiles()
    baseline = own_fds()
    try:
        files.read(child.pid, "stat")
        assert not files.holds(child.pid)  # first seen: read by path (most such processes are gone by the next scan)
        files.retain({child.pid})  # a scan read it: kept from the next read on
        first = files.read(child.pid, "stat")
        assert files.holds(child.pid) and files.alive(child.pid) and own_fds() == baseline + 1
        assert min(files._fds.values()) >= procfs.KEPT_FD_FLOOR  # select(2)'s numbers stay free
        assert files.read(child.pid, "schedstat").count(b" ") == 2
        opened: list[str] = []
        real_open = os.open

        def counting_open(path: str, *args: int) -> int:
            opened.append(str(path))
            return real_open(path, *args)

        os.open = counting_open  # type: ignore[assignment]
        try:
            again = files.read(child.pid, "stat")
            files.read(child.pid, "schedstat")
        finally:
            os.open = real_open  # type: ignore[assignment]
        assert opened == [] and again.split(b")")[0] == first.split(b")")[0]
        child.stop()  # killed and reaped: its pid names no process now (or, rarely, another one)
        assert not files.alive(child.pid)
        with pytest.raises(procfs.Gone):
            files.read(child.pid, "schedstat")
        with contextlib.suppress(procfs.Gone):
            files.read(child.pid, "stat")
        assert not files.holds(child.pid) or files.alive(child.pid)  # a new process on the pid, if any, is kept
        kept, before = len(files), own_fds()
        files.retain(())
        assert len(files) == 0 and own_fds() == before - kept
    finally:
        files.close()


@pytest.mark.usefixtures("fds_above_1024")
def test_kept_proc_files_stay_within_their_budget(spawn: Spawn) -> None:
    children = [spawn("say('ready')\nhold()\n") for _ in range(3)]
    for child in children:
        child.expect()
    files = procfs.OpenProcFiles(budget=2)
    files.retain({child.pid for child in children})
    try:
        for child in children:
            assert files.read(child.pid, "stat").startswith(f"{child.pid} (".encode())
        assert len(files) == 2 and [files.holds(child.pid) for child in children] == [True, True, False]
        assert not files.will_hold(children[2].pid)
    finally:
        files.close()
    assert len(files) == 0


@pytest.mark.usefixtures("fds_above_1024")
def test_thread_files_take_at_most_half_of_the_budget(spawn: Spawn) -> None:
    """A process's threads' task/TID files are kept only while half the budget is free: processes with many threads
    leave room for every process's own stat and schedstat. Each text read is the thread's, kept or not."""
    child = spawn("import threading\nthreading.Thread(target=hold, daemon=True).start()\nsay('ready')\nhold()\n")
    child.expect()
    wait_until(lambda: len(os.listdir(f"/proc/{child.pid}/task")) == 2, "the child's second thread")
    tids = sorted(os.listdir(f"/proc/{child.pid}/task"))
    files = procfs.OpenProcFiles(budget=6)
    files.retain({child.pid})
    try:
        files.read(child.pid, "stat")
        for tid in tids:
            for name in ("stat", "schedstat"):
                text = files.read(child.pid, f"task/{tid}/{name}")
                assert name == "schedstat" or text.startswith(f"{tid} (".encode())
        kept = sorted(name for pid, name in files._fds if pid == child.pid)
        assert kept == sorted(["stat", f"task/{tids[0]}/stat", f"task/{tids[0]}/schedstat"])  # half of 6 is used
        files.read(child.pid, "schedstat")
        assert files.holds(child.pid) and len(files) == 4  # the process's own files still find room
    finally:
        files.close()


@pytest.mark.usefixtures("fds_above_1024")
def test_a_kept_stat_of_a_reaped_process_reads_the_new_owner_of_its_pid(spawn: Spawn) -> None:
    """A pid named a process whose kept stat now fails with ESRCH (reaped): the pid is read again by its path, as
    the process that has it now. (The reaped process's file is put under a live child's pid: a pid cannot be
    made to come round again in a test.)"""
    gone = spawn("say('ready')\nhold()\n")
    gone.expect()
    stale = os.open(f"/proc/{gone.pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    gone.stop()
    child = spawn("say('ready')\nhold()\n", comm="ipcm-new-owner")
    child.expect()
    files = procfs.OpenProcFiles()
    files.retain({child.pid})
    files._fds[(child.pid, "stat")] = stale  # as if the pid had come round to the child
    try:
        assert not files.alive(child.pid)
        assert procfs.parse_stat(files.read(child.pid, "stat")).comm == "ipcm-new-owner"
        assert files.alive(child.pid)  # its own stat is kept now
        scanner = Scanner(ScanConfig(kinds=("pipe",)))
        try:
            (read,) = [p for p in scanner.scan().processes if p.pid == child.pid]
            assert read.comm == "ipcm-new-owner"
        finally:
            scanner.close()
    finally:
        files.close()


def test_descriptors_on_proc_files_cost_one_readlink(monkeypatch: pytest.MonkeyPatch) -> None:
    """A monitor keeps /proc files open by the thousand (OpenProcFiles): reading its descriptor table stats none
    of them (no IPC object lives under /proc), as it stats no socket."""
    from ipcmon.collect.fds import Devices, read_fds

    kept = [os.open(f"/proc/{os.getpid()}/stat", os.O_RDONLY | os.O_CLOEXEC) for _ in range(50)]
    stats: list[str] = []
    real_stat = os.stat

    def counting_stat(path: str, *args: object, **kwargs: object) -> os.stat_result:
        stats.append(str(path))
        return real_stat(path, *args, **kwargs)  # type: ignore[arg-type]

    try:
        monkeypatch.setattr(os, "stat", counting_stat)
        refs = read_fds(os.getpid(), Devices(None, None))
    finally:
        monkeypatch.undo()
        for fd in kept:
            os.close(fd)
    assert not any(path.endswith(f"/fd/{fd}") for path in stats for fd in kept), stats
    assert all(ref.fd not in kept for ref in refs)



def test_no_proc_file_is_kept_under_the_usual_soft_limit_of_1024(spawn: Spawn) -> None:
    """Under the soft RLIMIT_NOFILE most systems give (1024) there is no number from 1024 up to keep a file at:
    every read goes by path, as before, and nothing is held open."""
    child = spawn("say('ready')\nhold()\n")
    child.expect()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        files = procfs.OpenProcFiles()
        assert files.budget == 0
        assert files.read(child.pid, "stat").startswith(f"{child.pid} (".encode())
        assert len(files) == 0 and not files.holds(child.pid)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_front_ends_raise_their_soft_open_files_limit_within_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        procfs.raise_open_files_limit()
        raised, same_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert same_hard == hard
        assert raised == (procfs.OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY
                          else min(hard, procfs.OPEN_FILES_WANTED))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
