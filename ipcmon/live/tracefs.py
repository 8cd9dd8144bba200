"""A private tracefs instance for attribution (issue 16): who sent which signal to whom, who opened or removed a queue.

The kernel's trace events are read through an instance of ipcmon's own under ``instances/`` of the tracing directory
(Documentation/trace/ftrace.rst, "Instances"), so the machine's main trace buffer and anyone else's instances are
left alone. The instance is named ``ipcmon-<pid>-<start ticks>`` (``-1``, ``-2``… after it for more instances of
one process): it is removed on close, and :func:`remove_stale`
removes one whose process is gone (an ipcmon killed with SIGKILL) at the next start.

Events used (include/trace/events/signal.h, syscalls): ``signal:signal_generate`` (the sender is the task of the
record; the target, signal and result are its fields), ``syscalls:sys_enter_mq_open`` and
``syscalls:sys_enter_mq_unlink`` (the caller is the task; the name is a pointer into its memory), and their
``sys_exit_*`` returns (whether the call worked), and ``task:task_newtask`` and ``task:task_rename``
(include/trace/events/task.h): each task's command name as it was when it acted. The comm printed at the head of a
record is looked up in saved_cmdlines when the line is read, so a process that renamed itself (exec, prctl
PR_SET_NAME) and acted before its next context switch is printed under its old name.

trace_pipe is text, one record a line, and the kernel prints a comm as it is (``%s``, its bytes unescaped): a name
holding a newline cuts its record into several lines, the comm at the head of the line (``"%16s-%d"``, from
saved_cmdlines) as well as one in the event's fields. :class:`TraceText` joins the pieces again, leaning on what
the kernel prints around a name: at most 15 bytes (TASK_COMM_LEN) and fixed text after it, for example
signal_generate's ``sig=%d errno=%d code=%d comm=%s pid=%d grp=%d res=%d`` (include/trace/events/signal.h),
where pid, grp and res follow the name. (The binary trace_pipe_raw would need no joining, but a reader of the ring
buffer's pages, per CPU, and of each event's binary layout: far more code for the same fields.)

tracefs may not be mounted: mounting it is a system change left to the user (:data:`MOUNT_HINT`). Creating an
instance needs root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from ipcmon.live.ready import readable

TRACING_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
"""Where tracefs is mounted on modern kernels, and where it appears inside debugfs on older ones."""
MOUNT_HINT = "mount -t tracefs nodev /sys/kernel/tracing"
PREFIX = "ipcmon-"

READ_CHUNKS = 16
"""64 KiB reads of trace_pipe per TraceInstance.read at most (what is left is there for the next call)."""

SIGNAL_GENERATE = "signal/signal_generate"
MQ_OPEN = "syscalls/sys_enter_mq_open"
MQ_UNLINK = "syscalls/sys_enter_mq_unlink"
MQ_OPEN_EXIT = "syscalls/sys_exit_mq_open"
MQ_UNLINK_EXIT = "syscalls/sys_exit_mq_unlink"
"""A system call's return: the record of the same task that follows its entry says whether it worked (``ret``)."""
TASK_NEWTASK = "task/task_newtask"
TASK_RENAME = "task/task_rename"
"""A new task (``pid``, the parent's ``comm`` it starts with) and a task's new name (exec, prctl PR_SET_NAME):
with both, the name a task had when it acted is known exactly, whatever saved_cmdlines says when the line is read."""

RESULTS = {0: "delivered", 1: "ignored", 2: "already pending", 3: "queue full", 4: "delivered without info"}
"""signal_generate's ``res`` (include/trace/events/signal.h, enum trace_signal_result). ``delivered`` means queued to
the target: whether the target blocks it is read from the target's mask, not from the event."""

COMM_MAX = 15
"""The longest command name, in bytes (TASK_COMM_LEN less its NUL): the bound that lets a name cut by its newlines
be joined again without swallowing a line around it."""
_COMM = rf"(?P<comm>.{{0,{COMM_MAX}}})"
# Every pattern is re.DOTALL: a comm may hold newlines (and any byte but NUL), and `.` must take them.
_LINE = re.compile(
    rf"^ *{_COMM}-(?P<tid>\d+)\s+(?:\(\s*(?P<tgid>[-\d]+)\)\s+)?\[(?P<cpu>\d+)\]\s+\S+\s+"
    r"(?P<time>\d+\.\d+):\s+(?P<event>\w+)(?::\s?(?P<body>.*)|\((?P<arguments>.*)\)| -> (?P<ret>0x[0-9a-f]+))$",
    re.DOTALL,
)
_LOST = re.compile(r"^CPU:\d+ \[LOST \d+ EVENTS\]$")
"""trace_pipe's notice of an overrun: counted by :meth:`TraceInstance.lost` from the per-CPU stats already."""
_SIGNAL = re.compile(
    r"^sig=(?P<sig>-?\d+) errno=(?P<errno>-?\d+) code=(?P<code>-?\d+) comm=(?P<comm>.*) pid=(?P<pid>-?\d+) "
    r"grp=(?P<grp>\d+) res=(?P<res>\d+)$", re.DOTALL)
