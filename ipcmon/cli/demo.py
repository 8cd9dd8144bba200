"""`ipcmon demo`: run the demo workloads (``ipcmon.demos``) in the foreground, narrated, or list them."""

from __future__ import annotations

import argparse
import sys

from ipcmon.cli.arguments import Command, Subcommands


def add_parser(commands: Subcommands) -> argparse.ArgumentParser:
    demo = commands.add_parser(
        "demo",
        help="run demo workloads that walk each IPC mechanism through its lifecycle, narrated",
        description="Runs demo workloads in the foreground, narrating each step. Ctrl-C (or SIGTERM, SIGHUP) "
        "stops them: they remove what they created (all but leak, by design) and ipcmon exits 0. 'all' runs the "
        "lesson demos together; not leak (it leaves orphans on purpose) nor stress (it is load, not a lesson).",
    )
    demo.add_argument("--list", action="store_true", help="describe each demo in one line")
    demo.add_argument("--step", type=float, default=None, metavar="S", help="seconds between steps")
    demo.add_argument("name", nargs="?", metavar="NAME", help="a demo (see --list), or all")
    demo.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                      help="passed to the demo, e.g. stress's --processes 500 --duration 60")
    return demo


def cmd_demo(args: argparse.Namespace) -> int:
    """List the demos (exit 0), run one or all of them until they end or Ctrl-C/SIGTERM/SIGHUP (exit 0 after their
    cleanup), or exit 2 for an unknown name."""
    from ipcmon.demos import DEMOS, LESSONS, run_foreground

    if args.list or args.name is None:
        width = max(map(len, DEMOS))
        sys.stdout.write("".join(f"{demo.name:<{width}}  {demo.description}\n" for demo in DEMOS.values()))
        return 0
    if args.name != "all" and args.name not in DEMOS:
        sys.stderr.write(f"ipcmon demo: no demo {args.name!r} (ipcmon demo --list shows them)\n")
        return 2
    return run_foreground(LESSONS if args.name == "all" else (args.name,), args.step, args.args)


COMMANDS = (Command("demo", add_parser, cmd_demo),)
