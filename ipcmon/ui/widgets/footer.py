"""The key bar: Textual's Footer, rebuilt only when the keys it shows change."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer

KeySignature = tuple[tuple[str, str, str, bool, str], ...]


class SteadyFooter(Footer):
    """A Footer that recomposes only when the keys it would show differ from the ones it shows.

    Textual's Footer recomposes on every bindings change, and focus moving is one: each view switch mounted a
    dozen FooterKey widgets and laid the screen out again for the very same keys (issue 12, key latency).
    """

    _shown: KeySignature | None = None

    def bindings_changed(self, screen: Screen[object]) -> None:
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            shown = key_signature(screen)
            if shown == self._shown:
                self._bindings_ready = True
                return
            self._shown = shown
        super().bindings_changed(screen)


def key_signature(screen: Screen[object]) -> KeySignature:
    """What the Footer draws from the screen's active bindings: key, action, label, enabled, tooltip."""
    return tuple(
        (binding.key, binding.action, binding.description, enabled, tooltip)
        for (_, binding, enabled, tooltip) in screen.active_bindings.values()
        if binding.show
    )