_NEWTASK = re.compile(
    r"^pid=(?P<pid>-?\d+) comm=(?P<comm>.*) clone_flags=(?P<clone_flags>[0-9a-f]+) oom_score_adj=(?P<adj>-?\d+)$",
    re.DOTALL)
_RENAME = re.compile(  # Linux 6.14 dropped pid= (it is always the task of the record)
    r"^(?:pid=(?P<pid>-?\d+) )?oldcomm=(?P<oldcomm>.*?) newcomm=(?P<newcomm>.*) oom_score_adj=(?P<adj>-?\d+)$",
    re.DOTALL)
_FORK = re.compile(  # " pid=N child_comm=" is longer than a comm: the first one is the separator
    r"^comm=(?P<comm>.*?) pid=(?P<pid>-?\d+) child_comm=(?P<child_comm>.*) child_pid=(?P<child_pid>-?\d+)$",
    re.DOTALL)
_EXIT = re.compile(  # older kernels print no group_dead
    r"^comm=(?P<comm>.*) pid=(?P<pid>-?\d+) prio=(?P<prio>-?\d+)(?: group_dead=(?P<group_dead>\w+))?$", re.DOTALL)
_SHAPES = {"signal_generate": _SIGNAL, "task_newtask": _NEWTASK, "task_rename": _RENAME,
           "sched_process_fork": _FORK, "sched_process_exit": _EXIT}
"""Events whose print format holds a comm, which may hold spaces, ``=`` and newlines: matched whole, by their
format (include/trace/events/signal.h, task.h, sched.h), so that a record cut by a newline is no record until it is
joined again. Every event ipcmon enables that prints a string is here; the rest print numbers only."""
_ARGUMENT = re.compile(r"(\w+): (0x[0-9a-f]+|-?\d+)")
_ASSIGNMENT = re.compile(r"(\w+)=(\S*)")
"""``key=value`` in an event's print format (``sched_process_fork: comm=sh pid=1 child_comm=sh child_pid=2``): a comm
holding spaces or ``=`` may add stray keys, but the fields after it, printed later, win (the last of a key is kept)."""


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One line of an instance's trace_pipe: who (the task that was running), when, which event, and its fields."""

    comm: str
    """The acting task's command name, as the trace recorded it. Untrusted: show it through safe.printable."""
    tid: int
    tgid: int | None
    """The acting task's process id (with ``record-tgid``); None when the trace did not say."""
    cpu: int
    time: float
    """Seconds on the instance's trace clock (``local`` by default: seconds since boot, per CPU; ``mono``:
    CLOCK_MONOTONIC, what time.monotonic() reads)."""
    event: str
    """The event as the trace prints it: ``signal_generate``; a system call's entry and its return both as
    ``sys_mq_open`` (a return has the one field ``ret``: :attr:`returned`)."""
    fields: dict[str, str]
    """The event's fields by name, as text: ``sig``, ``comm``, ``pid``, ``res`` for signal_generate; ``u_name``,
    ``oflag``… for a system call's entry, ``ret`` for its return; ``child_pid`` for sched_process_fork and
    ``group_dead`` for sched_process_exit (numbers in the kernel's own base: pointers and
    return values in hex)."""

    @property
    def pid(self) -> int:
        """The acting process: its tgid when recorded, else the thread id."""
        return self.tgid if self.tgid is not None and self.tgid > 0 else self.tid

    @property
    def returned(self) -> int | None:
        """For a system call's return record, its return value as a signed number (``-2``: -ENOENT); else None."""
        ret = self.fields.get("ret")
        if ret is None:
            return None
        value = int(ret, 16)
        return value - (1 << 64) if value >= 1 << 63 else value


