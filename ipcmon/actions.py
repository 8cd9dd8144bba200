"""The only code that changes the system: removing orphans, signalling a process, and their guard rails
(the read-only switch, the action log).

ipcmon changes the system only when asked and confirmed (``clean --yes``, the dashboard's remove and
signal dialogs). Each attempt, done or refused, is appended as one line to the action log, so "who
removed my segment?" has an answer: ``$IPCMON_ACTION_LOG``, else ``$XDG_STATE_HOME/ipcmon/actions.log``,
else ``~/.local/state/ipcmon/actions.log``. A log that cannot be written does not stop the action (the
command still prints what it did); the caller is told why, to show it.

``IPCMON_READ_ONLY=1`` in the environment (or ``ipcmon --read-only``) refuses every such action.
"""

from __future__ import annotations

import errno
import os
import pwd
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace

from ipcmon import paths
from ipcmon.collect import ScanConfig, ipcns, procfs, scan, sysv
from ipcmon.leaks import Leak, Recheck, SysvIdentity, ipc_rmid_refusal, same_object, unlink_refusal
from ipcmon.model import Process
from ipcmon.safe import printable
from ipcmon.text import signal_name

ENV_READ_ONLY = "IPCMON_READ_ONLY"
ENV_ACTION_LOG = "IPCMON_ACTION_LOG"
READ_ONLY_REASON = f"read-only mode (ipcmon --read-only, or {ENV_READ_ONLY} set): nothing is changed"


def read_only(flag: bool = False) -> bool:
    """True when --read-only was given or IPCMON_READ_ONLY is set to anything but "", "0", "no", "false"."""
    return flag or os.environ.get(ENV_READ_ONLY, "").strip().lower() not in ("", "0", "no", "false")


def log_path() -> str:
    explicit = os.environ.get(ENV_ACTION_LOG)
    if explicit:
        return explicit
    return os.path.join(paths.state_dir(), "actions.log")


def _who() -> str:
    uid = os.geteuid()
    try:
        return f"uid={uid}({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid={uid}"


def record(action: str, target: str, outcome: str) -> str | None:
    """Append one line: time, who, action, target, outcome. Returns None, or why the log was not written.

    The target (a name from the system) and the outcome are made printable, so one entry is one line.
    """
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    line = f"{stamp} {_who()} pid={os.getpid()} {action} {printable(target)}: {printable(outcome)}\n"
    path = log_path()
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line.encode("utf-8", "backslashreplace"))
        finally:
            os.close(fd)
    except OSError as error:
        return f"the action log {printable(path)} could not be written: {error.strerror}"
    return None


@dataclass(frozen=True, slots=True)
class Removal:
    leak: Leak
    removed: bool
    reason: str
    """Why it was kept, or "removed"."""
    log_problem: str | None = None
    """Why the action log was not written, None when it was."""


def remove_orphans(
    candidates: Iterable[Leak], config: ScanConfig = ScanConfig(), *, recheck: Recheck | None = None
) -> list[Removal]:
    """Unlink orphaned POSIX segments, semaphores and queues and IPC_RMID orphaned SysV segments, re-checking
    each one immediately before.

    A fresh scan is taken first (recheck: one the caller took instead); an object that gained a holder, was
    replaced by another object of the same name (different inode), vanished, or is not ours to remove is left
    alone and reported (ipcmon.leaks.Recheck, unlink_refusal). A POSIX object is unlinked through its directory
    opened once, after its device and inode there were compared with the listed ones: a container's
    ``/proc/PID/root/dev/shm/NAME`` stays on that container's tmpfs even if PID exits meanwhile. A SysV segment
    is looked up again in /proc/sysvipc/shm right before shmctl(2) IPC_RMID: it must still have no attachment,
    the same key and ctime, and be ours to remove (:func:`_rmid_checked`). A segment of another IPC namespace is
    re-checked and removed inside that namespace, by a forked child that entered it with setns(2); nothing of
    any other namespace is touched. A deleted-but-held segment is never removed (only its holders can free it).
    In read-only mode nothing is removed. Every attempt, removed or kept, is written to the action log, naming
    the namespace of an object that is not in ipcmon's own.
    """
    wanted = list(candidates)
    if read_only():
        return _logged([Removal(leak, False, READ_ONLY_REASON) for leak in wanted])
    posix = [leak for leak in wanted if leak.sysv is None and leak.refusal is None]
    foreign = [leak for leak in wanted if leak.sysv is not None and leak.sysv.ipc is not None and leak.refusal is None]
    fresh = None
    if (posix and recheck is None) or foreign:
        fresh = scan(replace(config, kinds=("shm", "mqueue"), pids=None))
    if posix and recheck is None and fresh is not None:
        recheck = Recheck(fresh)
    entered = _remove_foreign(foreign, fresh.processes if fresh is not None else (), config.proc)
    return _logged([entered[id(leak)] if id(leak) in entered else _remove(leak, recheck, config.proc)
                    for leak in wanted])


