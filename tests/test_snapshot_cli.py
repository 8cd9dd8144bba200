"""`ipcmon snapshot` end to end: hostile names stay inert, --kind and --pid restrict, and a user who
cannot see everything gets a clean answer that says so."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from typing import Any

import posix_ipc
import pytest
import sysv_ipc

from ipcmon.safe import printable
from ipcmon.ui.view.rows import signal_rows
from ipcmon.ui.view.table import Context, RowCache
from tests.helpers import REPO, Cleanup, Spawn, new_name, scan_kinds, tool


def ipcmon(*args: str, user: str | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m ipcmon ARGS` (as `user` through setpriv when given); stdout and stderr as bytes."""
    command = [sys.executable, "-m", "ipcmon", *args]
    if user is not None:
        command = [tool("setpriv"), f"--reuid={user}", "--regid=nogroup", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          check=False, timeout=60)


def snapshot_json(*args: str, user: str | None = None) -> dict[str, Any]:
    result = ipcmon("snapshot", "--json", *args, user=user)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


HOSTILE = [b"[@click=app.quit]x", b"\x1b]2;pwned\x07", b"line\nbreak", b"bad\xff\xfeutf8"]


@pytest.fixture
def hostile_segments(cleanup: Cleanup) -> list[bytes]:
    """Segment names (with their slash) made of hostile bytes, created with os.open on /dev/shm/<bytes>."""
    prefix = new_name().encode() + b"-"
    names = [prefix + suffix for suffix in HOSTILE]
    for name in names:
        path = cleanup.path(b"/dev/shm" + name)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
    return names


def rows_with(output: bytes, needle: bytes) -> list[bytes]:
    """Rows of the mechanism tables holding needle (the leaks and hazards section at the end names them again)."""
    tables = output.split(b"\n== Leaks and hazards", 1)[0]
    return [line for line in tables.split(b"\n") if needle in line]


def test_text_output_shows_hostile_names_inert(hostile_segments: list[bytes], spawn: Spawn) -> None:
    prefix = hostile_segments[0][: -len(HOSTILE[0])]
    # A holder whose comm is hostile too, with a blocked pending signal so it has a row in the signals table.
    holder = spawn(f"""
        _libc.prctl(15, b"\\x1b[2Jx\\ny\\x07", 0, 0, 0)
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
        fd = os.open(b"/dev/shm" + {hostile_segments[1]!r}, os.O_RDONLY)
        say("ready")
        hold()
    """)
    holder.expect()
    os.kill(holder.pid, signal.SIGUSR1)

    result = ipcmon("snapshot", "--kind", "shm,signal")
    assert result.returncode == 0, result.stderr
    output = result.stdout
    assert b"\x1b" not in output
    assert b"\x07" not in output
    output.decode("utf-8")  # no raw invalid bytes reach the terminal either

    rows = rows_with(output, prefix)
    assert len(rows) == len(HOSTILE), rows  # one row each: the newline in a name forged no extra row
    joined = b"\n".join(rows)
    assert b"[@click=app.quit]x" in joined  # plain text: markup is shown, never interpreted
    assert b"\\x1b]2;pwned\\x07" in joined
    assert b"line\\x0abreak" in joined
    assert b"bad\\xff\\xfeutf8" in joined
    (held_row,) = rows_with(output, b"pwned")
    assert b"%d \\x1b[2Jx\\x0ay\\x07 fd" % holder.pid in held_row
    (signal_row,) = [row for row in rows_with(output, b"%d " % holder.pid) if b"USR1" in row]
    assert b"\\x1b[2Jx\\x0ay\\x07" in signal_row


def test_json_keeps_hostile_names_exact(hostile_segments: list[bytes]) -> None:
    result = ipcmon("snapshot", "--json", "--kind", "shm")
    assert result.returncode == 0, result.stderr
    assert result.stdout.isascii()
    data = json.loads(result.stdout)
    prefix = os.fsdecode(hostile_segments[0][: -len(HOSTILE[0])])
    ours = [segment for segment in data["shm"] if segment["name"].startswith(prefix)]
    assert sorted(os.fsencode(segment["name"]) for segment in ours) == sorted(hostile_segments)
    assert sorted(os.fsencode(segment["path"]) for segment in ours) == sorted(b"/dev/shm" + n for n in hostile_segments)
    assert {segment["state"] for segment in ours} == {"orphaned"}


HOLDER = """
    fd = os.open("/dev/shm" + {name!r}, os.O_RDWR)
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR2}})
    say("ready", fd)
    hold()
"""