def parse_line(line: str, *, cut: bool = False) -> TraceRecord | None:
    """One record's text (its newlines only those of names in it), or None for text of no known shape (a lost-events
    notice, a piece of a record cut by a newline in a name).

    cut: the text is known to be all that is left of a record cut short: an event of a known shape that does not
    match it gives the fields printed before its first name (a task event's ``pid``; signal_generate's ``sig``,
    ``errno`` and ``code``, no target) instead of None."""
    match = _LINE.match(line.rstrip("\n"))
    if match is None:
        return None
    body = match["body"] if match["body"] is not None else match["arguments"]
    fields: dict[str, str]
    if match["ret"] is not None:
        fields = {"ret": match["ret"]}
    elif match["event"] in _SHAPES:
        shaped = _SHAPES[match["event"]].match(body)
        if shaped is not None:
            fields = {key: value for key, value in shaped.groupdict().items() if value is not None}
        elif cut:
            fields = dict(_ASSIGNMENT.findall(body.split("comm=", 1)[0]))
        else:
            return None
    else:
        fields = dict(_ARGUMENT.findall(body)) or dict(_ASSIGNMENT.findall(body))
    tgid = match["tgid"]
    return TraceRecord(match["comm"], int(match["tid"]), int(tgid) if tgid and tgid.lstrip("-").isdigit() else None,
                       int(match["cpu"]), float(match["time"]), match["event"], fields)


PIECES_MAX = 1 + 3 * COMM_MAX
"""Lines one record can be cut into: 15 newlines in each of up to three names (the comm at the head of the line,
and task_rename's two or sched_process_fork's two)."""


