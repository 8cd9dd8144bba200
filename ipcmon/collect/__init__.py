"""Read IPC objects from the kernel (/proc, the shm directory, the mqueue filesystem); no UI imports."""

from ipcmon.collect.scan import ScanConfig, scan

__all__ = ["ScanConfig", "scan"]