def test_kind_and_pid_restrict_the_output(spawn: Spawn, cleanup: Cleanup) -> None:
    names = [cleanup.shm(new_name()) for _ in range(2)]
    for name in names:
        posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
    queue_name = cleanup.mqueue(new_name())
    posix_ipc.MessageQueue(queue_name, posix_ipc.O_CREX).close()
    first, second = (spawn(HOLDER.format(name=name)) for name in names)
    first.expect()
    second.expect()

    everything = snapshot_json()
    assert everything["kinds"] == ["shm", "memfd", "mqueue", "pipe", "signal", "sysv"]
    assert set(names) <= {segment["name"] for segment in everything["shm"]}

    only_queues = snapshot_json("--kind", "mqueue")
    assert only_queues["kinds"] == ["mqueue"]
    assert queue_name in {queue["name"] for queue in only_queues["mqueues"]}
    assert only_queues["shm"] == only_queues["pipes"] == only_queues["signals"] == []
    assert only_queues["sysv"]["shm"] == only_queues["sysv"]["msg"] == only_queues["sysv"]["sem"] == []

    only_first = snapshot_json("--pid", str(first.pid))
    assert [process["pid"] for process in only_first["processes"]] == [first.pid]
    assert [segment["name"] for segment in only_first["shm"] if segment["name"] in names] == [names[0]]
    assert {holder["pid"] for segment in only_first["shm"] for holder in segment["holders"]} == {first.pid}
    assert [entry["pid"] for entry in only_first["signals"]] == [first.pid]
    assert only_first["mqueues"] == []  # nobody holds the queue, so it is not first's
    for pipe in only_first["pipes"]:
        assert first.pid in {end["pid"] for end in pipe["readers"] + pipe["writers"]}

    text = ipcmon("snapshot", "--kind", "shm,signal", "--pid", str(second.pid))
    assert text.returncode == 0, text.stderr
    assert names[1].encode() in text.stdout
    assert names[0].encode() not in text.stdout
    assert b"== POSIX shared memory" in text.stdout
    assert b"== Signals" in text.stdout
    assert b"== POSIX message queues" not in text.stdout
    assert b"== Pipes" not in text.stdout
    assert b"== SysV" not in text.stdout
    assert b"\n%d " % first.pid not in text.stdout


def test_bad_kind_is_a_usage_error() -> None:
    result = ipcmon("snapshot", "--kind", "shm,bogus")
    assert result.returncode == 2
    assert b"unknown kind bogus" in result.stderr
    assert b"Traceback" not in result.stderr


def test_unprivileged_user_gets_a_clean_partial_answer(cleanup: Cleanup, spawn: Spawn) -> None:
    # Root's queue, mode 0600: nobody cannot open it, so its counts are unknown (null), never zero.
    queue_name = cleanup.mqueue(new_name())
    queue = posix_ipc.MessageQueue(queue_name, posix_ipc.O_CREX, mode=0o600)
    queue.send(b"secret")
    queue.close()
    root_child = spawn("say('ready')\nhold()\n")
    root_child.expect()

    data = snapshot_json(user="nobody")
    assert data["hidden_processes"] > 0
    assert any("could not be fully read" in note and "run as root" in note for note in data["notes"])
    (ours,) = [q for q in data["mqueues"] if q["name"] == queue_name]
    assert (ours["messages"], ours["qsize_bytes"], ours["max_messages"], ours["fill_percent"]) == (None,) * 4
    (child,) = [process for process in data["processes"] if process["pid"] == root_child.pid]
    assert child["hidden"] is True

    text = ipcmon("snapshot", user="nobody")
    assert text.returncode == 0, text.stderr
    assert b"Traceback" not in text.stderr
    hidden = re.search(rb"processes \((\d+) not fully readable\)", text.stdout.split(b"\n")[0])
    assert hidden is not None and int(hidden.group(1)) > 0
    assert re.search(rb"\nnote: .*run as root", text.stdout)


def test_fifo_with_a_hostile_path_is_inert(spawn: Spawn, cleanup: Cleanup) -> None:
    # A short path, so the whole name fits in the table's 48-character cell.
    fifo = os.fsencode(tempfile.mktemp(prefix="ipcm-", dir="/tmp")) + b"-\x1b[31m\n\xff"
    os.mkfifo(cleanup.path(fifo))
    holder = spawn(f"""
        fd = os.open({fifo!r}, os.O_RDWR)
        say("ready")
        hold()
    """)
    holder.expect()
    result = ipcmon("snapshot", "--kind", "pipe", "--pid", str(holder.pid))
    assert result.returncode == 0, result.stderr
    assert b"\x1b" not in result.stdout
    (row,) = rows_with(result.stdout, b"/tmp/ipcm-")
    assert os.fsencode(printable(os.fsdecode(fifo))) in row
    assert b"-\\x1b[31m\\x0a\\xff " in row  # the whole escaped name, not cut
    assert b"both-ends" in row
    data = snapshot_json("--kind", "pipe", "--pid", str(holder.pid))
    (entry,) = [pipe for pipe in data["pipes"] if pipe["kind"] == "fifo"]
    assert os.fsencode(entry["path"]) == fifo


