"""A killed namespace run's objects are removed even when its dying processes create some after the first look."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from tests.reliability.namespace import remove_prefixed

STRAGGLER = """
import sys, time
print("ready", flush=True)
time.sleep(0.4)
open(sys.argv[1], "w").close()
"""


def test_objects_created_after_the_first_pass_are_removed_too() -> None:
    prefix = f"ipcmon-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    early, late = f"/dev/shm/{prefix}-early", f"/dev/shm/{prefix}-late"
    open(early, "w").close()
    # A straggler creates its object 0.4 s after the cleanup starts, as a process of a dying namespace might.
    straggler = subprocess.Popen([sys.executable, "-c", STRAGGLER, late], stdout=subprocess.PIPE, text=True)
    try:
        assert straggler.stdout is not None and straggler.stdout.readline() == "ready\n"
        remove_prefixed(prefix, settle=0.3)
        assert straggler.wait(timeout=10) == 0
        assert not os.path.exists(early)
        assert not os.path.exists(late)
    finally:
        straggler.kill()
        straggler.wait()
        for path in (early, late):
            if os.path.exists(path):
                os.unlink(path)
