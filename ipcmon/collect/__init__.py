"""Read IPC objects from the kernel (/proc, the shm directory, the mqueue filesystem); no UI imports."""

from ipcmon.collect.config import ScanConfig
from ipcmon.collect.scan import Scanner, scan

__all__ = ["ScanConfig", "Scanner", "scan"]
