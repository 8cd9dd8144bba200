"""live.ready.readable: poll(2), so a descriptor numbered 1024 or above (select(2)'s limit) is waited on too."""

from __future__ import annotations

import fcntl
import os
import resource
import time

from ipcmon.live.ready import readable

HIGH = 1500


def test_a_descriptor_above_selects_limit_is_waited_on() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < HIGH + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (HIGH + 64, hard))  # within hard: restored below
    read_end, write_end = os.pipe()
    # The lowest free number from HIGH up: dup2 onto HIGH itself would close what another part of this process keeps
    # there (a Scanner left by an earlier test keeps /proc files from 1024 up; its finalizer then closed HIGH: EBADF).
    high = fcntl.fcntl(read_end, fcntl.F_DUPFD_CLOEXEC, HIGH)
    try:
        started = time.monotonic()
        assert readable([high], 0.05) == []
        assert time.monotonic() - started >= 0.04
        os.write(write_end, b"x")
        assert readable([read_end, high], 1.0) == [read_end, high]
        assert readable([high], None) == [high]
    finally:
        for fd in (high, read_end, write_end):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
