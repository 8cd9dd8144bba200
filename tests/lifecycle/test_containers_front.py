"""The front ends over real container-like namespaces (issue 15): two ``unshare`` scenes holding objects of the same
names, one in a docker-named cgroup, seen from the host through every command: snapshot (JSON, text, --container,
--ns), leaks, clean, limits and watch. Torn down by tests/containers.py even on failure."""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import sys
import time
from typing import Any

from tests.containers import Scene, container
from tests.helpers import DEADLINE, REPO, new_name
from tests.test_snapshot_cli import ipcmon, snapshot_json


def _of(records: list[dict[str, Any]], scene: Scene) -> list[dict[str, Any]]:
    """The records whose namespace is the scene's IPC namespace."""
    return [r for r in records if r["namespace"] is not None and r["namespace"]["ipc"] == scene.ipc]


def _in_namespace(scene: Scene, code: str) -> None:
    """Run Python in the scene's IPC and mount namespaces (nsenter) and its cgroup, as `docker exec` would: a
    process of the container, not a stranger that entered its namespaces."""
    procs = os.path.join(scene.cgroup, "cgroup.procs") if scene.cgroup else None

    def enter_cgroup() -> None:  # in the child, before exec
        if procs is not None:
            with open(procs, "w") as file:
                file.write(str(os.getpid()))

    subprocess.run(["nsenter", "-t", str(scene.pid), "--ipc", "--mount", sys.executable, "-c", code],
                   check=True, timeout=DEADLINE, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                   preexec_fn=enter_cgroup)


