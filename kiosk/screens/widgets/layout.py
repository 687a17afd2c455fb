"""Containers and whole-tree helpers: slots, the modal layer, laying out at once,
and the walks the language switch and the layout and privacy tests use."""

from __future__ import annotations

from typing import Iterable

from kivy.properties import NumericProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.layout import Layout
from kivy.uix.scrollview import ScrollView
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


class TextColumn(BoxLayout):
    """A vertical stack in which each text gets the height it needs at its full size, not
    a fixed share: a two-line hint gets two lines' room and an empty line none. Room left
    over goes to the stretchy parts (drawings) or is shared by the texts; when the column
    is too short every text gives up the same fraction and shrinks alike (never below the
    theme's readable minimum)."""

    need_changed = NumericProperty(0)       # bumped when a text in it (or in a nested column) changes

    def __init__(self, **kw) -> None:
        kw.setdefault("orientation", "vertical")
        super().__init__(**kw)
        self._texts: list[Widget] = []

    def _changed(self, *_) -> None:
        self.need_changed += 1
        self._trigger_layout()

    def poke(self) -> None:
        """A fixed-height part of it changed height (a strip of notices): measure again."""
        self._changed()

    def add_widget(self, widget: Widget, *args, **kw) -> None:
        if isinstance(widget, (FitMixin, TextColumn, TextRow)) and widget.size_hint_y is not None and widget not in self._texts:
            self._texts.append(widget)
            widget.size_hint_y = None
            for prop in ("text", "font_name", "base_size", "bold") if isinstance(widget, FitMixin) else ("need_changed",):
                widget.fbind(prop, self._changed)
        super().add_widget(widget, *args, **kw)
        self._changed()

    def remove_widget(self, widget: Widget, *args, **kw) -> None:
        if widget in self._texts:
            self._texts.remove(widget)
            widget.size_hint_y = 1
            for prop in ("text", "font_name", "base_size", "bold") if isinstance(widget, FitMixin) else ("need_changed",):
                widget.funbind(prop, self._changed)
        super().remove_widget(widget, *args, **kw)
        self._changed()

    def _measure_need(self, width: float, least: bool) -> float:
        pl, pt, pr, pb = self.padding
        inner = width - pl - pr
        total = pt + pb + self.spacing * max(0, len(self.children) - 1)
        for c in self.children:
            if c in self._texts:
                total += c.least_height(inner) if least else c.natural_height(inner)
            elif c.size_hint_y is None:
                total += c.height
            else:
                total += getattr(c, "least_room", 0.0)
        return total

    def natural_height(self, width: float) -> float:
        """Its height with every text at full size (a column nested in a column)."""
        return self._measure_need(width, least=False)

    def least_height(self, width: float) -> float:
        return self._measure_need(width, least=True)

    def do_layout(self, *args) -> None:
        texts = [c for c in self.children if c in self._texts]
        if texts and self.height > 1 and self.width > 4:
            pl, pt, pr, pb = self.padding
            inner = self.width - pl - pr
            fixed = sum(c.height for c in self.children if c.size_hint_y is None and c not in texts)
            # Stretchy parts (a book list) keep the least room they declare.
            fixed += sum(getattr(c, "least_room", 0.0) for c in self.children if c.size_hint_y is not None
                         and c not in texts)
            room = self.height - fixed - pt - pb - self.spacing * (len(self.children) - 1)
            need = [c.natural_height(inner) for c in texts]
            total = sum(need)
            flexible = any(c.size_hint_y is not None for c in self.children)
            if total > room:
                # Every text keeps at least its height at the smallest readable size; the
                # room above that is shared in proportion to what each would like more.
                least = [c.least_height(inner) for c in texts]
                spare = room - sum(least)
                want = total - sum(least)
                share = max(0.0, min(1.0, spare / want)) if want > 0 else 0.0
                heights = [lo + (n - lo) * share for lo, n in zip(least, need)]
            elif flexible:
                heights = need
            else:
                extra = (room - total) / len(texts)
                heights = [n + extra for n in need]
            for c, h in zip(texts, heights):
                c.height = max(0.0, h)
        super().do_layout(*args)


