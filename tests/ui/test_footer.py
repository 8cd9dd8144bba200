"""The key bar is rebuilt only when the keys it shows change (issue 12: every view switch remounted it)."""

from __future__ import annotations

from textual.widgets._footer import FooterKey

from ipcmon.ui.widgets.footer import SteadyFooter
from tests.ui.conftest import canned_app, started


def footer_keys(app: object) -> list[str]:
    return [str(key.description) for key in app.query_one(SteadyFooter).query(FooterKey)]  # type: ignore[attr-defined]


async def test_the_footer_is_rebuilt_only_when_its_keys_change() -> None:
    app = canned_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        await pilot.pause()
        first = app.query_one(SteadyFooter).query(FooterKey).first()
        assert "Sort" in footer_keys(app) and "Signal" in footer_keys(app)

        for key in "345":  # other table views: the same keys, the same widgets
            await pilot.press(key)
            await pilot.pause()
            assert app.query_one(SteadyFooter).query(FooterKey).first() is first, key

        await pilot.press("6")  # the Events timeline has no sort: the bar follows
        await pilot.pause()
        assert "Sort" not in footer_keys(app) and "Signal" in footer_keys(app)
        await pilot.press("2")
        await pilot.pause()
        assert "Sort" in footer_keys(app)


async def test_the_read_only_footer_still_leaves_out_the_actions() -> None:
    app = canned_app(read_only=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot, app)
        for key in "2346":
            await pilot.press(key)
            await pilot.pause()
            keys = footer_keys(app)
            assert "Signal" not in keys and "Remove" not in keys and "Export" in keys, (key, keys)
