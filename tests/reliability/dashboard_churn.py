"""The dashboard through churn: the live app (Pilot, headless) while processes and objects churn, with memory.

Run by hand (as root; it re-executes itself in a private pid namespace, see churn.py):

    python3 -m tests.reliability.dashboard_churn --scans 2000

A Pilot walks the views, filters, moves the cursor, pauses and changes the interval while the dashboard
refreshes every 0.1 s (and on every inotify event). It prints one JSON object: refreshes seen, scan
errors (the dashboard shows them instead of crashing, so they are recorded here), any exception the app
raised, and memory (RSS, live pymalloc blocks) after the warm-up and at the end with the size of every
container the dashboard keeps. tests/reliability/test_dashboard_churn.py runs it shorter.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from typing import Any

from tests.reliability.churn import churning, rerun_in_pid_namespace
from tests.reliability.long_run import rss_bytes

KEYS = ("1", "2", "down", "down", "3", "down", "4", "up", "5", "6", "slash", *"churn", "escape", "2", "slash",
        "escape", "p", "p", "plus", "minus", "question_mark", "escape", "1")


def sizes(app: Any) -> dict[str, int]:
    """Every container the dashboard keeps between refreshes."""
    from ipcmon.ui.widgets.events_view import EventsView
    from ipcmon.ui.widgets.object_view import ObjectView
    from ipcmon.ui.widgets.overview import Overview

    result = {
        "events": len(app.events),
        "event_cells": len(app.query_one(EventsView).timeline._built),
        "event_log": len(app.event_log),
        "log": len(app.feed.log),
        "announced": len(app.feed._announced),
        "last_holders": len(app.feed.last_holders),
        "inotify_backlog": app.feed.inotify_backlog,
    }
    for view in app.query(ObjectView):
        result[f"rows:{view.spec.id}"] = len(view.table._all)
    overview = app.query_one(Overview)
    result["overview_history"] = max(len(history) for history in overview.history.values())
    result["alerts"] = len(overview.alerts)
    return result


def measure(app: Any) -> dict[str, Any]:
    gc.collect()
    return {"rss": rss_bytes(), "blocks": sys.getallocatedblocks(), "sizes": sizes(app)}


async def drive(scans: int, warmup: int, history: int, report: dict[str, Any]) -> None:
    from ipcmon.ui.app import make_app

    app = make_app(None, interval=0.1, history=history, export_dir=tempfile.gettempdir())
    seen = {"scans": 0}
    errors: list[str] = report["scan_errors"]

    def on_snapshot(snapshot: object) -> None:
        if snapshot is not None:
            seen["scans"] += 1

    def on_error(error: str) -> None:
        if error:
            errors.append(error)

    started = time.monotonic()
    async with app.run_test(size=(140, 45)) as pilot:
        app.watch(app, "snapshot", on_snapshot, init=False)
        app.watch(app, "scan_error", on_error, init=False)
        step = 0
        # Walk every key at least once however fast the scans come (on a quiet machine 60 refreshes can
        # take less than two key presses); a UI that stops taking keys runs into the timeout instead.
        while seen["scans"] < scans or step < len(KEYS):
            await pilot.press(KEYS[step % len(KEYS)])
            step += 1
            await pilot.pause(0.05)
            # Measure once every view has been shown (each fills its table on first show) and the warm-up passed.
            if "after_warmup" not in report and seen["scans"] >= warmup and step >= len(KEYS):
                report["after_warmup"] = measure(app)
            if time.monotonic() - started > report["timeout"]:
                errors.append(f"timed out after {report['timeout']}s with {seen['scans']} refreshes")
                break
        if app.paused:
            await pilot.press("p")
        report["at_end"] = measure(app)
        report["keys_pressed"] = step
    report["scans"] = seen["scans"]


def run(scans: int, warmup: int, history: int, timeout: float, concurrency: int) -> dict[str, Any]:
    report: dict[str, Any] = {"scans": 0, "scan_errors": [], "exception": None, "timeout": timeout}
    started = time.monotonic()
    with churning("dash", concurrency) as tally:
        try:
            asyncio.run(drive(scans, warmup, history, report))
        except Exception:
            report["exception"] = traceback.format_exc()
    report.update(tally)
    if "after_warmup" in report and "at_end" in report:
        before, after = report["after_warmup"], report["at_end"]
        report["growth"] = {key: after[key] - before[key] for key in ("rss", "blocks")}
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--scans", type=int, default=2000, help="dashboard refreshes to run through")
    parser.add_argument("--warmup", type=int, default=0, help="refreshes before the first measurement (10%%)")
    parser.add_argument("--history", type=int, default=10_000, help="events kept (the dashboard's default)")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--concurrency", type=int, default=8, help="short-lived children alive at once")
    parser.add_argument("--no-namespace", action="store_true", help="run in the current pid namespace")
    args = parser.parse_args(argv)
    if os.getpid() != 1 and not args.no_namespace:
        return rerun_in_pid_namespace("tests.reliability.dashboard_churn", argv)
    report = run(args.scans, args.warmup or max(args.scans // 10, 1), args.history, args.timeout, args.concurrency)
    sys.stdout.write(json.dumps(report, indent=1) + "\n")
    return 0 if not report["scan_errors"] and report["exception"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
