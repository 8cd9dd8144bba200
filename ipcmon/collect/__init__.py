"""Read IPC objects from the kernel (/proc, the shm directory, the mqueue filesystem); no UI imports."""

from ipcmon.collect.scan import ScanConfig, Scanner, scan

__all__ = ["ScanConfig", "Scanner", "scan"]
