"""`ipcmon limits [--json] [--user U]` (issue 14, section 7): every budget, its use and headroom, per user.

Over hand-built Capacity records (the scan is replaced, for the wording and the --user selection) and over the real
scan, which says "budgets not read" until the scan reads them."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import ipcmon.collect
from ipcmon.cli import main
from ipcmon.collect import scan
from ipcmon.model import KINDS, Budget, Capacity, ShmMount, Snapshot
from tests.helpers import REPO

MIB = 1 << 20

BUDGETS = (
    Budget("mqueue", "fs.mqueue.queues_max", "queues", 3, 256),
    Budget("mqueue", "RLIMIT_MSGQUEUE", "bytes", 745920, 819200, uid=0, user="root", next_needs=82880),
    Budget("mqueue", "RLIMIT_MSGQUEUE", "bytes", None, 819200, uid=4242, user="alice", next_needs=82880,
           note="not readable: alice's processes"),
    Budget("signal", "RLIMIT_SIGPENDING", "signals", 2, None, uid=4242, user="alice", unlimited=True),
    Budget("pipe", "fs.pipe-user-pages-soft", "pages", 16, 16384, uid=4242, user="alice\x1b[31m"),
)
CAPACITY = Capacity((ShmMount("/dev/shm", 23, 64 * MIB, 16 * MIB, 48 * MIB, 3, 1000),), BUDGETS, 8 << 30,
                    300 * MIB, 5 << 30, notes=("the mqueue filesystem is not mounted",))


@pytest.fixture
def canned_scan(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Snapshot]]:
    """`limits` scans through ipcmon.collect.scan: give it this snapshot (whose queues are real: none)."""
    given = [Snapshot(taken_at=1_790_000_000.0, kinds=KINDS, capacity=CAPACITY)]
    monkeypatch.setattr(ipcmon.collect, "scan", lambda *args, **kwargs: given[0])
    yield given


def _limits(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["limits", *args])
    out, err = capsys.readouterr()
    return status, out, err


def _row(out: str, *words: str) -> list[str]:
    rows = [line.split() for line in out.splitlines() if all(word in line for word in words)]
    assert len(rows) == 1, (words, out)
    return rows[0]


@pytest.mark.usefixtures("canned_scan")
def test_every_budget_with_its_use_and_headroom(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _limits(capsys)
    assert (status, err) == (0, "")
    assert out.startswith("memory: 8.0G total, 5.0G available, 300M shared")
    assert _row(out, "/dev/shm")[:5] == ["/dev/shm", "64M", "16M", "48M", "25%"]
    header = out.splitlines()[out.splitlines().index("== Budgets (5)") + 1]
    assert header.split() == ["AREA", "LIMIT", "NAME", "USER", "USED", "LIMIT", "FILL", "HEADROOM", "NEXT", "NEEDS",
                              "NOTE"]
    assert _row(out, "queues_max") == ["mqueue", "fs.mqueue.queues_max", "-", "3", "256", "queues", "1%", "253", "-",
                                       "-"]
    assert _row(out, "root (0)")[4:11] == ["745,920", "819,200", "bytes", "91%", "73,280", "82,880", "-"]
    # Unknown reads '?' and the note says why; RLIM_INFINITY reads "unlimited".
    unknown = _row(out, "RLIMIT_MSGQUEUE", "alice (4242)")
    assert unknown[4:9] == ["?", "819,200", "bytes", "?", "?"]
    assert " ".join(unknown).endswith("not readable: alice's processes")
    assert _row(out, "RLIMIT_SIGPENDING")[4:8] == ["2", "unlimited", "-", "unlimited"]
    assert "\x1b" not in out and "alice\\x1b[31m (4242)" in out  # a user name is the system's: inert
    assert out.rstrip().endswith("note: the mqueue filesystem is not mounted")


@pytest.mark.usefixtures("canned_scan")
def test_user_takes_a_name_or_a_uid_and_keeps_the_system_wide_limits(capsys: pytest.CaptureFixture[str]) -> None:
    _, by_uid, _ = _limits(capsys, "--user", "4242")
    assert "== Budgets (4)" in by_uid and "root (0)" not in by_uid and "queues_max" in by_uid
    root = pwd.getpwuid(0).pw_name
    status, by_name, _ = _limits(capsys, "--user", root)
    assert status == 0 and "== Budgets (2)" in by_name and "root (0)" in by_name and "alice" not in by_name


@pytest.mark.usefixtures("canned_scan")
def test_json_is_the_capacity_object(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _limits(capsys, "--json", "--user", "0")
    data = json.loads(out)
    assert status == 0 and list(data) == ["capacity", "largest", "journal"]
    budgets = data["capacity"]["budgets"]
    assert [budget["name"] for budget in budgets] == ["fs.mqueue.queues_max", "RLIMIT_MSGQUEUE"]
    assert (budgets[1]["fill_percent"], budgets[1]["headroom"], budgets[1]["uid"]) == (91.1, 73280, 0)
    assert data["capacity"]["shm_mounts"][0]["fill_percent"] == 25.0


def test_budgets_not_read(capsys: pytest.CaptureFixture[str], canned_scan: list[Snapshot]) -> None:
    canned_scan[0] = replace(canned_scan[0], capacity=None)
    status, out, _ = _limits(capsys)
    assert (status, out) == (0, "budgets not read: this scan has no capacity (shm mounts and limits)\n")
    assert _limits(capsys, "--json")[1] == '{"capacity": null, "largest": [], "journal": null}\n'


def test_an_unknown_user_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _limits(capsys, "--user", "ipcmon-no-such-user-x")
    assert (status, out, err) == (2, "", "ipcmon limits: no such user: ipcmon-no-such-user-x\n")


def test_the_real_scan_agrees_with_the_command() -> None:
    # The command in its own process over this machine; until the capacity collector lands, the scan reads no
    # budgets and the command must say so (the lead extends this to ipcs -l and /proc/sys/fs/mqueue).
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    text = subprocess.run([sys.executable, "-m", "ipcmon", "limits"], capture_output=True, text=True, cwd=REPO,
                          env=env, check=False, timeout=60)
    as_json = subprocess.run([sys.executable, "-m", "ipcmon", "limits", "--json"], capture_output=True, text=True,
                             cwd=REPO, env=env, check=False, timeout=60)
    assert (text.returncode, as_json.returncode) == (0, 0), text.stderr + as_json.stderr
    capacity = scan().capacity
    if capacity is None:
        assert text.stdout.startswith("budgets not read")
        assert json.loads(as_json.stdout) == {"capacity": None, "largest": [], "journal": None}
    else:
        assert all(budget.name in text.stdout for budget in capacity.budgets)
        assert {budget["name"] for budget in json.loads(as_json.stdout)["capacity"]["budgets"]} == \
            {budget.name for budget in capacity.budgets}


def test_leaks_lists_budgets_past_their_threshold_but_not_as_leaks(
    capsys: pytest.CaptureFixture[str], canned_scan: list[Snapshot],
) -> None:
    # root's queues: 745,920 of 819,200 and a default queue needs 82,880: bad. Budgets are no leaks: the exit
    # status stays 0 and `leaks --json` stays the list of leaks.
    status = main(["leaks"])
    out, _ = capsys.readouterr()
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "no leaks found"
    assert lines[2] == "budgets past their threshold (1; ipcmon limits shows them all):"
    assert lines[3].startswith("✖ bad  mqueue  RLIMIT_MSGQUEUE uid 0  budget: uid 0 (root): 745,920 of 819,200 "
                               "bytes in use (91%); a default queue needs 82,880")
    assert lines[3].endswith("so mq_open will fail with EMFILE")
    assert main(["leaks", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    # Below the threshold, nothing is said.
    canned_scan[0] = replace(canned_scan[0], capacity=replace(CAPACITY, budgets=BUDGETS[:1]))
    main(["leaks"])
    assert capsys.readouterr().out == "no leaks found\n"


def test_a_threshold_that_is_no_percent_is_said_and_the_default_used() -> None:
    env = {**os.environ, "IPCMON_BUDGET_THRESHOLD": "abc"}
    result = subprocess.run([sys.executable, "-m", "ipcmon", "limits"], capture_output=True, text=True, cwd=REPO,
                            env=env, timeout=60)
    assert result.returncode == 0
    assert result.stderr.startswith("ipcmon: warning: IPCMON_BUDGET_THRESHOLD='abc' is not a percent from 1 to 100: "
                                    "the default 90% is used\n")


def test_a_user_with_nothing_is_said_to_have_nothing() -> None:
    uid = 64999  # no process runs as it on the test machine (free_uid's range)
    result = subprocess.run([sys.executable, "-m", "ipcmon", "limits", "--user", str(uid)], capture_output=True,
                            text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1].startswith(f"note: uid {uid} has no process and no object ipcmon can see")


def _shm_sysctl_rows(command: list[str]) -> tuple[dict[str, list[str]], dict[str, dict[str, object]]]:
    """kernel.shmall and kernel.shmmax as `ipcmon limits` prints them (each row split at spaces) and as
    `limits --json` gives them, both run through command (a prefix such as unshare)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    text, as_json = (subprocess.run([*command, sys.executable, "-m", "ipcmon", "limits", *extra], capture_output=True,
                                    text=True, cwd=REPO, env=env, check=False, timeout=60)
                     for extra in ((), ("--json",)))
    assert (text.returncode, as_json.returncode) == (0, 0), text.stderr + as_json.stderr
    names = ("kernel.shmall", "kernel.shmmax")
    rows = {line.split()[1]: line.split() for line in text.stdout.splitlines()
            if line.split()[1:2] in ([name] for name in names)}
    budgets = {budget["name"]: budget for budget in json.loads(as_json.stdout)["capacity"]["budgets"]
               if budget["name"] in names}
    assert set(rows) == set(budgets) == set(names), text.stdout
    return rows, budgets


