"""`ipcmon exporter`: the latest scan as Prometheus metrics over HTTP, or as a textfile for node_exporter (issue 17).

The metrics and the background scan are ``ipcmon.metrics``; this module parses the options, refuses a non-local
address without ``--allow-remote``, serves, and stops on SIGTERM or SIGINT with exit status 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

from ipcmon.cli.arguments import Command, Subcommands, parse_interval
from ipcmon.safe import printable

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from ipcmon.live.attribution import Attributor

DEFAULT_LISTEN = "127.0.0.1:9464"
"""Loopback, on the port OpenTelemetry's Prometheus exporter uses (9464)."""


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:9464', '[::1]:9464', ':9464' (every address) → (host, port); a usage error otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    host = host.removeprefix("[").removesuffix("]")
    return (host or "0.0.0.0", int(port))


def is_local(host: str) -> bool:
    """Whether an address to bind is this machine's loopback only (127.0.0.0/8, ::1, ``localhost``)."""
    if host == "localhost":
        return True
    import ipaddress  # here, not at the top: every command builds the parser with this module (1.4 ms)

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def add_parser(commands: Subcommands) -> argparse.ArgumentParser:
    exporter = commands.add_parser(
        "exporter",
        help="serve the latest scan as Prometheus metrics (counts and sizes, no names), or write them for "
        "node_exporter's textfile collector",
        description="Scans every --interval seconds in the background and serves the latest scan's metrics at "
        "http://HOST:PORT/metrics: a scrape never scans. Only counts and sizes: no pid, process or object name. "
        "Exit status: 0 stopped by SIGTERM or SIGINT (or --once done), 2 a usage error, a refused address or a "
        "port in use, 1 a textfile that cannot be written.",
    )
    exporter.add_argument("--listen", metavar="HOST:PORT", type=parse_listen, default=None,
                          help=f"where to serve /metrics (default {DEFAULT_LISTEN}; with --textfile, no HTTP "
                          "unless given); an address other than loopback needs --allow-remote")
    exporter.add_argument("--allow-remote", action="store_true",
                          help="allow --listen on an address other than loopback: whoever reaches it sees the "
                          "counts and sizes of this machine's IPC (README.md, Prometheus exporter)")
    exporter.add_argument("--interval", type=parse_interval, default=15.0, metavar="SECONDS",
                          help="seconds between scans (default 15)")
    exporter.add_argument("--textfile", metavar="DIR",
                          help="write DIR/ipcmon.prom after each scan, atomically (for node_exporter's "
                          "--collector.textfile.directory)")
    exporter.add_argument("--once", action="store_true", help="with --textfile: scan once, write, exit (cron)")
    return exporter


def cmd_exporter(args: argparse.Namespace) -> int:
    """Serve (or write) until SIGTERM or SIGINT; see add_parser's description for the exit status."""
    if args.once and not args.textfile:
        sys.stderr.write("ipcmon exporter: --once writes a textfile: give --textfile DIR\n")
        return 2
    listen = args.listen if args.listen is not None else None if args.textfile else parse_listen(DEFAULT_LISTEN)
    if listen is not None and not is_local(listen[0]) and not args.allow_remote:
        sys.stderr.write(f"ipcmon exporter: {printable(listen[0])} is not a loopback address: anyone who reaches it "
                         "would see the counts and sizes of this machine's IPC. Give --allow-remote to serve there "
                         "anyway (and restrict it with a firewall or a proxy).\n")
        return 2

    from prometheus_client.registry import CollectorRegistry

    from ipcmon import metrics
    from ipcmon.collect import ScanConfig, Scanner

    registry = CollectorRegistry(auto_describe=True)
    collector = metrics.SnapshotCollector()
    registry.register(collector)
    failed: list[OSError] = []

    def write() -> None:
        try:
            metrics.write_textfile(args.textfile, registry)
        except OSError as error:
            failed.append(error)
            sys.stderr.write(f"ipcmon exporter: cannot write {printable(args.textfile)}: {printable(str(error))}\n")

    scanner = Scanner(ScanConfig(hide_self=True))
    refresher = metrics.Refresher(scanner.scan, args.interval, collector, write if args.textfile else None)
    if args.once:
        refresher.refresh()
        if refresher.problem:
            sys.stderr.write(f"ipcmon exporter: the scan failed: {printable(refresher.problem)}\n")
        return 1 if failed or refresher.problem else 0

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = None
    if listen is not None:
        from prometheus_client import start_http_server

        try:
            server, _thread = start_http_server(listen[1], addr=listen[0], registry=registry)
        except OSError as error:
            sys.stderr.write(f"ipcmon exporter: cannot listen on {printable(listen[0])}:{listen[1]}: "
                             f"{printable(str(error))}\n")
            return 2
    attributor = _count_sent(registry)
    refresher.start()
    where = [f"http://{listen[0]}:{listen[1]}/metrics"] if listen is not None else []
    where += [f"{args.textfile}/{metrics.TEXTFILE}"] if args.textfile else []
    sys.stderr.write(f"ipcmon exporter: serving {printable(' and '.join(where))}, a scan every {args.interval:g}s; "
                     "SIGTERM or Ctrl-C stops\n")
    sys.stderr.flush()
    stop.wait()
    refresher.stop()
    if attributor is not None:
        attributor.stop()
    if server is not None:
        server.shutdown()
        server.server_close()
    return 0


def _count_sent(registry: CollectorRegistry) -> Attributor | None:
    """Count the signals sent (ipcmon_signals_sent_total) through the Attributor's tracefs source, as root with tracefs
    mounted: a private trace instance of signal_generate, removed at exit (live/tracefs.py). None, said on stderr,
    when it cannot run: the other metrics are served all the same."""
    from ipcmon import metrics
    from ipcmon.live.attribution import Attributor

    sent = metrics.SentSignals()
    attributor = Attributor([], signals=True, queues=False, on_wake=lambda: sent.add(attributor.drain()))
    attributor.start()
    down = [status for status in attributor.status() if not status.active]
    if down and not any(status.active for status in attributor.status()):
        for status in down:
            sys.stderr.write(f"ipcmon exporter: no ipcmon_signals_sent_total: {printable(status.reason)}\n")
        attributor.stop()
        return None
    registry.register(sent)
    return attributor


COMMANDS = (Command("exporter", add_parser, cmd_exporter),)