# The field names README.md promises for `ipcmon snapshot --json` ("fields may be added; the names below
# are kept").
CONTRACT = {
    "top": "schema taken_at hidden_processes notes shm mqueues pipes signals sysv processes",
    "shm": "name path kind size allocated mode uid gid owner group mtime ctime dev inode state pinned_bytes holders",
    "holder": "pid comm fd mapped access shared prot mapped_bytes",
    "mqueue": "name path qsize_bytes messages max_messages message_size fill_percent notify signo notify_pid uid gid "
              "owner mode deleted holders",
    "pipe": "inode dev kind path buffered capacity flags readers writers",
    "end": "pid comm fd",
    "signal": "pid comm pending blocked ignored caught queued queue_limit threads",
    "thread": "tid comm pending blocked",
    "sysv": "available shm msg sem",
    "sysv_shm": "key id size nattch cpid lpid uid gid owner mode atime dtime ctime rss removed holders",
    "sysv_msg": "key id qbytes qnum lspid lrpid uid gid owner mode stime rtime ctime",
    "sysv_sem": "key id nsems uid gid owner mode otime ctime",
    "process": "pid ppid comm cmdline uid user start_ticks start_time hidden",
}


def test_json_keeps_the_documented_field_names(spawn: Spawn, cleanup: Cleanup) -> None:
    shm_name = cleanup.shm(new_name())
    posix_ipc.SharedMemory(shm_name, posix_ipc.O_CREX, size=4096).close_fd()
    queue_name = cleanup.mqueue(new_name())
    posix_ipc.MessageQueue(queue_name, posix_ipc.O_CREX).close()
    memory = sysv_ipc.SharedMemory(None, sysv_ipc.IPC_CREX, size=4096)
    cleanup.sysv_shm(memory.id)
    msg = sysv_ipc.MessageQueue(None, sysv_ipc.IPC_CREX)
    cleanup.sysv_msg(msg.id)
    sem = sysv_ipc.Semaphore(None, sysv_ipc.IPC_CREX)
    cleanup.sysv_sem(sem.id)
    child = spawn(f"""
        import posix_ipc, sysv_ipc, threading
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGUSR1}})
        threading.Thread(target=hold, daemon=True).start()
        shm_fd = os.open("/dev/shm" + {shm_name!r}, os.O_RDWR)
        queue = posix_ipc.MessageQueue({queue_name!r})
        attached = sysv_ipc.attach({memory.id})
        say("ready")
        hold()
    """)
    child.expect()

    data = snapshot_json("--pid", str(child.pid), "--all-signals")

    def check(record: dict[str, Any], kind: str) -> None:
        missing = set(CONTRACT[kind].split()) - record.keys()
        assert not missing, f"{kind} record lacks {sorted(missing)}"

    check(data, "top")
    (segment,) = [s for s in data["shm"] if s["name"] == shm_name]
    check(segment, "shm")
    check(segment["holders"][0], "holder")
    (queue,) = [q for q in data["mqueues"] if q["name"] == queue_name]
    check(queue, "mqueue")
    check(queue["holders"][0], "holder")
    assert data["pipes"], "the child holds its stdin and stdout pipes"
    check(data["pipes"][0], "pipe")
    check((data["pipes"][0]["readers"] + data["pipes"][0]["writers"])[0], "end")
    (signals,) = data["signals"]
    check(signals, "signal")
    assert len(signals["threads"]) == 2
    check(signals["threads"][1], "thread")
    check(data["sysv"], "sysv")
    (sysv_segment,) = [s for s in data["sysv"]["shm"] if s["id"] == memory.id]
    check(sysv_segment, "sysv_shm")
    check(sysv_segment["holders"][0], "holder")
    all_sysv = snapshot_json("--kind", "sysv")["sysv"]
    check(next(m for m in all_sysv["msg"] if m["id"] == msg.id), "sysv_msg")
    check(next(s for s in all_sysv["sem"] if s["id"] == sem.id), "sysv_sem")
    (process,) = data["processes"]
    check(process, "process")
    assert data["schema"] == 1
    memory.detach()


THREAD_BLOCKS_USR1 = """
    import threading
    ready = threading.Event()
    def worker():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        ready.set()
        threading.Event().wait()
    threading.Thread(target=worker, daemon=True).start()
    ready.wait()
    say("ready")
    hold()
"""


def test_a_signal_only_a_thread_blocks_is_named_in_the_text_row(spawn: Spawn) -> None:
    # A newcomer saw pid 1 listed under "pending or blocked" with "-" in both columns: a thread blocked them.
    child = spawn(THREAD_BLOCKS_USR1, comm="ipcm-threadblk")
    child.expect()
    result = ipcmon("snapshot", "--kind", "signal", "--pid", str(child.pid))
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    [row] = [line for line in result.stdout.decode().splitlines() if line.startswith(f"{child.pid} ")]
    assert re.search(r"ipcm-threadblk\s+-\s+- \(thread: SIGUSR1\)", row), row


def test_the_dashboard_s_blocked_column_says_what_only_a_thread_blocks(spawn: Spawn) -> None:
    """The Signals view's BLOCKED cell, as the text row, names a signal only another thread blocks: a reviewer saw
    ``-`` there while a thread blocked SIGUSR2 with a SIGUSR2 pending for it."""
    child = spawn(THREAD_BLOCKS_USR1, comm="ipcm-thrblock")
    child.expect()
    (row,) = [row for row in signal_rows(Context(scan_kinds("signal")), RowCache()) if row.pids == (child.pid,)]
    blocked = row.cells[3]
    assert blocked.plain.endswith("(thread: SIGUSR1)"), blocked.plain
    assert str(blocked.style)  # warned, as a blocked signal is
