"""Not root, other IPC namespaces (issue 15): setns(2) is refused, so the SysV objects of a namespace nobody can
see into are not listed, and a note counts and names it; nothing crashes. Root sees the same objects."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import DEADLINE, scan_kinds
from tests.reliability.cli import Unprivileged, assert_inert, unprivileged_setup

# nobody's own IPC namespace, in a user namespace of its own (unprivileged): nobody may read its /proc/PID/ns/ipc,
# but setns(2) into it needs CAP_SYS_ADMIN in nobody's user namespace, which nobody lacks. The segment goes with
# the namespace when cat ends (stdin closed).
HOLDER = "ipcmk -M 4096 >/dev/null && readlink /proc/self/ns/ipc && exec cat"


@pytest.fixture(scope="module")
def nobody() -> Iterator[Unprivileged]:
    yield from unprivileged_setup([])


def test_a_namespace_nobody_cannot_enter_is_counted_and_named(nobody: Unprivileged) -> None:
    holder = nobody.popen(["unshare", "--user", "--ipc", "sh", "-c", HOLDER], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        link = holder.stdout.readline().decode().strip()
        assert link.startswith("ipc:["), (link, holder.stderr.read() if holder.stderr else b"")
        inode = int(link[5:-1])

        # Root enters it and lists its segment there.
        listed = [segment for segment in scan_kinds("sysv").sysv.shm
                  if segment.place is not None and segment.place.ipc == inode]
        assert [(segment.size, segment.nattch) for segment in listed] == [(4096, 0)]

        # nobody cannot: the snapshot says so, by count and namespace, and still lists the rest.
        result = nobody.run("snapshot", "--kind", "sysv", timeout=DEADLINE)
        assert result.returncode == 0, result.stderr
        assert_inert(result.stdout)
        notes = [line for line in result.stdout.decode().splitlines() if "not readable" in line]
        (note,) = [line for line in notes if f"ipc:{inode}" in line]
        assert note.startswith("note: ") and "IPC namespace" in note
        assert note.endswith("not permitted (setns(2) needs CAP_SYS_ADMIN): run as root to see its SysV objects.")
        assert "== SysV shared memory" in result.stdout.decode()
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        try:
            holder.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            holder.kill()  # our own child, by its pid
            holder.wait()
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()
