"""What every command module shares: the `Command` table entry, and the argument types and options they reuse.

Light on purpose: every command module imports this while the parser is built, whichever command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

from ipcmon.model import KINDS

if TYPE_CHECKING:
    from ipcmon.model import Snapshot
    from ipcmon.text import PlaceSelector

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``ArgumentParser.add_subparsers`` returns: a command module adds its sub-parser to it."""


class Command(NamedTuple):
    """One `ipcmon COMMAND`: the entry each command module gives the dispatch table in ``ipcmon.cli``.

    A NamedTuple rather than a dataclass: every run builds this class, and a dataclass costs about a
    millisecond to build (its methods are generated and compiled at import), a NamedTuple a tenth of that.
    """

    name: str
    add_parser: Callable[[Subcommands], argparse.ArgumentParser]
    """Adds the command's sub-parser (its options, help and description) and returns it."""
    run: Callable[[argparse.Namespace], int]
    """Runs the command with the parsed arguments; returns the exit status."""


def parse_kinds(text: str) -> tuple[str, ...]:
    """'shm,pipe' → ('shm', 'pipe'); 'all' → every kind (``model.KINDS``); an unknown kind is a usage error."""
    if text.strip() in ("", "all"):
        return KINDS
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kind {', '.join(unknown)} (choose from {', '.join(KINDS)})")
    return kinds


def parse_pids(text: str) -> frozenset[int]:
    """'17190,17234' → the set of those pids; anything but comma-separated integers is a usage error."""
    try:
        return frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of pids: {text!r}") from None


def missing_pids(pids: Iterable[int] | None) -> list[int]:
    """The given pids (``--pid``) that name no process now, in order: their /proc entry does not exist (the proc
    tree of ``IPCMON_PROC`` when set, as the scan reads it). A zombie still has one, and so does a process the
    user may not read: both exist. Empty for None (no ``--pid``)."""
    proc = os.environ.get("IPCMON_PROC") or "/proc"  # collect.config.ENV_PROC, without importing the collectors
    return sorted(pid for pid in pids or () if pid <= 0 or not os.path.exists(f"{proc}/{pid}"))


def parse_interval(text: str) -> float:
    """Seconds between scans, at least 0.1 (faster scans would starve the machine they watch)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0.1:
        raise argparse.ArgumentTypeError("the interval must be at least 0.1 seconds")
    return value


def parse_duration_arg(text: str) -> float:
    """'30s', '5m', '2h', '1d' → seconds (``ipcmon.leaks.parse_duration``, imported only when the option is given)."""
    from ipcmon.leaks import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_scope(parser: argparse.ArgumentParser) -> None:
    """``--kind KINDS`` and ``--pid PIDS``: which mechanisms and which processes a command looks at."""
    parser.add_argument(
        "--kind",
        type=parse_kinds,
        default=KINDS,
        metavar="KINDS",
        help=f"comma-separated mechanisms to show: {','.join(KINDS)} (default: all)",
    )
    parser.add_argument("--pid", type=parse_pids, default=None, metavar="PIDS",
                        help="only these processes (comma-separated) and the objects they hold")
    add_show_self(parser)
    add_places(parser)


def parse_inode(text: str) -> int:
    """A namespace's inode number, ``4026532281`` (or ``ipc:[4026532281]`` as readlink /proc/PID/ns/ipc shows it)."""
    from ipcmon.text import parse_ns

    inode = parse_ns(text)
    if inode is None:
        raise argparse.ArgumentTypeError(f"not a namespace inode number: {text!r}")
    return inode


def add_places(parser: argparse.ArgumentParser) -> None:
    """``--container ID|NAME`` and ``--ns INODE``: which containers or namespaces a command looks at (issue 15;
    README "Containers and namespaces")."""
    parser.add_argument("--container", metavar="ID|NAME",
                        help="only this container: its name, its id or an id prefix of at least 4 characters "
                             "(docker ps's short id), or 'host'")
    parser.add_argument("--ns", type=parse_inode, metavar="INODE",
                        help="only this IPC or mount namespace, by inode (lsns's NS column)")


def place_selector(args: argparse.Namespace) -> PlaceSelector | None:
    """What ``--container`` and ``--ns`` select; None when neither was given."""
    container, ns = getattr(args, "container", None), getattr(args, "ns", None)
    if container is None and ns is None:
        return None
    from ipcmon.text import PlaceSelector

    return PlaceSelector(container, ns)


def select_places(snapshot: Snapshot, selector: PlaceSelector | None, command: str) -> Snapshot | None:
    """The snapshot restricted to the selected places (``collect.scan.restrict_to_places``); itself without a
    selector. None after saying on stderr that nothing matches: like a ``--pid`` naming no process, a container or
    namespace that is not there is an error, not an empty and misleading scan."""
    if selector is None:
        return snapshot
    from ipcmon.collect.scan import restrict_to_places

    selected = restrict_to_places(snapshot, selector.matches)
    if not any_place(selected):
        sys.stderr.write(f"{command}: no container or namespace matches {selector.describe()}{_why_none(selector)}\n")
        return None
    return selected


def _why_none(selector: PlaceSelector) -> str:
    """What may explain an empty selection: a prefix too short to be taken as one, not being root."""
    from ipcmon.text import MIN_ID_PREFIX

    hints = []
    wanted = selector.container
    if wanted is not None and wanted != "host" and len(wanted) < MIN_ID_PREFIX:
        hints.append(f"an id prefix needs at least {MIN_ID_PREFIX} characters")
    if os.geteuid() != 0:
        hints.append("not root: other users' processes' namespaces cannot be read (run as root to see every "
                     "container)")
    return "".join(f"; {hint}" for hint in hints)


def any_place(snapshot: Snapshot) -> bool:
    """Whether a restricted snapshot kept anything that has a place: a namespace, a process or a placed object."""
    sysv = snapshot.sysv
    return bool(snapshot.namespaces or snapshot.processes or snapshot.shm or snapshot.mqueues or sysv.shm
                or sysv.msg or sysv.sem)


def add_show_self(parser: argparse.ArgumentParser) -> None:
    """``--show-self``: ipcmon leaves its own process and its own pipes out of every scan unless given this
    (``ScanConfig.hide_self``; README "Commands")."""
    parser.add_argument("--show-self", action="store_true",
                        help="also show ipcmon's own process and its own pipes (hidden by default)")