def _sysctl(name: str) -> int:
    return int(Path(f"/proc/sys/kernel/{name}").read_text())


def test_the_kernels_no_limit_default_for_shmall_and_shmmax_reads_unlimited() -> None:
    """The kernel's default for both (SHMALL and SHMMAX, ULONG_MAX - 2^24) means no limit: LIMIT and HEADROOM read
    ``unlimited`` and the JSON has ``"unlimited": true, "limit": null`` as for RLIM_INFINITY, not a 20-digit number;
    a value below it (set in an IPC namespace of the test's own: the host's stays as it is) reads as a number."""
    from ipcmon.collect.capacity import SHM_NO_LIMIT, shm_sysctl_limit

    assert SHM_NO_LIMIT == 18446744073692774399  # include/uapi/linux/shm.h on a 64-bit kernel
    assert shm_sysctl_limit(18446744073692774399) == (None, True)
    assert shm_sysctl_limit(2**64 - 1) == (None, True)
    assert shm_sysctl_limit(SHM_NO_LIMIT - 1) == (SHM_NO_LIMIT - 1, False)
    assert shm_sysctl_limit(None) == (None, False)

    real = {name: _sysctl(name) for name in ("shmall", "shmmax")}
    rows, budgets = _shm_sysctl_rows([])
    for name, value in real.items():
        row, budget = rows[f"kernel.{name}"], budgets[f"kernel.{name}"]
        if value >= SHM_NO_LIMIT:  # this machine's values are the kernel's default (the usual case)
            assert row[4] == row[6] == "unlimited", row  # LIMIT, HEADROOM (FILL '-' between them)
            assert (budget["unlimited"], budget["limit"], budget["headroom"], budget["fill_percent"]) == \
                (True, None, None, None)
            assert f"{value} is the kernel's default" in str(budget["note"])
        else:
            assert (budget["unlimited"], budget["limit"]) == (False, value)
            assert row[4] == f"{value:,}"
    # snapshot's Capacity section prints the same budgets (report.budget_row): LIMIT only, no HEADROOM.
    snapshot = subprocess.run([sys.executable, "-m", "ipcmon", "snapshot", "--kind", "sysv"], capture_output=True,
                              text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True, timeout=60)
    limits = {line.split()[1]: line.split()[4] for line in snapshot.stdout.splitlines()
              if line.split()[1:2] in (["kernel.shmall"], ["kernel.shmmax"])}
    assert limits == {f"kernel.{name}": "unlimited" if value >= SHM_NO_LIMIT else f"{value:,}"
                      for name, value in real.items()}

    lowered = ["unshare", "--ipc", "sh", "-c",
               "echo 1048576 > /proc/sys/kernel/shmmax && echo 4096 > /proc/sys/kernel/shmall && exec \"$@\"", "sh"]
    rows, budgets = _shm_sysctl_rows(lowered)
    assert rows["kernel.shmall"][4:7] == ["4,096", "pages", "0%"] and rows["kernel.shmall"][7] == "4,096"
    assert rows["kernel.shmmax"][4:6] == ["1,048,576", "bytes"]
    assert [(budgets[name]["unlimited"], budgets[name]["limit"]) for name in ("kernel.shmall", "kernel.shmmax")] == \
        [(False, 4096), (False, 1048576)]
    assert {name: _sysctl(name) for name in real} == real  # the host's are untouched
