"""The key bar relabels its keys in place (issue 12: every view switch remounted it, a frame later)."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets._footer import FooterKey

from ipcmon.ui.app import IpcmonApp
from ipcmon.ui.widgets.footer import SteadyFooter
from tests.ui.conftest import canned_app, started


def footer_keys(app: IpcmonApp) -> list[str]:
    return [str(key.description) for key in app.query_one(SteadyFooter).shown_keys]


def textual_keys(app: IpcmonApp) -> list[str]:
    """What Textual's own Footer would show: each action's first shown binding, then the command palette's."""
    first: dict[str, str] = {}
    for _, binding, _, _ in app.screen.active_bindings.values():
        if binding.show:
            first.setdefault(binding.action, binding.description)
    palette = app.screen.active_bindings.get(app.COMMAND_PALETTE_BINDING)
    return [*first.values(), *([palette[1].description] if palette is not None else [])]


async def _every_view_once(pilot: Pilot[None], app: IpcmonApp) -> None:
    """Started, then every view shown once: the bar has every key widget it will need."""
    await started(pilot, app)
    for key in "1234567":
        await pilot.press(key)
        await pilot.pause()


async def test_a_view_switch_relabels_the_footer_keys_without_mounting_any() -> None:
    app = canned_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await _every_view_once(pilot, app)
        footer = app.query_one(SteadyFooter)
        widgets = set(footer.query_children(FooterKey))  # a recompose would replace them all

        for key in "1234562716":
            await pilot.press(key)
            await pilot.pause()
            assert footer_keys(app) == textual_keys(app), key
            assert set(footer.query_children(FooterKey)) == widgets, key
        await pilot.press("6")  # the Events timeline has no sort: the bar follows
        await pilot.pause()
        assert "Sort" not in footer_keys(app) and "Signal" in footer_keys(app)
        await pilot.press("2")
        await pilot.pause()
        assert "Sort" in footer_keys(app)


async def test_the_keys_are_relabelled_in_the_same_handler_as_the_switch() -> None:
    """The new view and its keys are drawn in one frame: the bar is right as soon as the focus has moved."""
    app = canned_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await _every_view_once(pilot, app)
        app.show_view("shm")
        assert footer_keys(app) == textual_keys(app) and "Sort" in footer_keys(app)


async def test_the_read_only_footer_still_leaves_out_the_actions() -> None:
    app = canned_app(read_only=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot, app)
        for key in "2346":
            await pilot.press(key)
            await pilot.pause()
            keys = footer_keys(app)
            assert "Signal" not in keys and "Remove" not in keys and "Export" in keys, (key, keys)
            assert keys == textual_keys(app), key


async def test_a_recompose_leaves_no_watcher_of_a_removed_key() -> None:
    """Textual's recompose (the first bar, a view with more keys) data-binds each new key to Footer.compact; the
    removed keys' watchers are dropped after it, not by a query at every scan (textual#6666, issue 12)."""
    app = canned_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await started(pilot, app)
        footer = app.query_one(SteadyFooter)
        for _ in range(4):
            footer.call_later(footer.recompose)  # in the footer's context, as Footer.bindings_changed does
            await pilot.pause()
        watchers = getattr(footer, "__watchers", {}).get("compact", [])
        assert 0 < len(watchers) <= len(footer.query_children(FooterKey))


async def test_the_demos_footer_leaves_out_the_row_keys_and_fits_at_120_columns() -> None:
    # In the Demos view / k d c only said there was nothing to act on, and the bar was cut at "+ Fas" (issue 12).
    app = canned_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("7")
        await pilot.pause()
        keys = footer_keys(app)
        assert keys == textual_keys(app)
        assert "Show objects" in keys and "Slower" in keys, keys
        for gone in ("Filter", "Signal", "Remove", "Copy path"):
            assert gone not in keys, keys
        footer = app.query_one(SteadyFooter)
        shown = footer.shown_keys
        palette = [key for key in shown if key.has_class("-command-palette")]
        right = palette[0].region.x if palette else footer.region.right
        assert all(key.region.right <= right for key in shown if key not in palette), [
            (str(key.description), key.region) for key in shown]
        await pilot.press("2")  # back in a table view: they are there again
        await pilot.pause()
        assert {"Filter", "Signal", "Remove", "Copy path"} <= set(footer_keys(app))


async def test_the_overview_offers_no_filter_and_slash_says_where_filtering_works() -> None:
    # Seen in review: the Overview's footer offered "/ Filter", which it refused; the letters typed next ran as keys.
    app = canned_app()
    said: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        app.notify = lambda message, **_: said.append(str(message))  # type: ignore[method-assign]
        await pilot.press("1")
        await pilot.pause()
        assert "Filter" not in footer_keys(app), footer_keys(app)
        await pilot.press("slash")
        assert said == ["Filtering works in the table views (2–6)."]
        await pilot.press("2")
        await pilot.pause()
        assert "Filter" in footer_keys(app)
