"""The key bar: Textual's Footer, whose keys are relabelled in place when the keys it shows change."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.dom import DOMNode
from textual.geometry import Size
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

KeySignature = tuple[tuple[str, str, str, bool, str], ...]


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One key as Textual's Footer.compose would show it."""

    key: str
    display: str
    description: str
    action: str
    enabled: bool
    tooltip: str


class SteadyFooter(Footer):
    """A Footer that keeps its key widgets and relabels them when the keys it shows change.

    Textual's Footer recomposes on every bindings change, and focus moving is one: each view switch mounted a
    dozen FooterKey widgets (styled, data-bound, laid out) and drew the screen once more a frame later, the
    largest part of a view switch after the view itself (issue 12, key latency). Here the keys are put in the
    widgets already mounted, as the focus moves, so the new view and its keys are drawn in one frame. Widgets left
    over when a view has fewer keys are hidden and reused later. Textual's recompose still builds the bar the first
    time, when a view has more keys than any before it, and for binding groups (drawn as KeyGroups; ipcmon has
    none).
    """

    _shown: KeySignature | None = None

    def on_mount(self) -> None:
        # Footer.on_mount (run after this one) subscribes to the screen's bindings signal deferred: the keys would be
        # relabelled after the frame that shows the new view. Subscribed immediately instead, they are relabelled as
        # the focus moves, before that frame.
        self.call_next(self._subscribe_immediately)

    async def recompose(self) -> None:
        await super().recompose()
        # After Textual's recompose only (the keys removed are closed by then), not at every scan: the DOM-wide
        # query that found this Footer every second was most of an idle scan's cost on the UI thread (issue 12).
        drop_closed_watchers(self)

    def _subscribe_immediately(self) -> None:
        signal = self.screen.bindings_updated_signal
        signal.unsubscribe(self)
        signal.subscribe(self, self.bindings_changed, immediate=True)

    def bindings_changed(self, screen: Screen[object]) -> None:
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            shown = key_signature(screen)
            if shown == self._shown:
                self._bindings_ready = True
                return
            first = self._shown is None
            self._shown = shown
            if not first and self._relabel(screen):
                self._bindings_ready = True
                return
        # Called from the handler that moved the focus: Textual's recompose (its keys are data-bound to this Footer)
        # must run in this widget's own context.
        self.call_next(super().bindings_changed, screen)

    @property
    def shown_keys(self) -> list[FooterKey]:
        """The key widgets on screen, in order (the command palette's last, when shown)."""
        return [key for key in self.query_children(FooterKey) if key.display]

    def _relabel(self, screen: Screen[object]) -> bool:
        """Show the screen's keys in the key widgets already mounted; False when only a recompose can (more keys
        than widgets, groups, the palette key coming or going)."""
        specs = footer_specs(screen, palette=self.show_command_palette)
        if specs is None:
            return False
        children = list(self.query_children(FooterKey))
        palette = [key for key in children if key.has_class("-command-palette")]
        pool = [key for key in children if not key.has_class("-command-palette")]
        wanted, palette_spec = specs
        if (palette_spec is not None) != bool(palette):
            return False  # the palette key came or went (never in ipcmon): as Textual does
        if len(wanted) > len(pool):
            return False  # more keys than ever shown: mounted by Textual's recompose, kept after it
        for widget, spec in zip(pool, wanted, strict=False):
            _relabel_key(widget, spec)
            widget.display = True
        for widget in pool[len(wanted):]:
            widget.display = False
        if palette and palette_spec is not None:
            _relabel_key(palette[0], palette_spec)
        return True


def drop_closed_watchers(node: DOMNode) -> None:
    """Forget the node's watchers whose widget is gone.

    Each FooterKey of Textual's compose is data-bound to Footer.compact. Textual drops a closed widget's watcher
    only when the watched value changes, and compact never does, so every key ever shown stayed in memory, ~20
    widgets a recompose (textual#6666).
    """
    for watchers in getattr(node, "__watchers", {}).values():
        watchers[:] = [(owner, callback) for owner, callback in watchers
                       if not (getattr(owner, "_closing", False) or getattr(owner, "_closed", False))]


def _relabel_key(widget: FooterKey, spec: KeySpec) -> None:
    """Put a key in a FooterKey widget (its width follows at the next layout)."""
    if (widget.key, widget.key_display, widget.description, widget.action, not widget._disabled,
            str(widget.tooltip or "")) == (spec.key, spec.display, spec.description, spec.action, spec.enabled,
                                           spec.tooltip):
        return
    widget.key = spec.key
    widget.key_display = spec.display
    widget.description = spec.description
    widget.action = spec.action
    widget._disabled = not spec.enabled
    widget.set_class(not spec.enabled, "-disabled")
    widget.tooltip = spec.tooltip or None
    widget.refresh(layout=True)
    # The layout gives the key the width of its new label, and Textual then sets its virtual size to that width with a
    # layout of its own: the whole screen laid out and drawn again a frame after the view switch (issue 12, key
    # latency). Set now, to the size that layout gives it (its label, one line), the second layout has nothing to do.
    label = widget.render()
    widget.set_reactive(Widget.virtual_size, Size(label.cell_len + widget.styles.gutter.width, 1))


def footer_specs(screen: Screen[object], *, palette: bool = True) -> tuple[list[KeySpec], KeySpec | None] | None:
    """The keys Textual's Footer.compose shows for the screen's active bindings, in order, and the command palette's
    key (None: not shown); None when a binding group would be shown (drawn as a KeyGroup, not a row of keys)."""
    app = screen.app
    active = screen.active_bindings
    first: dict[str, tuple[Binding, bool, str]] = {}
    groups: dict[object, int] = {}
    for _, binding, enabled, tooltip in active.values():
        if binding.show and binding.action not in first:
            first[binding.action] = (binding, enabled, tooltip)
            if binding.group is not None:
                groups[binding.group] = groups.get(binding.group, 0) + 1
    if any(count > 1 for count in groups.values()):
        return None
    keys = [KeySpec(binding.key, app.get_key_display(binding), binding.description, binding.action, enabled, tooltip)
            for binding, enabled, tooltip in first.values()]
    palette_key = None
    if palette and app.ENABLE_COMMAND_PALETTE:
        found = active.get(app.COMMAND_PALETTE_BINDING)
        if found is not None:
            _, binding, enabled, _ = found
            palette_key = KeySpec(binding.key, app.get_key_display(binding), binding.description, binding.action,
                                  enabled, binding.tooltip or binding.description)
    return keys, palette_key


def key_signature(screen: Screen[object]) -> KeySignature:
    """What the Footer draws from the screen's active bindings: key, action, label, enabled, tooltip."""
    return tuple(
        (binding.key, binding.action, binding.description, enabled, tooltip)
        for (_, binding, enabled, tooltip) in screen.active_bindings.values()
        if binding.show
    )
