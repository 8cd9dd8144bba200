"""`ipcmon limits`: every budget an IPC object counts against, its use and its headroom, per user (issue 14).

In the spirit of ``ipcs -l`` and ``lsipc -g``, with what is used of each limit and by whom. The numbers are the
scan's ``Snapshot.capacity`` (``ipcmon.model.capacity``); this module only selects and prints them.
"""

from __future__ import annotations

import argparse
import pwd
import sys

from ipcmon.cli.arguments import Command, Subcommands, add_places, place_selector, select_places
from ipcmon.cli.journal import add_db_option


def add_parser(commands: Subcommands) -> argparse.ArgumentParser:
    limits = commands.add_parser(
        "limits",
        help="every IPC budget (shm mounts, queue, pipe, signal and SysV limits), its use and headroom, per user",
        description="Exit status: 0 printed, 2 error (an unknown --user, a --container or --ns that matches "
        "nothing, a failed scan). With --container or --ns, only the shm mounts of those places are listed; the "
        "budgets are the machine's (or the IPC namespace's) and are all kept. Under the budgets, the largest "
        "objects on each shm mount and charged to each user's RLIMIT_MSGQUEUE, with who created each when the "
        "journal (ipcmon record) knows.",
    )
    add_places(limits)
    add_db_option(limits)
    limits.add_argument("--json", action="store_true",
                        help='one JSON object: {"capacity": …} as in snapshot --json (the contract in README.md)')
    limits.add_argument("--user", metavar="USER",
                        help="only this user's per-user budgets (a name or a uid); system-wide ones are kept")
    return limits


def resolve_user(text: str) -> int:
    """A user name or a uid → the uid. Raises ValueError for a name the user database does not know; a number is
    taken as a uid even with no name (a container's user)."""
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise ValueError(f"no such user: {text}") from None


def cmd_limits(args: argparse.Namespace) -> int:
    """Scan once and print the budgets; exit 0, or 2 on an unknown --user, a --container or --ns matching nothing,
    or a scan that fails."""
    from dataclasses import replace

    from ipcmon.collect import ScanConfig, scan

    uid = None
    if args.user is not None:
        try:
            uid = resolve_user(args.user)
        except ValueError as error:
            sys.stderr.write(f"ipcmon limits: {error}\n")
            return 2
    try:
        snapshot = scan(ScanConfig(), fork=True)
    except OSError as error:
        sys.stderr.write(f"ipcmon limits: the scan failed: {error}\n")
        return 2
    selected = select_places(snapshot, place_selector(args), "ipcmon limits")
    if selected is None:
        return 2
    capacity = selected.capacity
    if capacity is not None and uid is not None:
        capacity = replace(capacity, budgets=tuple(b for b in capacity.budgets if b.uid is None or b.uid == uid))
    from ipcmon.collect.capacity import largest_in_budgets
    from ipcmon.report import LARGEST_SHOWN
    from ipcmon.who import read_journal

    fillers = largest_in_budgets(selected, capacity, LARGEST_SHOWN) if capacity is not None else []
    known = read_journal(args.db, [(filler.key, filler.name, filler.mechanism) for filler in fillers])
    if args.json:
        from ipcmon.export import dumps_capacity

        sys.stdout.write(dumps_capacity(capacity, fillers, known) + "\n")
    else:
        from ipcmon.report import largest_lines, limits_lines

        sys.stdout.write("\n".join([*limits_lines(capacity), *largest_lines(fillers, capacity, known)]) + "\n")
        if capacity is not None and uid is not None and not any(b.uid == uid for b in capacity.budgets):
            # Per-user budgets exist only for users with processes or objects: say so, not nothing.
            sys.stdout.write(f"note: uid {uid} has no process and no object ipcmon can see: nothing is charged to "
                             "it, and its limits (RLIMIT_MSGQUEUE, RLIMIT_SIGPENDING) are read from a user's "
                             "processes, so they are unknown\n")
    sys.stdout.flush()
    from ipcmon.cli.lifecycle import journal_notes

    sys.stderr.write(journal_notes(known))
    return 0


COMMANDS = (Command("limits", add_parser, cmd_limits),)
