"""The fanotify binding (issue 16): real events on the shm tmpfs name the process that acted and the entry; the mqueue
filesystem refuses a FID mark; an ordinary user is refused; cut-short records are dropped, never guessed at."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ipcmon.live.fanotify import (
    FAN_CREATE,
    FAN_DELETE,
    FAN_Q_OVERFLOW,
    Fanotify,
    parse_events,
)
from tests.helpers import DEADLINE, gather, new_name
from tests.reliability.cli import Unprivileged, unprivileged_setup

_MAKER = """
import ctypes, os, sys
ctypes.CDLL(None).prctl(15, b"ipcmon-fan-mk", 0, 0, 0)
fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
os.write(fd, b"x")
os.close(fd)
print(os.getpid(), flush=True)
"""


def test_create_and_delete_on_the_shm_tmpfs_name_the_process_that_acted() -> None:
    if os.geteuid() != 0:
        pytest.fail("fanotify filesystem marks need root, as CI is")
    name = new_name("fan").lstrip("/")
    path = f"/dev/shm/{name}"
    with Fanotify() as fan:
        fan.mark_filesystem("/dev/shm")
        try:
            maker = subprocess.run([sys.executable, "-c", _MAKER, path], capture_output=True, text=True, check=True)
            maker_pid = int(maker.stdout)
        finally:
            os.unlink(path)  # this process removes it: the delete is ours
        events = gather(fan.read, lambda found: any(event.mask & FAN_DELETE and event.name == name
                                                    for event in found), "the delete event")
    mine = [event for event in events if event.name == name]
    created = [event for event in mine if event.mask & FAN_CREATE]
    deleted = [event for event in mine if event.mask & FAN_DELETE]
    assert [event.pid for event in created] == [maker_pid]
    assert [event.pid for event in deleted] == [os.getpid()]
    assert any("close-write" in event.kinds and event.pid == maker_pid for event in mine)
    # The same directory handle on every event of the entry: one directory, however many events.
    assert len({event.directory for event in mine}) == 1 and mine[0].directory


def test_the_mqueue_filesystem_refuses_a_fid_mark() -> None:
    if os.geteuid() != 0:
        pytest.fail("fanotify filesystem marks need root, as CI is")
    if not os.path.ismount("/dev/mqueue"):
        pytest.fail("/dev/mqueue is not mounted; .ci/run mounts it")
    with Fanotify() as fan, pytest.raises(OSError) as refused:
        fan.mark_filesystem("/dev/mqueue")
    assert refused.value.errno == 95  # EOPNOTSUPP: no file handles there


@pytest.fixture(scope="module")
def nobody() -> Iterator[Unprivileged]:
    yield from unprivileged_setup([])


def test_an_ordinary_user_cannot_mark_a_filesystem(nobody: Unprivileged) -> None:
    code = ("from ipcmon.live.fanotify import Fanotify\n"
            "try:\n    fan = Fanotify(); fan.mark_filesystem('/dev/shm')\n"
            "except PermissionError as error:\n    print('refused', error.errno)\n")
    result = subprocess.run(nobody.command([nobody.python, "-c", code]), capture_output=True, text=True,
                            env=nobody.env(), cwd=nobody.home, timeout=DEADLINE)
    assert result.stdout.split() == ["refused", "1"], result.stderr  # EPERM


def _record(mask: int, pid: int, info: bytes = b"") -> bytes:
    return struct.pack("=IBBHQii", 24 + len(info), 3, 0, 24, mask, -1, pid) + info


def test_records_cut_short_or_of_another_version_end_the_decoding() -> None:
    # Canned bytes: a read the kernel cut mid-record cannot be produced on demand.
    whole = _record(FAN_Q_OVERFLOW, 0)
    assert [event.overflow for event in parse_events(whole)] == [True]
    assert parse_events(whole + whole[:10]) == parse_events(whole)
    other_version = bytearray(whole)
    other_version[4] = 2
    assert parse_events(bytes(other_version)) == []
    # An info record longer than its event is dropped, the event kept without a name.
    bad_info = _record(FAN_CREATE, 7, struct.pack("=BBH", 2, 0, 200) + b"\0" * 8)
    (event,) = parse_events(bad_info)
    assert (event.pid, event.name, event.directory) == (7, None, None)
