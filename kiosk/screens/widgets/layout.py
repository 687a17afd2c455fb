"""Containers and whole-tree helpers: slots, the modal layer, laying out at once,
and the walks the language switch and the layout and privacy tests use."""

from __future__ import annotations

from typing import Iterable

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.layout import Layout
from kivy.uix.widget import Widget

from kiosk.screens.widgets.text import FitMixin


class Slot(BoxLayout):
    """Holds at most one widget; empty slots take no room."""

    def __init__(self, **kw) -> None:
        kw.setdefault("size_hint_y", None)
        super().__init__(**kw)
        self.height = 0

    def set(self, widget: Widget | None, height: float | None = None) -> None:
        self.clear_widgets()
        if widget is None:
            self.height = 0
            return
        self.add_widget(widget)
        self.height = height if height is not None else widget.height


class ModalLayer(FloatLayout):
    """An overlay that keeps touches away from the screen under it."""

    def on_touch_down(self, touch) -> bool:
        super().on_touch_down(touch)
        return True

    def on_touch_move(self, touch) -> bool:
        super().on_touch_move(touch)
        return True

    def on_touch_up(self, touch) -> bool:
        super().on_touch_up(touch)
        return True


def layout_now(root: Widget) -> None:
    """Lay the tree out top-down at once rather than over several rounds of layout
    triggers, so that each text is fitted once, at its final size, not at every size
    its box passes through (fitting is most of the cost of building a screen)."""
    stack = [root]
    while stack:
        w = stack.pop()
        if isinstance(w, Layout):
            w.do_layout()
        stack.extend(w.children)


def walk_texts(root: Widget) -> Iterable[str]:
    """Every text a widget tree shows (privacy tests and the language switch use it)."""
    for w in root.walk(restrict=True):
        text = getattr(w, "text", None)
        if isinstance(text, str) and text:
            yield text


def set_font(root: Widget, font: str) -> None:
    """Draw every text under `root` in `font`, except those that keep their own."""
    for w in root.walk(restrict=True):
        if isinstance(w, FitMixin) and not w.fixed_font and w.font_name != font:
            w.font_name = font


def layout_overflow(root: Widget, window_size: tuple[float, float]) -> list[str]:
    """Widgets drawn outside the window or texts that do not fit their box.

    Used by the layout tests for every panel size; children of a scroll view are
    clipped by it, so only the scroll view itself is checked.
    """
    from kivy.uix.scrollview import ScrollView

    problems: list[str] = []
    W, H = window_size

    def name(w: Widget) -> str:
        return f"{type(w).__name__}({getattr(w, 'ident', '') or getattr(w, 'text', '')[:30]!r})"

    def visit(w: Widget, box: tuple[float, float, float, float]) -> None:
        if w.opacity == 0:
            return
        x, y = w.to_window(w.x, w.y)
        if w.width > 0 and w.height > 0:
            bx, by, bw, bh = box
            if x < bx - 1 or y < by - 1 or x + w.width > bx + bw + 1 or y + w.height > by + bh + 1:
                problems.append(f"{name(w)} at {x:.0f},{y:.0f} {w.width:.0f}x{w.height:.0f}"
                                f" outside its container {bx:.0f},{by:.0f} {bw:.0f}x{bh:.0f}")
            if isinstance(w, FitMixin) and w.text and w.overflowing:
                problems.append(f"text does not fit: {w.text[:40]!r} {w.texture_size} in {w.size}")
        if isinstance(w, ScrollView):
            return
        inner = (x, y, w.width, w.height) if w.width > 0 and w.height > 0 else box
        for c in w.children:
            visit(c, inner)

    visit(root, (0, 0, W, H))
    return problems
