"""`ipcmon clean` reads the journal (issue 16): each orphan it would remove, removes or keeps is followed by who
created it, when the journal knows; without a journal its output is as before. Real segments, real creators."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ipcmon.safe import printable
from ipcmon.who import actor_text
from tests.helpers import REPO, Cleanup, Spawn, new_name
from tests.journal.common import creation_of, written


def _clean(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ipcmon", "clean", "--min-age", "0", *options],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_clean_names_the_creator_of_each_orphan_in_the_dry_run_and_when_it_removes(
        spawn: Spawn, cleanup: Cleanup, tmp_path: Path) -> None:
    base = new_name("cleanwho")
    known, unknown = cleanup.shm(base + "-known"), cleanup.shm(base + "-unknown")
    creator = spawn(f"""
        import posix_ipc
        for name in ({known!r}, {unknown!r}):
            posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=4096).close_fd()
        say("ready")
        hold()
        """, comm="ipcmon-cl\x1b[2J")  # a hostile comm: printed escaped
    creator.expect()
    record = creation_of(known, creator.pid)
    path = written(tmp_path / "journal.db", record)
    creator.stop()  # gone without unlinking either: two orphans, one whose creator the journal knows

    dry = _clean("--match", base + "-*", "--db", str(path))
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    at = next(index for index, line in enumerate(lines) if known in line)
    said = printable(actor_text(record.actor))
    assert lines[at + 1].startswith(f"      created by {said} at "), dry.stdout
    assert lines[at + 1].endswith("; that process exited (when is unknown) without unlinking"), dry.stdout
    assert "\x1b" not in dry.stdout and r"ipcmon-cl\x1b[2J" in lines[at + 1]
    after_unknown = lines[next(index for index, line in enumerate(lines) if unknown in line) + 1]
    assert after_unknown == "      creator unknown", dry.stdout
    assert os.path.exists(f"/dev/shm/{known.lstrip('/')}")  # a dry run removes nothing

    done = _clean("--yes", "--match", base + "-*", "--db", str(path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = lines.index(f"removed shm {known}")
    assert lines[at + 1].startswith(f"      created by {said} at "), done.stdout
    assert not os.path.exists(f"/dev/shm/{known.lstrip('/')}")


def test_clean_without_a_journal_prints_no_creator_lines(cleanup: Cleanup, tmp_path: Path) -> None:
    name = cleanup.shm(new_name("cleannone"))
    fd = os.open(f"/dev/shm/{name.lstrip('/')}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.close(fd)
    dry = _clean("--match", name, "--db", str(tmp_path / "none.db"))
    assert dry.returncode == 0, dry.stderr
    assert f"  shm      {name}" in dry.stdout and "created by" not in dry.stdout
    assert "creator unknown" not in dry.stdout and not (tmp_path / "none.db").exists()
