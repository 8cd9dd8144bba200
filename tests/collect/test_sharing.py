"""Which processes share their memory or descriptor table (collect/sharing.py, kcmp(2)), and what a Scanner's turn
of a process that shares neither reads: real clone(2) sharers, a real FIFO renamed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import posix_ipc
import pytest

from ipcmon.collect import Scanner, procfs
from ipcmon.collect import process as process_module
from ipcmon.collect.process import run_signature
from ipcmon.collect.sharing import KCMP_FILES, KCMP_VM, Sharing, kcmp
from ipcmon.model import Snapshot
from tests.collect.test_scanner import SHARING
from tests.helpers import Cleanup, Spawn, first_arguments, settle, wait_until

CLONE_VM_SOURCE = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int go[2];
static char said[64];

/* Shares the parent's memory (CLONE_VM), not its descriptor table: waits for a byte on go, then maps the segment
   named in argv[1] into the memory both use, while the parent sleeps in read(0) and never runs. */
static int sharer(void *name) {
    char byte;
    if (read(go[0], &byte, 1) != 1) _exit(1);
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0 || mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED) _exit(1);
    close(fd);
    if (write(1, "mapped\n", 7) != 7) _exit(1);
    for (;;) pause();
}

int main(int argc, char **argv) {
    static char stack[1 << 16];
    char line[16];
    if (argc != 2 || pipe(go) != 0) return 1;
    int pid = clone(sharer, stack + sizeof stack, CLONE_VM | SIGCHLD, argv[1]);
    if (pid < 0) return 1;
    int length = snprintf(said, sizeof said, "ready %d %d\n", pid, go[1]);
    if (write(1, said, length) != length) return 1;
    if (read(0, line, sizeof line) < 0) return 1;
    kill(pid, SIGKILL);
    return 0;
}
"""


@pytest.fixture(scope="module")
def clone_vm_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C program above, built with the machine's compiler (.ci/run installs gcc)."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    assert compiler is not None, "a C compiler is needed to make a clone(CLONE_VM) sharer (apt-get install gcc)"
    source = tmp_path_factory.mktemp("clone-vm") / "sharer.c"
    source.write_text(CLONE_VM_SOURCE)
    program = source.with_suffix("")
    subprocess.run([compiler, "-O1", "-o", str(program), str(source)], check=True, capture_output=True)
    return program


