"""live.ready.readable: poll(2), so a descriptor numbered 1024 or above (select(2)'s limit) is waited on too."""

from __future__ import annotations

import os
import resource
import time

from ipcmon.live.ready import readable

HIGH = 1500


def test_a_descriptor_above_selects_limit_is_waited_on() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft <= HIGH:
        resource.setrlimit(resource.RLIMIT_NOFILE, (HIGH + 1, hard))  # within hard: restored below
    read_end, write_end = os.pipe()
    high = os.dup2(read_end, HIGH)
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
