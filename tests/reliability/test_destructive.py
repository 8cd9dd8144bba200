"""Destructive actions: only on request and confirmation, re-checked just before acting, refused on held or
replaced objects, blocked entirely in read-only mode, and every attempt written to the action log."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import posix_ipc
import pytest

from ipcmon import actions as audit
from ipcmon.actions import remove_orphans
from ipcmon.collect import ScanConfig, scan
from ipcmon.leaks import find_leaks, matching
from tests.helpers import Cleanup, Spawn
from tests.reliability.cli import run_ipcmon

SHM_DIR = "/dev/shm"


def _prefix() -> str:
    return f"/ipcmon-test-{os.getpid()}-act{uuid.uuid4().hex[:6]}"


def _orphan(cleanup: Cleanup, name: str) -> str:
    posix_ipc.SharedMemory(cleanup.shm(name), posix_ipc.O_CREX, size=4096).close_fd()
    return name


def _log_lines(path: Path, prefix: str) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if prefix in line]


def test_clean_removes_only_with_yes_and_logs_what_it_did(cleanup: Cleanup, tmp_path: Path) -> None:
    prefix = _prefix()
    orphan = _orphan(cleanup, prefix + "-orphan")
    queue = cleanup.mqueue(prefix + "-queue")
    posix_ipc.MessageQueue(queue, posix_ipc.O_CREX).close()
    log = tmp_path / "state" / "ipcmon" / "actions.log"
    env = {"IPCMON_ACTION_LOG": "", "XDG_STATE_HOME": str(tmp_path / "state")}  # the default place, moved

    dry = run_ipcmon("clean", "--min-age", "0", "--match", prefix + "*", env=env)
    assert dry.returncode == 0 and b"dry run" in dry.stdout
    assert os.path.exists(SHM_DIR + orphan) and os.path.exists("/dev/mqueue" + queue)
    assert _log_lines(log, prefix) == [], "a dry run changes nothing and logs nothing"

    done = run_ipcmon("clean", "--yes", "--min-age", "0", "--match", prefix + "*", env=env)
    assert done.returncode == 0, done.stderr
    assert f"removed shm {orphan}".encode() in done.stdout and f"removed mqueue {queue}".encode() in done.stdout
    assert f"logged to {log}".encode() in done.stderr
    assert not os.path.exists(SHM_DIR + orphan) and not os.path.exists("/dev/mqueue" + queue)
    lines = _log_lines(log, prefix)
    assert len(lines) == 2
    assert any(f"remove shm {orphan} (shm:" in line and line.endswith(": removed") for line in lines)
    assert any(f"remove mqueue {queue} (mqueue:" in line and line.endswith(": removed") for line in lines)
    assert all(" uid=0(root) pid=" in line for line in lines)
    assert log.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--read-only", "clean", "--yes"), {}),
        (("clean", "--yes", "--read-only"), {}),
        (("clean", "--yes"), {"IPCMON_READ_ONLY": "1"}),
    ],
    ids=["global-flag", "clean-flag", "environment"],
)
def test_read_only_refuses_clean_yes_however_it_is_asked(
    cleanup: Cleanup, tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    prefix = _prefix()
    orphan = _orphan(cleanup, prefix + "-kept")
    log = tmp_path / "actions.log"
    refused = run_ipcmon(*args, "--min-age", "0", "--match", prefix + "*",
                         env={**env, "IPCMON_ACTION_LOG": str(log)})
    assert refused.returncode == 2
    assert b"refusing to remove anything: read-only mode" in refused.stderr
    assert os.path.exists(SHM_DIR + orphan)
    (line,) = _log_lines(log, prefix)  # the refusal is logged, as every attempt is
    assert f" remove shm {orphan} (shm:" in line and line.endswith(f": kept: {audit.READ_ONLY_REASON}")
    # Looking is still allowed: the dry run lists it.
    dry = run_ipcmon(*[arg for arg in args if arg != "--yes"], "--match", prefix + "*", env=env)
    assert dry.returncode == 0 and orphan.encode() in dry.stdout


def test_read_only_environment_blocks_removal_at_the_library_too(
    cleanup: Cleanup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The dashboard and any other caller of remove_orphans are stopped by IPCMON_READ_ONLY as well."""
    prefix = _prefix()
    orphan = _orphan(cleanup, prefix + "-lib")
    leaks = matching(find_leaks(scan(ScanConfig(kinds=("shm",)))), orphan)
    log = tmp_path / "actions.log"
    monkeypatch.setenv("IPCMON_ACTION_LOG", str(log))
    monkeypatch.setenv("IPCMON_READ_ONLY", "yes")
    (removal,) = remove_orphans(leaks)
    assert (removal.removed, removal.reason) == (False, audit.READ_ONLY_REASON)
    assert os.path.exists(SHM_DIR + orphan)
    (line,) = _log_lines(log, prefix)
    assert line.endswith(f"kept: {audit.READ_ONLY_REASON}")


HOLDER = """
    import posix_ipc
    shm = posix_ipc.SharedMemory({name!r})
    say("ready")
    hold()
"""


def test_objects_held_or_replaced_after_listing_are_kept_and_the_refusals_logged(
    spawn: Spawn, cleanup: Cleanup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prefix = _prefix()
    held = _orphan(cleanup, prefix + "-held")
    replaced = _orphan(cleanup, prefix + "-replaced")
    removable = _orphan(cleanup, prefix + "-removable")
    listed = matching(find_leaks(scan(ScanConfig(kinds=("shm",)))), prefix + "*")
    assert sorted(leak.name for leak in listed) == sorted([held, replaced, removable])
    # Between the listing (what a person confirmed) and the removal: one is opened, one is re-created.
    child = spawn(HOLDER.format(name=held))
    child.expect()
    posix_ipc.unlink_shared_memory(replaced)
    posix_ipc.SharedMemory(replaced, posix_ipc.O_CREX, size=8192).close_fd()
    log = tmp_path / "actions.log"
    monkeypatch.setenv("IPCMON_ACTION_LOG", str(log))

    outcome = {removal.leak.name: (removal.removed, removal.reason) for removal in remove_orphans(listed)}
    assert outcome[removable] == (True, "removed")
    assert outcome[held][0] is False and outcome[held][1].startswith(f"held now by {child.pid}")
    assert outcome[replaced][0] is False
    assert os.path.exists(SHM_DIR + held)
    assert os.stat(SHM_DIR + replaced).st_size == 8192, "the new object of the same name is untouched"
    lines = _log_lines(log, prefix)
    assert len(lines) == 3
    assert any(held in line and f"kept: held now by {child.pid}" in line for line in lines)
    assert any(replaced in line and ": kept: " in line for line in lines)


def test_an_unwritable_action_log_is_reported_and_does_not_hide_what_was_done(
    cleanup: Cleanup, tmp_path: Path
) -> None:
    prefix = _prefix()
    orphan = _orphan(cleanup, prefix + "-nolog")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    done = run_ipcmon("clean", "--yes", "--min-age", "0", "--match", orphan,
                      env={"IPCMON_ACTION_LOG": f"{blocker}/actions.log"})
    assert done.returncode == 0
    assert f"removed shm {orphan}".encode() in done.stdout
    assert b"warning: the action log" in done.stderr and b"could not be written" in done.stderr
