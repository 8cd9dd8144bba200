"""Hostile names: segment, queue and FIFO names and a process's comm and cmdline full of markup, escape
sequences, control characters, bidi overrides and invalid UTF-8 never crash a printer, never reach the
terminal as control sequences or extra rows, and come back byte for byte from the JSON (os.fsencode).

The property test creates real objects (os.open on byte paths in /dev/shm and /dev/mqueue, mkfifo) and a
real process (exec'd through a symlink named like the comm, with the hostile argv) and runs every printer
in-process; the fixed list goes through the command line itself. Objects are found by inode, so their
names can be hostile from the first byte.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipcmon import export
from ipcmon.cli.lifecycle import LEAK_HEADERS, _leak_rows, format_event, leak_to_dict
from ipcmon.collect import ScanConfig
from ipcmon.leaks import find_leaks
from ipcmon.live.monitor import Monitor
from ipcmon.model import Event, Snapshot
from ipcmon.report import format_table, render
from ipcmon.safe import printable
from tests.helpers import proc_view, wait_until
from tests.reliability.cli import assert_inert, run_ipcmon, watch_briefly

SHM_DIR = b"/dev/shm"
MQUEUE_DIR = b"/dev/mqueue"
NAME_MAX = 255

FIXED_NAMES: list[bytes] = [
    b"[bold red]markup[/]",
    b"[@click=app.quit]quit",
    b"[/]",
    b"\x1b[2J\x1b[Hcleared",
    b"\x1b]2;pwned\x07title",
    b"bell\x07\x07",
    b"line1\nline2\r\nforged row",
    b"tab\there",
    "\u202eevil-rtl\u200f".encode(),
    b"\xff\xfe\x80invalid-utf8",
    "c1-csi-\u009b31m".encode(),
    b"raw-c1-\x9b31m",
    b"\x1b" * NAME_MAX,
    (b"\x1b[2J[@click=app.quit]\n" * 20)[:NAME_MAX],
]
FIXED_NAMES = [name.replace(b"/", b"_") for name in FIXED_NAMES]  # a name cannot hold a slash
HOSTILE_COMM = b"\x1b]2;x\x07[@c]\n\xff"
HOSTILE_ARGV = [
    b"\x1b]0;argv0\x07", b"-c", b"read line", b"[@click=app.quit]\x1b[31m\nnext", b"\xff\xfe\t" + "\u202e".encode(),
]

FRAGMENTS = [
    b"[", b"]", b"[/]", b"[@click=app.quit]", b"[bold]", b"\x1b", b"\x1b[2J", b"\x1b]2;pwned\x07", b"\x07",
    b"\n", b"\r", b"\t", "\u202e".encode(), "\u200f".encode(), b"\xff", b"\x80", b"\x9b", "\u009b".encode(),
    b"\x7f", b" ", b"%s", b"{0}", b"\\", b"'", b'"', b"-", "名前".encode(),
]


def _clean(raw: bytes, limit: int = NAME_MAX) -> bytes:
    """A valid file name: no '/' or NUL, not '.' or '..', at most limit bytes."""
    name = raw.replace(b"/", b"_").replace(b"\0", b"_")[:limit]
    return name if name not in (b"", b".", b"..") else b"x" + name


hostile_bytes = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.binary(min_size=1, max_size=6)), min_size=1, max_size=12
).map(b"".join)
names = st.one_of(hostile_bytes, st.binary(min_size=NAME_MAX, max_size=NAME_MAX + 40)).map(_clean)


class _MqAttr(ctypes.Structure):
    _fields_ = [("mq_flags", ctypes.c_long), ("mq_maxmsg", ctypes.c_long), ("mq_msgsize", ctypes.c_long),
                ("mq_curmsgs", ctypes.c_long), ("_reserved", ctypes.c_long * 4)]


def create_queue(path: bytes) -> int:
    """mq_open(O_CREAT|O_EXCL) a tiny queue by its raw name (path under /dev/mqueue); returns its descriptor.

    Tiny, because root's queues share one RLIMIT_MSGQUEUE budget (800 KiB) with everyone's tests: a
    default-sized queue (10 × 8 KiB) would use a tenth of it.
    """
    attr = _MqAttr(mq_maxmsg=1, mq_msgsize=16)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mq_open.restype = ctypes.c_int
    name = b"/" + os.path.basename(path)
    fd = libc.mq_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, ctypes.c_uint(0o600), ctypes.byref(attr))
    if fd < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), path)
    return int(fd)


@dataclass
class Made:
    """Real objects with hostile names, held by a real process with a hostile comm and cmdline."""

    shm: bytes
    mqueue: bytes
    fifo: bytes
    comm: bytes
    argv: list[bytes]
    pid: int
    inodes: dict[str, int]
    alive: bool = True

    def stop(self) -> None:
        """Kill and reap the holder (once)."""
        if self.alive:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.alive = False


@contextmanager
def hostile_world(directory: bytes, shm: bytes, mqueue: bytes, fifo: bytes, comm: bytes,
                  argv: Sequence[bytes]) -> Iterator[Made]:
    """Create the objects, spawn the holder through a symlink named comm, and remove all of it afterwards."""
    os.makedirs(directory + b"/fifo", exist_ok=True)
    os.makedirs(directory + b"/exe", exist_ok=True)
    shm_path, mq_path = SHM_DIR + b"/" + shm, MQUEUE_DIR + b"/" + mqueue
    fifo_path, link = directory + b"/fifo/" + fifo, directory + b"/exe/" + comm
    made: list[bytes] = []
    fds: list[int] = []
    holder = None
    try:
        fds.append(os.open(shm_path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
        made.append(shm_path)
        os.ftruncate(fds[-1], 4096)
        fds.append(create_queue(mq_path))
        made.append(mq_path)
        os.mkfifo(fifo_path, 0o600)
        made.append(fifo_path)
        fds.append(os.open(fifo_path, os.O_RDWR | os.O_NONBLOCK))
        os.symlink(b"/bin/sh", link)
        made.append(link)
        stdin_read, stdin_write = os.pipe()
        fds += [stdin_read, stdin_write]
        inodes = {kind: os.fstat(fd).st_ino for kind, fd in zip(("shm", "mqueue", "fifo"), fds, strict=False)}
        actions = [(os.POSIX_SPAWN_DUP2, stdin_read, 0)]
        actions += [(os.POSIX_SPAWN_DUP2, fd, 3 + index) for index, fd in enumerate(fds[:3])]
        pid = os.posix_spawn(link, list(argv), {}, file_actions=actions)
        holder = Made(shm, mqueue, fifo_path, comm, list(argv), pid, inodes)
        for fd in fds[:3]:  # the holder is the only process holding them
            os.close(fd)
        del fds[:3]
        # The shell is running once its comm is the link's name and its arguments are in place (exec sets the
        # comm before it lays out argv, so for a moment cmdline reads empty).
        wait_until(lambda: Path(f"/proc/{pid}/comm").read_bytes() == comm[:15] + b"\n", "the holder's comm")
        wait_until(lambda: Path(f"/proc/{pid}/cmdline").read_bytes(), "the holder's cmdline")
        yield holder
    finally:
        if holder is not None:
            holder.stop()
        for fd in fds:
            os.close(fd)
        for path in made:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def check_snapshot_records(snapshot: Snapshot, made: Made) -> None:
    (segment,) = [s for s in snapshot.shm if s.inode == made.inodes["shm"]]
    assert os.fsencode(segment.name) == b"/" + made.shm
    (queue,) = [q for q in snapshot.mqueues if q.inode == made.inodes["mqueue"]]
    assert os.fsencode(queue.name) == b"/" + made.mqueue
    (fifo,) = [p for p in snapshot.pipes if p.inode == made.inodes["fifo"]]
    assert fifo.path is not None and os.fsencode(fifo.path) == made.fifo
    (process,) = [p for p in snapshot.processes if p.pid == made.pid]
    assert os.fsencode(process.comm) == made.comm[:15]
    assert [os.fsencode(arg) for arg in process.cmdline] == made.argv
    assert {holder.pid for holder in segment.holders} == {made.pid}


def check_json(text: str, made: Made) -> None:
    assert text.isascii()
    data = json.loads(text)
    (segment,) = [s for s in data["shm"] if s["inode"] == made.inodes["shm"]]
    assert os.fsencode(segment["name"]) == b"/" + made.shm
    assert os.fsencode(segment["holders"][0]["comm"]) == made.comm[:15]
    (queue,) = [q for q in data["mqueues"] if q["inode"] == made.inodes["mqueue"]]
    assert os.fsencode(queue["name"]) == b"/" + made.mqueue
    (fifo,) = [p for p in data["pipes"] if p["inode"] == made.inodes["fifo"]]
    assert os.fsencode(fifo["path"]) == made.fifo
    (process,) = [p for p in data["processes"] if p["pid"] == made.pid]
    assert [os.fsencode(arg) for arg in process["cmdline"]] == made.argv


ROW_STARTS = {
    "== POSIX shared memory": ("shm", ("/",)),
    "== POSIX message queues": ("mqueues", ("/",)),
    "== Pipes and FIFOs": ("pipes", ("pipe ", "fifo ")),
    "== Signals": ("signals", tuple("0123456789")),
}


def check_rows(text: str, snapshot: Snapshot | None = None) -> None:
    """Every table row starts as its table's rows do, and (given the snapshot) each table has exactly one
    row per record: a name cut in two by a newline would forge a row."""
    rows: dict[str, int] = {}
    section = None
    header = False
    for line in text.splitlines():
        if line.startswith("=="):
            section = next((key for key in ROW_STARTS if line.startswith(key)), None)
            header = True
            continue
        if section is None or not line:
            continue
        if header:
            header = False
            continue
        assert line.startswith(ROW_STARTS[section][1]), f"a forged row in {section}: {line!r}"
        rows[section] = rows.get(section, 0) + 1
    if snapshot is not None:
        for section, (field, _) in ROW_STARTS.items():
            assert rows.get(section, 0) == len(getattr(snapshot, field)), f"rows in {section}"


def _format_events(events: Sequence[Event]) -> None:
    """Each event as `watch` prints it, in text and as a JSON line."""
    for event in events:
        line = format_event(event)
        assert "\n" not in line
        assert_inert(line.encode("utf-8"))
        assert json.dumps(dataclasses.asdict(event)).isascii()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shm=names, mqueue=names, fifo=names, comm=hostile_bytes.map(lambda raw: _clean(raw, 15)),
       argv0=hostile_bytes, arg=hostile_bytes)
def test_hostile_names_reach_no_printer_as_control_sequences(
    shm: bytes, mqueue: bytes, fifo: bytes, comm: bytes, argv0: bytes, arg: bytes
) -> None:
    """snapshot (text, JSON), watch (text and JSON events) and leaks (table, JSON), in-process."""
    argv = [argv0.replace(b"\0", b"_"), b"-c", b"read line", arg.replace(b"\0", b"_")]
    with tempfile.TemporaryDirectory(prefix="ipcmon-test-hostile-") as base:
        proc = proc_view(Path(base) / "proc", [])
        monitor = Monitor(ScanConfig(proc=proc, mqueue_dir=os.fsdecode(MQUEUE_DIR)))
        monitor.poll()  # the baseline, before anything exists
        with hostile_world(os.fsencode(base), shm, mqueue, fifo, comm, argv) as made:
            os.symlink(f"/proc/{made.pid}", Path(proc) / str(made.pid))
            snapshot, events = monitor.poll()
            check_snapshot_records(snapshot, made)
            assert {"created", "attached"} <= {event.event for event in events}
            text = render(snapshot, all_signals=True)
            assert_inert(text.encode("utf-8"))
            check_rows(text, snapshot)
            for needle in (made.shm, made.mqueue):
                shown = printable(os.fsdecode(b"/" + needle))[:40]
                assert any(line.startswith(shown) for line in text.splitlines()), f"{shown!r} starts no row"
            check_json(export.dumps(snapshot), made)
            made.stop()
            orphaned, more = monitor.poll()
            _format_events([*events, *more])
            assert "orphaned" in {event.event for event in more}
            leaks = [leak for leak in find_leaks(orphaned, last_holders=monitor.last_holders)
                     if leak.key.endswith(f":{made.inodes['shm']}") or leak.key.endswith(f":{made.inodes['mqueue']}")]
            assert len(leaks) == 2 and all("last held by" in leak.hint for leak in leaks)
            table = "\n".join(format_table(LEAK_HEADERS, _leak_rows(leaks, {})))
            assert_inert(table.encode("utf-8"))
            assert json.dumps([leak_to_dict(leak) for leak in leaks]).isascii()


# --- the fixed list, through the command line --------------------------------------------------------


@contextmanager
def fixed_world(tmp_path: Path) -> Iterator[tuple[list[Made], list[bytes]]]:
    """The first fixed names as a segment, a queue and a FIFO, each set held by a process with a hostile comm
    and argv; every fixed name as an orphaned segment and queue, for leaks and clean (20 queues at most)."""
    directory = os.fsencode(tmp_path)
    orphans: list[bytes] = []
    try:
        with ExitStack() as stack:
            worlds = [
                stack.enter_context(hostile_world(directory, name, _clean(b"q" + name), _clean(b"f" + name),
                                                  _clean(HOSTILE_COMM + str(index).encode(), 15), HOSTILE_ARGV))
                for index, name in enumerate(FIXED_NAMES[:6])
            ]
            for name in FIXED_NAMES:
                shm_path = SHM_DIR + b"/" + _clean(b"o" + name)
                os.close(os.open(shm_path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
                orphans.append(shm_path)
                mq_path = MQUEUE_DIR + b"/" + _clean(b"o" + name)
                os.close(create_queue(mq_path))
                orphans.append(mq_path)
            yield worlds, orphans
    finally:
        for path in orphans:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def test_fixed_hostile_names_through_snapshot_json_leaks_and_clean(tmp_path: Path) -> None:
    with fixed_world(tmp_path) as (worlds, orphans):
        text = run_ipcmon("snapshot", "--all-signals")
        assert text.returncode == 0
        assert_inert(text.stdout)
        check_rows(text.stdout.decode())
        data = run_ipcmon("snapshot", "--json")
        assert data.returncode == 0
        for made in worlds:
            check_json(data.stdout.decode(), made)
        leaks = run_ipcmon("leaks")
        assert leaks.returncode == 1
        assert_inert(leaks.stdout)
        shown = json.loads(run_ipcmon("leaks", "--json").stdout)
        names = {os.fsencode(leak["name"]) for leak in shown}
        assert {b"/" + os.path.basename(path) for path in orphans} <= names
        dry = run_ipcmon("clean")
        assert dry.returncode == 0
        assert_inert(dry.stdout)
        assert all(os.path.exists(path) for path in orphans)


def test_fixed_hostile_names_through_watch(tmp_path: Path) -> None:
    created: list[bytes] = []

    def create() -> None:
        for name in FIXED_NAMES:
            shm_path = SHM_DIR + b"/" + _clean(b"w" + name)
            os.close(os.open(shm_path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
            created.append(shm_path)
            mq_path = MQUEUE_DIR + b"/" + _clean(b"w" + name)
            os.close(create_queue(mq_path))
            created.append(mq_path)
        time.sleep(3)  # long enough for a poll too, when inotify is skipping a burst on a busy machine
        for path in created:
            os.unlink(path)

    try:
        for extra in ([], ["--json"]):
            created.clear()
            code, stdout, stderr = watch_briefly(
                [os.environ.get("PYTHON", "python3"), "-m", "ipcmon", "watch", "--kind", "shm,mqueue",
                 "--interval", "0.5", *extra],
                {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                str(tmp_path), create, after=1.5,
            )
            assert code == 0 and b"Traceback" not in stderr, stderr.decode(errors="replace")
            assert_inert(stdout)
            lines = stdout.decode().splitlines()
            wanted = {b"/" + os.path.basename(path) for path in created}
            if extra:
                events = [json.loads(line) for line in lines]
                seen = {os.fsencode(event["object"]) for event in events if event["event"] == "created"}
                assert wanted <= seen, f"missing: {sorted(wanted - seen)[:3]}"
            else:
                assert all(line[:2].isdigit() and line[2] == ":" for line in lines), "a line that is not an event"
                created_lines = [line for line in lines if " created " in line]
                for name in wanted:
                    shown = printable(os.fsdecode(name))
                    assert any(shown in line for line in created_lines), f"no created event for {shown!r}"
    finally:
        for path in created:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
