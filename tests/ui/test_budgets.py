"""Budgets on the dashboard (issue 14, section 7): the header shows the shm mount's fill, the Overview's Budgets
card sums the budgets up (or says they were not read), a mount past its threshold is one of the alerts, and Enter
on it says where budgets are listed. Canned Capacity records (tests/ui/canned.py): the collector is tested apart."""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual.widgets import Static

from ipcmon.ui.widgets.header import StatusHeader
from ipcmon.ui.widgets.overview import MetricCard
from ipcmon.ui.widgets.tables import ObjectTable
from tests.ui import canned
from tests.ui.conftest import canned_app, record_notifications, started, wait_for


def _header(app: object) -> Text:
    return app.query_one(StatusHeader).render()  # type: ignore[attr-defined, no-any-return]


def _shm_style(header: Text) -> str:
    start = header.plain.index("/dev/shm")
    return " ".join(str(span.style) for span in header.spans if span.start <= start < span.end)


def _card(app: object) -> str:
    card = app.query_one("#card-budgets", MetricCard)  # type: ignore[attr-defined]
    shown = card.query_one(".summary", Static).render()
    return shown.plain if isinstance(shown, Text) else str(shown)


async def test_header_shows_the_shm_mounts_fill_coloured_by_its_level() -> None:
    capacity = canned.canned_capacity()
    full = replace(capacity, shm_mounts=(replace(capacity.shm_mounts[0], used=64 << 20, available=0),))
    calm = replace(capacity, shm_mounts=(replace(capacity.shm_mounts[0], used=8 << 20, available=56 << 20),))
    for given, words, style in ((capacity, "/dev/shm 91% of 64M", "yellow"), (full, "/dev/shm 100% of 64M", "bold red"),
                                (calm, "/dev/shm 12% of 64M", "")):
        app = canned_app(replace(canned.canned_snapshot(), capacity=given))
        async with app.run_test(size=(120, 40)) as pilot:
            await started(pilot, app)
            header = _header(app)
            assert words in header.plain, header.plain
            assert _shm_style(header) == style, (words, header.spans)


async def test_header_keeps_the_fill_at_80_columns_and_says_nothing_when_not_read() -> None:
    app = canned_app(read_only=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        header = _header(app)
        assert "/dev/shm 91%" in header.plain and "read-only" in header.plain and "of 64M" not in header.plain
    app = canned_app(replace(canned.canned_snapshot(), capacity=None))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        assert "/dev/shm" not in _header(app).plain  # the Budgets card says why (below)


async def test_budgets_card_sums_up_or_says_not_read() -> None:
    app = canned_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await wait_for(pilot, lambda: _card(app), "the Budgets card")
        assert _card(app) == ("/dev/shm 91% of 64M, 5.7M free\n"
                              "0 of 7 budgets past 90%; fullest: RLIMIT_MSGQUEUE uid 0 10%")
        card = app.query_one("#card-budgets", MetricCard)
        await pilot.pause()
        assert card.region.width > app.query_one("#card-shm", MetricCard).region.width  # a row of its own
    app = canned_app(replace(canned.canned_snapshot(), capacity=None))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await wait_for(pilot, lambda: _card(app), "the Budgets card")
        assert _card(app).strip() == "budgets not read"


async def test_a_nearly_full_mount_is_an_alert_and_enter_says_where_budgets_are() -> None:
    app = canned_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        alerts = app.query_one("#alerts", ObjectTable)
        await wait_for(pilot, lambda: "shm-mount:23:nearly full" in alerts.shown_keys, "the mount's alert")
        messages = record_notifications(app)
        alerts.focus()
        alerts.select_key("shm-mount:23:nearly full")
        await pilot.press("enter")
        await wait_for(pilot, lambda: messages, "a notification")
        assert messages == ["A budget has no row to jump to: `ipcmon limits` lists every budget with its use and "
                            "headroom."]
        assert app.active_view == "overview"