class TextRow(BoxLayout):
    """Parts side by side (a drawing beside a column of words) inside a TextColumn: as
    tall as its tallest text column needs in its share of the width."""

    need_changed = NumericProperty(0)

    def __init__(self, **kw) -> None:
        kw.setdefault("orientation", "horizontal")
        super().__init__(**kw)

    def add_widget(self, widget: Widget, *args, **kw) -> None:
        if isinstance(widget, (TextColumn, TextRow)):
            widget.fbind("need_changed", self._changed)
        super().add_widget(widget, *args, **kw)
        self._changed()

    def _changed(self, *_) -> None:
        self.need_changed += 1

    def _need(self, width: float, least: bool) -> float:
        pl, pt, pr, pb = self.padding
        inner = width - pl - pr - self.spacing * max(0, len(self.children) - 1)
        fixed = sum(c.width for c in self.children if c.size_hint_x is None)
        hints = sum(c.size_hint_x for c in self.children if c.size_hint_x is not None) or 1.0
        need = 0.0
        for c in self.children:
            if isinstance(c, (TextColumn, TextRow)):
                w = c.width if c.size_hint_x is None else (inner - fixed) * c.size_hint_x / hints
                need = max(need, c.least_height(w) if least else c.natural_height(w))
        return need + pt + pb

    def natural_height(self, width: float) -> float:
        return self._need(width, least=False)

    def least_height(self, width: float) -> float:
        return self._need(width, least=True)


class ScrollFit(ScrollView):
    """A TextColumn that scrolls rather than squeezing its words below a readable size or
    spilling out of its box: it is given the room it has, or the least it needs when that
    is more (large text on a small panel), and only then does it scroll. Touches pass
    straight through while it does not scroll."""

    def __init__(self, column: TextColumn, **kw) -> None:
        kw.setdefault("do_scroll_x", False)
        kw.setdefault("bar_width", 6)
        kw.setdefault("scroll_type", ["bars", "content"])
        kw.setdefault("size_hint_x", column.size_hint_x)
        if column.size_hint_x is None:
            kw.setdefault("width", column.width)
        super().__init__(**kw)
        self.column = column
        column.size_hint = (1, None)
        self.add_widget(column)
        self.fbind("size", self._fit)
        column.fbind("need_changed", self._fit)
        self._fit()

    def _fit(self, *_) -> None:
        if self.width <= 4:
            return
        # Sized here at once, not on Kivy's next frame: layout_now lays the column out
        # right after, and the first screen is drawn (and touched) before any frame.
        self.column.width = self.width
        need = self.column.least_height(self.width)
        scrolls = need > self.height + 0.5
        self.column.height = need if scrolls else self.height
        self.do_scroll_y = scrolls
        if not scrolls:
            self.scroll_y = 1


class WordsAboveList(BoxLayout):
    """Portrait body of a screen with a book list: the words take the room they need, but
    never so much that the list under them has less than its least room (a whole row);
    past that the words scroll on their own and the list stays in view."""

    def __init__(self, words: TextColumn, books: Widget, **kw) -> None:
        kw.setdefault("orientation", "vertical")
        super().__init__(**kw)
        self.words, self.books = words, books
        self.scroll = ScrollFit(words, size_hint_y=None, height=0)
        self.add_widget(self.scroll)
        self.add_widget(books)
        self.fbind("size", self._fit)
        words.fbind("need_changed", self._fit)

    def _fit(self, *_) -> None:
        if self.width <= 4:
            return
        least = getattr(self.books, "least_room", 0.0)
        room = self.height - self.spacing - self.padding[1] - self.padding[3] - least
        self.scroll.height = max(0.0, min(self.words.natural_height(self.width), room))


def scroll_fit(widget: Widget) -> Widget:
    """`widget` in a ScrollFit if it is a TextColumn (see ScrollFit), else itself."""
    return ScrollFit(widget) if isinstance(widget, TextColumn) else widget


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