def refuse(kept: Iterable[tuple[Leak, str]]) -> list[Removal]:
    """Log each (leak, reason) as kept without touching it: what `clean --yes` leaves alone (too young, deleted
    but held), so the log names every object it was asked about; the results."""
    return _logged([Removal(leak, False, reason) for leak, reason in kept])


def _remove(leak: Leak, recheck: Recheck | None, proc: str) -> Removal:
    if leak.refusal is not None:
        return Removal(leak, False, leak.refusal)
    if leak.sysv is not None:
        if leak.sysv.ipc is not None:  # another namespace's: only _remove_foreign may act, inside it
            return Removal(leak, False, "not re-checked inside its IPC namespace, so not removed")
        removed, outcome = _rmid_checked(leak.sysv, proc)
        return Removal(leak, removed, outcome)
    reason = recheck.keep_reason(leak) if recheck is not None else "not re-checked"
    if reason is not None or leak.path is None:
        return Removal(leak, False, reason or "not removable by name")
    directory, name = os.path.split(leak.path)
    try:
        # The directory is opened once and the name looked up in it twice (stat, unlink): a path through
        # /proc/PID/root cannot lead to another mount between the check and the unlink.
        dir_fd = os.open(directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return Removal(leak, False, "gone already")
    except OSError as error:
        return Removal(leak, False, f"not removed: {error.strerror}")
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not same_object(leak, st.st_dev, st.st_ino):
            return Removal(leak, False, "replaced by another object of the same name")
        refusal = unlink_refusal(leak.path)
        if refusal is not None:
            return Removal(leak, False, refusal)
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return Removal(leak, False, "gone already")
    except OSError as error:
        return Removal(leak, False, f"not removed: {error.strerror}")
    finally:
        os.close(dir_fd)
    return Removal(leak, True, "removed")


def _remove_foreign(leaks: list[Leak], processes: Iterable[Process], proc: str) -> dict[int, Removal]:
    """Remove SysV segments of other IPC namespaces, each re-checked inside its own namespace: one forked child
    enters each namespace that has one (ipcns.in_ipc_namespaces). The results by id() of each leak."""
    if not leaks:
        return {}
    import sysv_ipc  # noqa: F401 (imported here, before the fork: the child must not take the import lock)

    by_namespace: dict[int, list[Leak]] = {}
    for leak in leaks:
        assert leak.sysv is not None and leak.sysv.ipc is not None
        by_namespace.setdefault(leak.sysv.ipc, []).append(leak)
    spaces = ipcns.ipc_namespaces({process.pid: process for process in processes}, proc)
    members = {inode: spaces.members[inode] for inode in by_namespace if inode in spaces.members}

    def remove_inside(inode: int) -> list[tuple[bool, str]]:  # in the child, inside the namespace
        return [_rmid_checked(leak.sysv, proc) for leak in by_namespace[inode] if leak.sysv is not None]

    outcomes = ipcns.in_ipc_namespaces(members, remove_inside, proc=proc) if members else {}
    results: dict[int, Removal] = {}
    for inode, group in by_namespace.items():
        outcome = outcomes.get(inode)
        for index, leak in enumerate(group):
            if outcome is None:
                removal = Removal(leak, False, "gone already (no process is left in its IPC namespace)"
                                  if os.geteuid() == 0 else NOT_FOUND_REASON)
            elif isinstance(outcome, OSError):
                removal = Removal(leak, False, _entry_refusal(outcome))
            else:
                removed, reason = outcome[index]
                removal = Removal(leak, removed, reason)
            results[id(leak)] = removal
    return results


NOT_FOUND_REASON = ("no process of its IPC namespace could be read (not permitted: its processes are another "
                    "user's): run as root")
"""Why a segment of another namespace is kept when not root and none of that namespace's processes is readable."""


def _entry_refusal(error: OSError) -> str:
    """Why a namespace could not be entered to remove something there, in words."""
    if error.errno in (errno.EPERM, errno.EACCES):
        return "not permitted to enter its IPC namespace (setns(2) needs CAP_SYS_ADMIN): run as root"
    if error.errno in (errno.ESRCH, errno.ENOENT):
        return "gone already (no process is left in its IPC namespace)"
    return f"its IPC namespace could not be entered: {error.strerror}"


def _rmid_checked(identity: SysvIdentity, proc: str) -> tuple[bool, str]:
    """IPC_RMID a SysV segment of the caller's IPC namespace that is still the one listed and still unattached
    (read again just before): (removed, why it was kept or "removed"). Runs in ipcmon, or in a forked child inside
    another namespace (then it must not import anything: the caller imported sysv_ipc).

    sysv_ipc.remove_shared_memory is shmctl(id, IPC_RMID, NULL): it never attaches. Between the read and the
    call a process could still attach by id; the segment then lives on until it detaches, as IPC_RMID does.
    """
    import sysv_ipc

    try:
        rows = sysv.parse_table(procfs.read_bytes(f"{proc}/sysvipc/shm"))
    except (procfs.Gone, procfs.Denied):
        return False, f"{proc}/sysvipc/shm cannot be read: not re-checked, so not removed"
    row = next((row for row in rows if row.get("shmid") == identity.shmid), None)
    if row is None:
        return False, "gone already"
    if (row.get("key"), row.get("ctime")) != (identity.ipc_key, identity.ctime):
        return False, "replaced or changed since it was listed (its key or ctime differs)"
    if row.get("perms", 0) & sysv.SHM_DEST:
        return False, "gone already (marked for removal)"
    if row.get("nattch", 0) != 0:
        return False, f"attached now ({row['nattch']} attachments, last by pid {row.get('lpid')})"
    refusal = ipc_rmid_refusal(row.get("uid", -1), row.get("cuid"))
    if refusal is not None:
        return False, refusal
    try:
        sysv_ipc.remove_shared_memory(identity.shmid)
    except sysv_ipc.ExistentialError:
        return False, "gone already"
    except sysv_ipc.PermissionsError:
        return False, "not permitted (run as root)"
    return True, "removed"


def _logged(results: list[Removal]) -> list[Removal]:
    """Write each attempt to the action log; note on each result whether that worked."""
    logged = []
    for removal in results:
        leak = removal.leak
        where = f" in {ipcns.place_words(leak.place)}" if leak.place is not None and not leak.place.host else ""
        problem = record(f"remove {leak.mechanism}", f"{leak.name} ({leak.key}){where}",
                         "removed" if removal.removed else f"kept: {removal.reason}")
        logged.append(replace(removal, log_problem=problem) if problem else removal)
    return logged


@dataclass(frozen=True, slots=True)
class SignalOutcome:
    """What became of one signal the user asked for."""

    sent: bool
    text: str
    """What was done, or why not, fit to show (``sent SIGUSR1 (10) to process 42``)."""
    log_problem: str | None
    """Why the action log could not be written; None when it was."""


def send_signal(pid: int, start_ticks: int | None, signo: int, comm: str, proc: str = procfs.PROC) -> SignalOutcome:
    """Signal the process that was on screen, not a newer one that reused its pid, and log the attempt.

    A pidfd (pidfd_open(2)) pins the process; its start time (field 22 of /proc/PID/stat, clock ticks) is
    compared with the one the scan saw (None: not checked) before pidfd_send_signal(2). A process that has
    exited, a reused pid and a refusal by the kernel (EPERM) are outcomes with ``sent`` False, never raised.
    Every attempt, sent or not, is one line of the action log, naming the signal, the pid and comm.
    """
    try:
        text, sent = _send_signal(pid, start_ticks, signo, proc), True
    except OSError as error:
        text, sent = str(error), False
    problem = record("signal", f"{signal_name(signo)} to {pid} {comm}", text)
    return SignalOutcome(sent, text, problem)


def _send_signal(pid: int, start_ticks: int | None, signo: int, proc: str) -> str:
    name = signal_name(signo)
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise ProcessLookupError(f"process {pid} has exited; {name} not sent") from None
    try:
        if start_ticks is not None:
            try:
                current = procfs.parse_stat(procfs.read_bytes(f"{proc}/{pid}/stat")).start_ticks
            except procfs.Gone:
                raise ProcessLookupError(f"process {pid} has exited; {name} not sent") from None
            if current != start_ticks:
                raise ProcessLookupError(f"pid {pid} now belongs to another process; {name} not sent")
        signal.pidfd_send_signal(pidfd, signo)
    except PermissionError:
        raise PermissionError(f"not permitted to signal process {pid}; {name} not sent") from None
    finally:
        os.close(pidfd)
    return f"sent {name} ({signo}) to process {pid}"