@pytest.fixture
def memory_sharers(clone_vm_program: Path, cleanup: Cleanup, unique_name: str) -> Iterator[tuple[int, int, int, str]]:
    """A parent asleep in read(0) and its clone(CLONE_VM) sharer, asleep on a pipe: (parent, sharer, the number of
    the pipe's write end in the sharer, the name of a segment it maps when woken). Both killed by pid at the end."""
    posix_ipc.SharedMemory(cleanup.shm(unique_name), posix_ipc.O_CREX, size=4096).close_fd()
    parent = subprocess.Popen([str(clone_vm_program), unique_name], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    sharer = None
    try:
        assert parent.stdout is not None
        words = parent.stdout.readline().split()
        assert words[:1] == ["ready"], words
        sharer, go = int(words[1]), int(words[2])
        yield parent.pid, sharer, go, unique_name
    finally:
        if sharer is not None:
            try:
                os.kill(sharer, signal.SIGKILL)
            except ProcessLookupError:
                pass
        parent.kill()
        parent.wait()


def start_of(pid: int) -> int:
    return procfs.parse_stat(procfs.read_bytes(f"/proc/{pid}/stat")).start_ticks


def test_kcmp_tells_a_shared_descriptor_table_and_a_shared_memory(
    spawn: Spawn, memory_sharers: tuple[int, int, int, str]
) -> None:
    child = spawn(SHARING)
    files_sharer = int(child.expect()[0])
    try:
        assert kcmp(child.pid, files_sharer, KCMP_FILES) == 0
        assert kcmp(child.pid, files_sharer, KCMP_VM) in (1, 2)  # clone(CLONE_FILES) copies the memory
        parent, memory_sharer, _, _ = memory_sharers
        assert kcmp(parent, memory_sharer, KCMP_VM) == 0
        assert kcmp(parent, memory_sharer, KCMP_FILES) in (1, 2)
        # The order is a total one: each answer is the other's reversed.
        assert {kcmp(parent, child.pid, KCMP_VM), kcmp(child.pid, parent, KCMP_VM)} == {1, 2}
        with pytest.raises(ProcessLookupError):
            kcmp(parent, 2**22 + 1, KCMP_VM)  # no such process (above pid_max's default)
    finally:
        os.kill(files_sharer, signal.SIGKILL)


def test_sharers_are_never_alone_and_the_one_left_is_when_its_sharer_goes(
    spawn: Spawn, memory_sharers: tuple[int, int, int, str]
) -> None:
    parent, sharer, _, _ = memory_sharers
    lone = spawn("say('ready')\nhold()\n")
    lone.expect()
    others = [pid for pid in procfs.pids() if pid not in (parent, sharer, lone.pid)]
    sharing = Sharing()
    starts = {pid: (start_of(pid), os.getuid()) for pid in (parent, sharer, lone.pid)}
    for pid in others:  # every process of the machine, as a Scanner places them (those kcmp(2) refuses are not)
        try:
            starts[pid] = (start_of(pid), os.stat(f"/proc/{pid}").st_uid)
        except (procfs.Gone, procfs.Denied, FileNotFoundError):
            continue
    sharing.update(starts, ran=())
    alone = sharing.alone()
    assert parent not in alone and sharer not in alone
    assert lone.pid in alone
    os.kill(sharer, signal.SIGKILL)  # a zombie (its parent sleeps) has no memory left to share
    starts.pop(sharer)
    sharing.update(starts, ran=())
    assert parent in sharing.alone()  # its only sharer left: re-checked against its new neighbours


def holders_of(snapshot: Snapshot, name: str) -> set[int]:
    (segment,) = [segment for segment in snapshot.shm if segment.name == "/" + name.lstrip("/")]
    return {holder.pid for holder in segment.holders}


def test_memory_a_sharer_maps_shows_at_the_other_s_turn_though_it_never_ran(
    memory_sharers: tuple[int, int, int, str],
) -> None:
    """clone(CLONE_VM) without CLONE_THREAD: the sharer maps a segment into the memory both use while the parent
    sleeps. The parent shares its memory, so its turn reads it in full and finds itself a holder."""
    parent, sharer, go, name = memory_sharers
    scanner = Scanner(refresh_every=3)
    settle(scanner, parent)
    before = run_signature(parent, procfs.parse_stat(procfs.read_bytes(f"/proc/{parent}/stat")))
    with open(f"/proc/{sharer}/fd/{go}", "wb", buffering=0) as wake:
        wake.write(b"x")
    for _ in range(50):
        if sharer in holders_of(scanner.scan(), name):
            break
    holders = [holders_of(scanner.scan(), name) for _ in range(3)]
    after = run_signature(parent, procfs.parse_stat(procfs.read_bytes(f"/proc/{parent}/stat")))
    assert before is not None and before == after  # it never ran: only its turn can see the new mapping
    assert holders[-1] == {parent, sharer}, f"holders over refresh_every scans: {holders}"


def test_the_turn_of_a_process_that_shares_nothing_reads_no_table_but_a_fifo_s_new_path(
    spawn: Spawn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sleeping process alone in its memory and table: on its turn its descriptors and mappings are not read again
    (it is turned, and the same records stand), but a FIFO it holds, renamed by someone else, shows its new path."""
    fifo = tmp_path / "ipcm-fifo"
    os.mkfifo(fifo)
    child = spawn(f"fd = os.open({str(fifo)!r}, os.O_RDWR)\nsay('ready')\nhold()\n")
    child.expect()
    scanner = Scanner(refresh_every=3)
    settle(scanner, child.pid)
    read = first_arguments(monkeypatch, process_module, "read_fds")
    turns = 0
    for _ in range(4):
        scanner.scan()
        turns += child.pid in scanner.turned
    assert turns >= 1
    assert child.pid not in read  # no turn read its table
    renamed = tmp_path / "ipcm-fifo-renamed"
    fifo.rename(renamed)
    paths = set()
    for _ in range(4):
        snapshot = scanner.scan()
        paths |= {pipe.path for pipe in snapshot.pipes if any(end.pid == child.pid for end in pipe.readers)}
    assert str(renamed) in paths, paths
    assert child.pid in read  # the path moved: the turn read it in full


BUSY_SHARER = """
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_FILES = 0x400
CLONE = {"x86_64": 56, "aarch64": 220}[os.uname().machine]  # clone(2)'s system call number
trigger, segment = sys.argv[1], sys.argv[2]
sharer = libc.syscall(CLONE, CLONE_FILES | signal.SIGCHLD, 0, 0, 0, 0)  # shares our descriptor table
if sharer == 0:
    while not os.path.exists(trigger):  # always running (state R): a Scanner never takes it over
        pass
    os.open(segment, os.O_RDWR)
    while True:
        pass
print("ready", sharer, flush=True)
os.read(0, 1)  # the parent sleeps here and never runs
"""


def test_a_running_sharer_s_new_descriptor_shows_at_the_sleeping_one_s_turn(
    tmp_path: Path, cleanup: Cleanup, unique_name: str
) -> None:
    """A sharer that is always running has no run signature, and was once left out of kcmp(2)'s orders, so the
    sleeping process it shares a descriptor table with was taken for alone and its turn never read the table again
    (a reviewer's reproduction). Every user process is placed now: the sleeping one is shared, and its turn shows
    the segment the running one opened in their table."""
    posix_ipc.SharedMemory(cleanup.shm(unique_name), posix_ipc.O_CREX, size=4096).close_fd()
    trigger = tmp_path / "open-now"
    parent = subprocess.Popen([sys.executable, "-c", BUSY_SHARER, str(trigger), f"/dev/shm{unique_name}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    sharer = None
    try:
        assert parent.stdout is not None
        words = parent.stdout.readline().split()
        assert words[:1] == ["ready"], words
        sharer = int(words[1])
        scanner = Scanner(refresh_every=3)
        settle(scanner, parent.pid)
        assert parent.pid not in scanner._memory.sharing.alone()
        before = run_signature(parent.pid, procfs.parse_stat(procfs.read_bytes(f"/proc/{parent.pid}/stat")))
        trigger.touch()
        wait_until(lambda: sharer in holders_of(scanner.scan(), unique_name), "the sharer holding the segment")
        holders = [holders_of(scanner.scan(), unique_name) for _ in range(3)]
        after = run_signature(parent.pid, procfs.parse_stat(procfs.read_bytes(f"/proc/{parent.pid}/stat")))
        assert before is not None and before == after  # it never ran: only its turn can see the new descriptor
        assert parent.pid in holders[-1], f"holders over refresh_every scans: {holders}"
    finally:
        if sharer is not None:
            os.kill(sharer, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_a_command_line_written_into_a_lone_sleeper_s_memory_shows_at_its_turn(spawn: Spawn) -> None:
    """Nobody shares the process's memory, yet root (a ptracer) may write its command line through /proc/PID/mem:
    the turn of a process alone reads its command line again (a reviewer's reproduction)."""
    child = spawn("say('ready')\nhold()\n", comm="ipcm-lone")
    child.expect()
    scanner = Scanner(refresh_every=3)
    settle(scanner, child.pid)
    assert child.pid in scanner._memory.sharing.alone()
    raw = procfs.read_bytes(f"/proc/{child.pid}/cmdline")
    at = raw.index(b"say(")
    fields = procfs.read_bytes(f"/proc/{child.pid}/stat").rsplit(b")", 1)[1].split()
    arg_start = int(fields[45])  # proc_pid_stat(5): arg_start is field 48, the 46th after the command's ")"
    with open(f"/proc/{child.pid}/mem", "r+b", buffering=0) as memory:
        memory.seek(arg_start + at)
        memory.write(b"SAY(")
    lines = []
    for _ in range(4):
        (process,) = [process for process in scanner.scan().processes if process.pid == child.pid]
        lines.append(" ".join(process.cmdline))
    assert "SAY(" in lines[-1], lines


def test_an_ordinary_user_s_processes_are_not_alone_while_one_of_theirs_is_hidden(
    spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """To an ordinary user kcmp(2) refuses their own non-dumpable processes, which may share a table with one it
    can read: while the scan could not read one of an owner's processes, none of that owner's is alone."""
    lone = spawn("say('ready')\nhold()\n")
    lone.expect()
    sharing = Sharing()
    starts = {lone.pid: (start_of(lone.pid), 4242)}
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    sharing.update(starts, ran=(), unread={4242})
    assert lone.pid not in sharing.alone()
    sharing.update(starts, ran=(), unread=())
    assert lone.pid in sharing.alone()
