"""Which processes descend from one process (issue 16): the kernel's fork and exit records, even of children gone.

The pytest plugin blames a test only for what its own process or a descendant created, and the creator of a leak
has often exited by the time its creation is read (a forked child that made a segment and returned). Reading
the parent pid from /proc at that point is too late, so the lineage is recorded as it happens: a private tracefs
instance (:class:`ipcmon.live.tracefs.TraceInstance`) with ``sched:sched_process_fork`` and ``sched_process_exit``,
restricted by the kernel to the root's threads and everything they fork (``set_event_pid`` with the
``event-fork`` option, Documentation/trace/ftrace.rst), so other processes' forks cost nothing and a child that
double-forks and is reparented to init stays a descendant. A fork's record is written by the parent before the
child runs, so every descendant that could have created something is in the trace when it is read.

Pids are reused: an exited descendant's pid is kept only until :meth:`Lineage.forget_exited` (the plugin calls it
before each test), so a pid could be misread only if it were reused within one test. Without tracefs (not root, not
mounted) or inside a child pid namespace (the trace's pids are the host's), :meth:`Lineage.descends` falls back on
the parent chain in /proc, which knows only processes still alive.
"""

from __future__ import annotations

import os

from ipcmon.collect import procfs
from ipcmon.live import tracefs

FORK = "sched/sched_process_fork"
EXIT = "sched/sched_process_exit"


def _threads(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return [str(pid)]


def _own_pid_namespace_is_the_hosts() -> bool:
    """Whether this process's pids are the ones the kernel's trace records (NSpid has one entry)."""
    try:
        status = procfs.parse_status(procfs.read_bytes("/proc/self/status", single=True))
    except (procfs.Gone, procfs.Denied, OSError):
        return False
    return len(status.get(b"NSpid", b"0").split()) == 1


def parent_of(pid: int) -> int | None:
    """pid's parent from /proc/PID/stat (field 4); None when pid is gone or unreadable."""
    try:
        data = procfs.read_bytes(f"/proc/{pid}/stat", single=True)
        return int(data[data.rfind(b")") + 2 :].split()[1])
    except (procfs.Gone, procfs.Denied, OSError, ValueError, IndexError):
        return None


class Lineage:
    """The descendants of root (a pid, default this process), kept from the kernel's fork records (module docstring).

    ``exact`` says whether the trace runs; ``reason`` says why not, in words. :meth:`close` removes the instance.
    """

    def __init__(self, root: int | None = None, *, fork_records: bool = True) -> None:
        """root: the process whose descendants are wanted (default this one); fork_records: open them (False:
        only the parent chain in /proc)."""
        self.root = os.getpid() if root is None else root
        self._members: set[int] = {self.root}
        self._exited: set[int] = set()
        self._trace: tracefs.TraceInstance | None = None
        self._lost = 0
        self.reason = ""
        if not fork_records:
            self.reason = "no fork records asked for"
            return
        if not _own_pid_namespace_is_the_hosts():
            self.reason = "in a child pid namespace the kernel's fork records name other pids"
            return
        try:
            trace = tracefs.TraceInstance([])
        except PermissionError:
            self.reason = "not root: children are known only while they live"
            return
        except OSError as error:
            self.reason = f"{error.strerror or error}: children are known only while they live"
            return
        try:
            self._write(trace, "set_event_pid", " ".join(_threads(self.root)))
            self._write(trace, "options/event-fork", "1")
            for event in (FORK, EXIT):
                self._write(trace, f"events/{event}/enable", "1")
        except OSError as error:
            trace.close()
            self.reason = f"the fork records cannot be enabled ({error.strerror or error})"
            return
        self._trace = trace

    @staticmethod
    def _write(trace: tracefs.TraceInstance, relative: str, value: str) -> None:
        with open(os.path.join(trace.path, relative), "w") as file:
            file.write(value)

    @property
    def exact(self) -> bool:
        """The fork records run and none was lost: every descendant, alive or not, is known. (The loss count is
        read per CPU: only when a pid is not a known descendant.)"""
        if self._trace is None:
            return False
        self._lost = max(self._lost, self._trace.lost())
        return self._lost == 0

    def refresh(self) -> None:
        """Read the fork and exit records written since the last call (never blocks)."""
        trace = self._trace
        if trace is None:
            return
        for record in trace.read(0):
            if record.event == "sched_process_fork":
                child = record.fields.get("child_pid", "")
                if child.isdigit() and (record.pid in self._members or record.tid in self._members):
                    self._members.add(int(child))
                    self._exited.discard(int(child))  # a pid reused by a new descendant
            elif record.event == "sched_process_exit":
                if record.fields.get("group_dead") == "true":
                    self._exited.add(record.pid)  # the last thread: the process is gone
                if record.tid != record.pid:
                    self._exited.add(record.tid)  # a thread (its tid may be reused as a pid)

    def forget_exited(self) -> None:
        """Drop the descendants that exited (their pids may be reused from now on); the root is kept."""
        self.refresh()
        self._members -= self._exited - {self.root}
        self._exited.clear()

    def descends(self, pid: int) -> bool | None:
        """Whether pid is root or descends from it: True or False with the fork records; without them (or when some
        were lost), True when its parent chain in /proc reaches root, else None (it has exited, or it may be a child
        reparented to init: it cannot be told)."""
        self.refresh()
        if pid in self._members:
            return True
        if self.exact:
            return False
        seen: set[int] = set()
        current: int | None = pid
        while current is not None and current > 1 and current not in seen:
            if current == self.root:
                return True
            seen.add(current)
            current = parent_of(current)
        return None

    def close(self) -> None:
        if self._trace is not None:
            self._trace.close()
            self._trace = None
