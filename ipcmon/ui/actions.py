"""The dashboard's system-changing actions, run from worker threads: signal a process, remove an orphan."""

from __future__ import annotations

import os
import signal

from ipcmon.collect import ScanConfig, procfs
from ipcmon.collect.signals import signal_name
from ipcmon.leaks import Leak, remove_orphans


def send_signal(pid: int, start_ticks: int | None, signo: int, proc: str = procfs.PROC) -> str:
    """Signal the process that was on screen, not a newer one that reused its pid.

    A pidfd pins the process; its start time is compared with the one the scan saw before sending.
    Raises OSError (ProcessLookupError, PermissionError) with a message fit to show.
    """
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


def remove_orphan(leak: Leak, config: ScanConfig) -> tuple[bool, str]:
    """Unlink one orphan after a fresh scan shows it is still orphaned (ipcmon.leaks does the re-check)."""
    (removal,) = remove_orphans([leak], config)
    return removal.removed, removal.reason