def _watch_lines(process: subprocess.Popen[str], wanted: str, timeout: float = 3 * DEADLINE) -> list[str]:
    """watch's lines up to the first that contains wanted.

    Reads the pipe itself (os.read), as test_watch._read_until does: select() on the pipe and readline() on the text
    stream left a line that came in the same read as the one before it in the stream's buffer, unseen (the state
    line and the creation, when the creation's poll came before the first read)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    lines: list[str] = []
    unread = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while b"\n" in unread:
            raw, unread = unread.split(b"\n", 1)
            lines.append(raw.decode() + "\n")
            if wanted in lines[-1]:
                return lines
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            unread += chunk
    raise AssertionError(f"watch never printed {wanted!r}; it printed {lines!r}")


def test_container_front_ends_end_to_end() -> None:
    name, queue = new_name("ctr"), new_name("ctrq")
    key = 0x1C000000 + secrets.randbelow(1 << 20)
    with container(name, queue, key, cgroup=True) as boxed, container(name, queue, key) as bare:
        assert boxed.container_id is not None
        short = boxed.container_id[:12]

        # snapshot --json: both copies of each object, each with its namespace and holders; the container's label.
        data = snapshot_json()
        segments = [s for s in data["shm"] if s["name"] == name]
        assert len(segments) == 2, segments
        (boxed_segment,), (bare_segment,) = _of(segments, boxed), _of(segments, bare)
        assert boxed_segment["namespace"] == {"ipc": boxed.ipc, "mnt": boxed.mnt}
        assert boxed_segment["container"]["id"] == boxed.container_id
        assert boxed_segment["container"]["runtime"] == "docker"
        assert boxed_segment["place"] == short
        assert bare_segment["namespace"] == {"ipc": bare.ipc, "mnt": bare.mnt} and bare_segment["container"] is None
        for segment, scene in ((boxed_segment, boxed), (bare_segment, bare)):
            assert segment["dev"] == scene.shm_dev
            assert {(h["pid"], h["nspid"]) for h in segment["holders"]} == {(scene.pid, 1)}  # its fd and mappings
        queues = [q for q in data["mqueues"] if q["name"] == queue]
        assert len(_of(queues, boxed)) == 1 and len(_of(queues, bare)) == 1
        assert _of(queues, boxed)[0]["container"]["id"] == boxed.container_id
        sysv = [s for s in data["sysv"]["shm"] if s["key"] == key]
        assert {s["namespace"]["ipc"] for s in sysv} == {boxed.ipc, bare.ipc}
        assert all(s["namespace"]["mnt"] is None for s in sysv)
        namespaces = {(n["ipc"], n["mnt"]): n for n in data["namespaces"]}
        assert namespaces[(boxed.ipc, boxed.mnt)]["processes"] >= 1
        assert namespaces[(boxed.ipc, boxed.mnt)]["container"]["id"] == boxed.container_id
        assert namespaces[(bare.ipc, bare.mnt)]["processes"] >= 1
        assert data["namespaces"][0]["host"] is True
        holder = next(p for p in data["processes"] if p["pid"] == boxed.pid)
        assert holder["nspid"] == 1 and holder["container"]["id"] == boxed.container_id

        # --container (its short id) and --ns (the other's IPC namespace) each select one scene's objects.
        selected = snapshot_json("--container", short)
        assert {(s["namespace"]["ipc"], s["name"]) for s in selected["shm"]} >= {(boxed.ipc, name)}
        assert all(s["namespace"]["ipc"] == boxed.ipc for s in selected["shm"] + selected["mqueues"])
        assert [n["ipc"] for n in selected["namespaces"]] == [boxed.ipc]
        other = snapshot_json("--ns", str(bare.ipc))
        assert {s["namespace"]["ipc"] for s in other["shm"] + other["mqueues"] + other["sysv"]["shm"]} == {bare.ipc}
        assert [s["key"] for s in other["sysv"]["shm"]] == [key]

        # The text report: a CONTAINER column and a Namespaces section, since there is more than the host.
        text = ipcmon("snapshot", "--kind", "shm,mqueue,sysv")
        assert text.returncode == 0, text.stderr
        lines = text.stdout.decode().splitlines()
        assert any(line.startswith("NAME ") and line.split()[1] == "CONTAINER" for line in lines)
        rows = [line.split() for line in lines if line.startswith(name + " ")]
        assert len(rows) == 2 and short in {row[1] for row in rows}
        assert any(line.startswith("== Namespaces (") for line in lines)
        assert f"{boxed.pid} (1 in ns) ipcmon-ns-hold" in text.stdout.decode()

        # An unknown container is an error, as an unknown --pid is.
        unknown = ipcmon("snapshot", "--container", "no-such-container")
        assert unknown.returncode == 1 and b"no container or namespace matches" in unknown.stderr

        # leaks: the orphan of each namespace, named with where it lives; --container keeps one.
        leaks = ipcmon("leaks", "--json", "--container", short)
        assert leaks.returncode == 1, leaks.stderr
        found = json.loads(leaks.stdout)
        orphans = [leak for leak in found if leak["name"] == name + "-orphan"]
        assert [leak["namespace"]["ipc"] for leak in orphans] == [boxed.ipc]
        assert orphans[0]["container"]["id"] == boxed.container_id
        listed = ipcmon("leaks", "--match", name + "-orphan").stdout.decode().splitlines()
        assert listed[0].split()[3:5] == ["NAME", "CONTAINER"]
        assert [name + "-orphan", short] in [line.split()[4:6] for line in listed]
        # Its remedy keeps to the container asked for: the same names elsewhere are not taken too.
        hint = ipcmon("leaks", "--match", name + "-orphan", "--container", short).stdout.decode()
        assert f"can be removed: ipcmon clean --yes --match {name}-orphan --container={short}" in hint, hint

        # clean --yes there: the orphan of that namespace goes, the other's of the same name stays.
        orphan_file = name[1:] + "-orphan"
        clean = ipcmon("clean", "--yes", "--min-age", "0", "--container", short, "--match", name + "-orphan")
        assert clean.returncode == 0, clean.stderr
        removed = [line for line in clean.stdout.decode().splitlines() if line.startswith(f"removed shm {name}-orphan")]
        assert len(removed) == 1 and short in removed[0], clean.stdout  # named with where it was
        assert not os.path.exists(f"/proc/{boxed.pid}/root/dev/shm/{orphan_file}")
        assert os.path.exists(f"/proc/{bare.pid}/root/dev/shm/{orphan_file}")

        # limits: the container's own tmpfs, with its label.
        limits = ipcmon("limits", "--json", "--container", short)
        assert limits.returncode == 0, limits.stderr
        mounts = json.loads(limits.stdout)["capacity"]["shm_mounts"]
        assert [(m["dev"], m["container"]["id"]) for m in mounts] == [(boxed.shm_dev, boxed.container_id)]

        # watch --container: an object made in that container is an event with its place; the other's is not.
        watch = subprocess.Popen(
            [sys.executable, "-m", "ipcmon", "watch", "--json", "--kind", "shm", "--interval", "0.3",
             "--container", short],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            assert watch.stderr is not None
            watch.stderr.readline()  # "watching …": the baseline is taken
            code = "import posix_ipc, sys; posix_ipc.SharedMemory(sys.argv[1], posix_ipc.O_CREX, size=4096)"
            _in_namespace(bare, f"{code.replace('sys.argv[1]', repr(name + '-bare'))}")
            time.sleep(1.0)  # a poll or more apart: were the other's creation let through, it would come first
            _in_namespace(boxed, f"{code.replace('sys.argv[1]', repr(name + '-new'))}")
            lines = _watch_lines(watch, f'"object": "{name}-new"')
            created = json.loads(lines[-1])
            assert created["event"] == "created" and created["namespace"]["ipc"] == boxed.ipc
            assert created["container"]["id"] == boxed.container_id
            assert not any(f"{name}-bare" in line for line in lines)
        finally:
            watch.terminate()
            watch.communicate(timeout=DEADLINE)
