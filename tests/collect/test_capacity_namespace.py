"""The shm tmpfs budget (issue 14) on a real 16 MiB tmpfs filled past 90 %, in a private mount and pid namespace.

The case of the deep-learning loader: a batch segment unlinked at once and kept by another process, which ``ls``
cannot show but which fills the mount. The tmpfs is mounted over /dev/shm inside the namespace only, and goes away
with it, whatever happens.
"""

from __future__ import annotations

from tests.reliability.namespace import run_code

MiB = 1 << 20

CODE = """
import ctypes, dataclasses, json, os, subprocess
from ipcmon.collect import ScanConfig, scan

subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "ipcmon-test", "/dev/shm"], check=True)
MiB = 1 << 20

def make(name, size):
    fd = os.open("/dev/shm/" + name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.posix_fallocate(fd, 0, size)  # the pages are allocated: they count in the tmpfs
    return fd

named = [make(f"seg{i}", 4 * MiB) for i in range(3)]
semaphore = make("sem.lock", 4096)
os.mkdir("/dev/shm/cache")  # ordinary files someone parked there: in a directory, no shm_open name can reach them
os.close(make("cache/parked.log", 512 * 1024))
batch = make("batch", 3 * MiB)
os.unlink("/dev/shm/batch")
release, wait = os.pipe()
ready_r, ready_w = os.pipe()
child = os.fork()
if child == 0:  # the trainer: keeps the unlinked batch, nothing else
    ctypes.CDLL(None).prctl(15, b"trainer", 0, 0, 0)
    for fd in (*named, semaphore, wait, ready_r):
        os.close(fd)
    os.write(ready_w, b"x")
    os.read(release, 1)
    os._exit(0)
os.close(batch)
os.read(ready_r, 1)
try:
    snapshot = scan(ScanConfig(kinds=("shm",), shm_dir="/dev/shm"))
finally:
    os.write(wait, b"x")
    os.waitpid(child, 0)
capacity = snapshot.capacity
mount = capacity.shm_mounts[0]
print(json.dumps({"mount": dataclasses.asdict(mount), "fill": mount.fill, "notes": list(capacity.notes),
                  "me": os.getpid(), "child": child, "mounts": len(capacity.shm_mounts),
                  "shmem": capacity.shmem, "total": capacity.memory_total}))
"""


def test_full_tmpfs_breakdown_and_top_holders() -> None:
    report = run_code(CODE, timeout=120)
    mount = report["mount"]
    assert report["mounts"] == 1
    assert mount["path"] == "/dev/shm"
    assert mount["size"] == 16 * MiB
    assert mount["used"] == 12 * MiB + 3 * MiB + 4096 + 512 * 1024
    assert mount["available"] == mount["size"] - mount["used"]
    assert report["fill"] > 0.9
    assert mount["named"] == 12 * MiB
    assert mount["deleted"] == 3 * MiB  # what ls cannot show
    assert mount["semaphores"] == 4096
    assert mount["other"] == 512 * 1024  # the parked file (a file directly in /dev/shm would be a segment)
    assert mount["inodes_used"] >= 6 and mount["inodes_total"] > mount["inodes_used"]
    holders = [(holder["pid"], holder["comm"], holder["bytes"]) for holder in mount["top_holders"]]
    assert holders == [(report["me"], holders[0][1], 12 * MiB + 4096), (report["child"], "trainer", 3 * MiB)]
    assert report["shmem"] >= 16 * MiB - 512 * 1024 and report["total"] > report["shmem"]
    assert not [note for note in report["notes"] if "rounding" in note or "more than the tmpfs" in note]
