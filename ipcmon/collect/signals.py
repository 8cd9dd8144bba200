"""Signal masks from /proc/PID/status and /proc/PID/task/TID/status, decoded to names."""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Collection, Mapping

from ipcmon.collect import procfs
from ipcmon.collect.collector import Collector, ScanInputs
from ipcmon.model import ProcessSignals, ThreadSignals
from ipcmon.text import LIBC_RESERVED, signal_name

# The kernel's first real-time signal is 32; glibc reserves 32 and 33 for threading and reports
# SIGRTMIN as 34. Names follow what a user can send: SIGRTMIN+N counted from the libc SIGRTMIN.
KERNEL_NSIG = 64


@functools.cache
def signal_number(name: str) -> int:
    """The inverse of signal_name: SIGUSR1 → 10, SIGRTMIN+3 → 37; raises ValueError."""
    name = name.upper().removesuffix(LIBC_RESERVED.upper())
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIGRTMIN"):
        rest = name[len("SIGRTMIN") :]
        number = signal.SIGRTMIN + (int(rest) if rest else 0)
    elif name.startswith("SIGRTMAX"):
        rest = name[len("SIGRTMAX") :]
        number = signal.SIGRTMAX + (int(rest) if rest else 0)
    elif name[3:].isdigit():
        number = int(name[3:])
    else:
        try:
            return int(signal.Signals[name])
        except KeyError:
            raise ValueError(f"unknown signal {name!r}") from None
    if not 1 <= number <= KERNEL_NSIG:
        raise ValueError(f"signal {name} out of range")
    return number


@functools.lru_cache(maxsize=4096)
def decode_mask(mask: bytes) -> tuple[str, ...]:
    """Names of the signals set in a hex mask as /proc prints it (bit N-1 is signal N)."""
    value = int(mask, 16)
    names = []
    number = 1
    while value:
        if value & 1:
            names.append(signal_name(number))
        value >>= 1
        number += 1
    return tuple(names)


_SECTION_KEYS = (b"\nSigQ:", b"\nSigPnd:", b"\nShdPnd:", b"\nSigBlk:", b"\nSigIgn:")


def mask_section(status: bytes) -> bytes:
    """The lines of /proc/PID/status from Threads: to SigCgt:, everything from_status reads; b"" when they
    are not together in that order (then nothing is compared, the status is decoded)."""
    start = status.find(b"\nThreads:")
    last = status.find(b"\nSigCgt:", start)
    if start == -1 or last == -1:
        return b""
    end = status.find(b"\n", last + 1)
    section = status[start : end if end != -1 else len(status)]
    return section if all(key in section for key in _SECTION_KEYS) else b""


def queue_line(section: bytes) -> tuple[bytes, bytes]:
    """A mask section (mask_section) split into the section without its SigQ line and that line's value.

    SigQ counts the signals queued for the process's real user, all its processes together: any of them
    receiving one changes it in every other process's status, so it is compared apart from the masks."""
    start = section.find(b"\nSigQ:")
    if start == -1:
        return section, b""
    end = section.find(b"\n", start + 1)
    end = end if end != -1 else len(section)
    return section[:start] + section[end:], section[start + 6 : end].strip()


def status_value(status: bytes, key: bytes) -> bytes | None:
    """The value of one line of a /proc/PID/status text (``SigBlk`` → ``0000000000000001``), found without
    parsing the others; None when it has no such line (the first line, Name, is never asked for)."""
    start = status.find(b"\n" + key + b":")
    if start == -1:
        return None
    end = status.find(b"\n", start + 1)
    return status[start + len(key) + 2 : end if end != -1 else len(status)].strip()


def real_uid(status: bytes) -> int | None:
    """The real uid of a /proc/PID/status text (the first number of its Uid line); None when it has none."""
    fields = (status_value(status, b"Uid") or b"").split()
    return int(fields[0]) if fields and fields[0].isdigit() else None


def parse_queue(value: bytes) -> tuple[int | None, int | None]:
    """SigQ's ``queued/limit`` as two numbers; (None, None) when it does not read so."""
    if b"/" not in value:
        return None, None
    left, _, right = value.partition(b"/")
    return int(left), int(right)


def from_status(pid: int, comm: str, status: dict[bytes, bytes], proc: str = procfs.PROC,
                names: Mapping[int, str] | None = None) -> ProcessSignals:
    """Decode one process's masks; threads are read only when there is more than one (names: thread names
    known to be current, by tid, not read again)."""
    queued, limit = parse_queue(status.get(b"SigQ", b""))
    main_thread = ThreadSignals(
        tid=pid,
        comm=comm,
        pending=decode_mask(status.get(b"SigPnd", b"0")),
        blocked=decode_mask(status.get(b"SigBlk", b"0")),
    )
    threads = [main_thread]
    if int(status.get(b"Threads", b"1")) > 1:
        threads = read_threads(pid, main_thread, proc, names)
    return ProcessSignals(
        pid=pid,
        comm=comm,
        pending=decode_mask(status.get(b"ShdPnd", b"0")),
        blocked=main_thread.blocked,
        ignored=decode_mask(status.get(b"SigIgn", b"0")),
        caught=decode_mask(status.get(b"SigCgt", b"0")),
        threads=tuple(threads),
        queued=queued,
        queue_limit=limit,
    )


def read_threads(pid: int, main_thread: ThreadSignals, proc: str = procfs.PROC,
                 names: Mapping[int, str] | None = None) -> list[ThreadSignals]:
    """Every thread's own pending and blocked masks; threads that exit mid-read drop out. names: thread names
    known to be current, by tid (a tid not in it has its comm read)."""
    try:
        tids = sorted(int(name) for name in os.listdir(f"{proc}/{pid}/task") if name.isdigit())
    except OSError:
        return [main_thread]
    threads = []
    for tid in tids:
        if tid == pid:
            threads.append(main_thread)
            continue
        try:
            status = _thread_masks(procfs.read_bytes(f"{proc}/{pid}/task/{tid}/status", single=True))
            known = names.get(tid) if names is not None else None
            # The comm file, not status "Name": status escapes a backslash and a newline in the name.
            comm = known if known is not None else os.fsdecode(
                procfs.read_bytes(f"{proc}/{pid}/task/{tid}/comm", single=True).removesuffix(b"\n"))
        except (procfs.Gone, procfs.Denied):
            continue
        threads.append(
            ThreadSignals(
                tid=tid,
                comm=comm,
                pending=decode_mask(status.get(b"SigPnd", b"0")),
                blocked=decode_mask(status.get(b"SigBlk", b"0")),
            )
        )
    return threads


def _thread_masks(status: bytes) -> dict[bytes, bytes]:
    """SigPnd and SigBlk of a thread's status, as parse_status gives them (found, not every line parsed: a
    process's threads are a scan's most numerous status reads)."""
    return {key: value for key in (b"SigPnd", b"SigBlk") if (value := status_value(status, key)) is not None}


def _build(inputs: ScanInputs) -> tuple[ProcessSignals, ...]:
    return tuple(inputs.signals)  # decoded while each process was read (collect.process), from its status


def _restrict(records: tuple[ProcessSignals, ...], wanted: Collection[int]) -> tuple[ProcessSignals, ...]:
    return tuple(record for record in records if record.pid in wanted)


COLLECTOR = Collector(
    kind="signal", snapshot_field="signals", needs=frozenset({"signals"}), build=_build, restrict=_restrict
)