class TraceText:
    """trace_pipe's bytes in, records out: a record cut into lines by newlines in its names is joined again.

    A line that is no record by itself is held, and each next line is tried after the held ones, the most of them
    first (``"           snd"`` + ``"x-17344 ( 17344) [001] …"`` is one record of a task named ``snd\\nx``;
    ``"… signal_generate: sig=10 … comm=rev"`` + ``"nl pid=17411 grp=1 res=0"`` one whose target is ``rev\\nnl``).
    A name is 15 bytes at most, and what the kernel prints after it is fixed text longer than that, so a join
    cannot swallow a line around the record. Lines given up on (more than :data:`PIECES_MAX` held, or held lines
    before a line that joined without them) are counted in :attr:`unreadable`; each that begins like a record of a
    known event still gives the fields printed before its first name (``parse_line(cut=True)``)."""

    def __init__(self) -> None:
        self._partial = b""
        self._held: list[str] = []
        self.unreadable = 0
        """Lines of the trace that were not read as a whole record (trace_pipe's own lost-events notices aside)."""

    def feed(self, data: bytes) -> list[TraceRecord]:
        """The records completed by data (the bytes read from trace_pipe next), in the trace's order."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        records: list[TraceRecord] = []
        for line in lines:
            self._line(line.decode("utf-8", "surrogateescape"), records)
        return records

    def _line(self, line: str, records: list[TraceRecord]) -> None:
        held = self._held
        if not held:
            record = parse_line(line)
            if record is not None:
                records.append(record)
            elif _LOST.match(line) is None:
                held.append(line)
            return
        if _LOST.match(line) is not None:  # printed between records: what is held is no whole record
            self._give_up(len(held), records)
            return
        held.append(line)
        for start in range(len(held)):
            record = parse_line("\n".join(held[start:]))
            if record is not None:
                self._give_up(start, records)
                records.append(record)
                held.clear()
                return
        if len(held) > PIECES_MAX:
            self._give_up(1, records)

    def _give_up(self, count: int, records: list[TraceRecord]) -> None:
        for line in self._held[:count]:
            self.unreadable += 1
            record = parse_line(line, cut=True)
            if record is not None:
                records.append(record)
        del self._held[:count]


def tracing_dir() -> str | None:
    """The mounted tracing directory (with an ``instances`` directory), or None when tracefs is not mounted."""
    for directory in TRACING_DIRS:
        if os.path.isdir(os.path.join(directory, "instances")):
            return directory
    return None


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def instance_name(pid: int | None = None) -> str:
    """``ipcmon-<pid>-<start ticks>``: unique to one process for its lifetime, and tells a stale one apart."""
    pid = os.getpid() if pid is None else pid
    return f"{PREFIX}{pid}-{_start_ticks(pid) or 0}"


def stale_instances(tracing: str) -> list[str]:
    """Names of ipcmon instances whose process is gone (or whose pid now names another process)."""
    try:
        names = os.listdir(os.path.join(tracing, "instances"))
    except OSError:
        return []
    stale = []
    for name in names:
        parts = name.removeprefix(PREFIX).split("-")
        if not name.startswith(PREFIX) or len(parts) not in (2, 3) or not all(part.isdigit() for part in parts):
            continue
        if _start_ticks(int(parts[0])) != parts[1]:
            stale.append(name)
    return stale


def remove_stale(tracing: str) -> list[str]:
    """Remove the instances :func:`stale_instances` names; returns those removed (a refusal keeps one, silently)."""
    removed = []
    for name in stale_instances(tracing):
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(tracing, "instances", name))
            removed.append(name)
    return removed


class TraceInstance:
    """ipcmon's own tracefs instance with some events enabled, read without blocking; a context manager that
    removes it.

    Raises FileNotFoundError when tracefs is not mounted (say :data:`MOUNT_HINT`), PermissionError when not
    root, and OSError(ENOENT) naming the event when the kernel has no such event (no CONFIG_FTRACE_SYSCALLS).
    clock: the instance's trace_clock (``mono`` stamps records on CLOCK_MONOTONIC); None keeps the kernel's
    default (``local``)."""

    def __init__(self, events: Iterable[str], tracing: str | None = None, *, clock: str | None = None) -> None:
        tracing = tracing or tracing_dir()
        if tracing is None:
            raise FileNotFoundError(errno.ENOENT, f"tracefs is not mounted (as root: {MOUNT_HINT})")
        remove_stale(tracing)
        # A second instance of one process (a recorder and a watch in one dashboard) is ``…-TICKS-1``, and so on.
        base = os.path.join(tracing, "instances", instance_name())
        for serial in range(64):
            self.path = base if serial == 0 else f"{base}-{serial}"
            try:
                os.mkdir(self.path, 0o700)
                break
            except FileExistsError:
                if serial == 63:
                    raise
        self._pipe = -1
        self._stats: list[int] = []
        self._stats_lock = threading.Lock()
        self._text = TraceText()
        try:
            self._write("options/record-tgid", "1")
            if clock is not None:
                self._write("trace_clock", clock)
            for event in events:
                try:
                    self._write(f"events/{event}/enable", "1")
                except FileNotFoundError:
                    raise FileNotFoundError(errno.ENOENT, f"this kernel has no trace event {event}") from None
            self._pipe = os.open(os.path.join(self.path, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise
        self._stats = self._open_stats()

    def _write(self, relative: str, value: str) -> None:
        with open(os.path.join(self.path, relative), "w") as file:
            file.write(value)

    def fileno(self) -> int:
        return self._pipe

    def read(self, timeout: float | None = 0.0) -> list[TraceRecord]:
        """The records in the buffer now, waiting up to timeout seconds for the first (None: until one comes)."""
        ready = readable([self._pipe], timeout)
        if not ready:
            return []
        chunks = []
        # At most READ_CHUNKS reads a call: on a busy machine the buffer fills as fast as it is read, and a caller
        # that drains it to the end would never come back (to its other sources, or to a stop).
        for _ in range(READ_CHUNKS):
            try:
                chunk = os.read(self._pipe, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return self._text.feed(b"".join(chunks))

    def _open_stats(self) -> list[int]:
        """Every CPU's stats file of the instance, opened once (per_cpu lists each possible CPU): lost() reads them
        with pread(2) at every poll, where listing the directory and opening each file cost it twenty times more. A
        file that cannot be opened is left out (its overruns are not counted)."""
        try:
            cpus = os.listdir(os.path.join(self.path, "per_cpu"))
        except OSError:
            return []
        fds = []
        for cpu in cpus:
            with contextlib.suppress(OSError):
                fds.append(os.open(os.path.join(self.path, "per_cpu", cpu, "stats"), os.O_RDONLY | os.O_CLOEXEC))
        return fds

    def lost(self) -> int:
        """Events the kernel dropped because the buffer was full (the ``overrun`` of every CPU's stats), and lines
        of the trace that could not be read as a whole record (:attr:`TraceText.unreadable`). Thread-safe, and 0
        overruns once closed."""
        total = self._text.unreadable
        with self._stats_lock:  # close() may run on another thread: no read of a descriptor number it let go
            for fd in self._stats:
                with contextlib.suppress(OSError):
                    for line in os.pread(fd, 4096, 0).splitlines():
                        if line.startswith(b"overrun:"):
                            total += int(line.split()[1])
        return total

    def close(self) -> None:
        """Close the pipe and the stats files, and remove the instance (its events go with it)."""
        with self._stats_lock:
            for fd in self._stats:
                os.close(fd)
            self._stats = []
        if self._pipe >= 0:
            os.close(self._pipe)
            self._pipe = -1
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(self.path)

    def __enter__(self) -> TraceInstance:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
