"""The dashboard's system-changing actions, run from worker threads: signal a process, remove an orphan."""

from __future__ import annotations

from ipcmon.actions import remove_orphans
from ipcmon.actions import send_signal as send_signal  # ipcmon.actions is the only code that changes the system
from ipcmon.collect import ScanConfig
from ipcmon.leaks import Leak


def remove_orphan(leak: Leak, config: ScanConfig) -> tuple[bool, str]:
    """Unlink one orphan after a fresh scan shows it is still orphaned (ipcmon.leaks does the re-check)."""
    (removal,) = remove_orphans([leak], config)
    return removal.removed, removal.reason
