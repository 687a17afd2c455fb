"""What a screen draws with: the view's Context and painted backgrounds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from kivy.graphics import Color, Rectangle, RoundedRectangle
from kivy.uix.widget import Widget

from kiosk.core.events import Press
from kiosk.screens.theme import RGBA, Theme


@dataclass
class Context:
    """What every screen needs to draw itself; the view owns and replaces it."""

    theme: Theme
    post: Callable[[object], None]
    library_name: str = ""
    languages: tuple[str, ...] = ("ja",)
    default_language: str = "ja"
    demo: bool = False
    help_text: str = ""
    scan_picture: str = ""          # this site's photo of its scanner ("" = the drawing)
    toggle: Callable[[str], None] = lambda what: None     # view-local: "large_text", "high_contrast"

    def press(self, action: str, value: str | None = None) -> None:
        self.post(Press(action, value))


def paint(widget: Widget, color: RGBA, radius: float = 0) -> Color:
    """A background in `color` that follows the widget; returns the Color to recolour."""
    with widget.canvas.before:
        c = Color(*color)
        rect = RoundedRectangle(radius=[radius]) if radius else Rectangle()

    def follow(*_):
        rect.pos = widget.pos
        rect.size = widget.size

    widget.bind(pos=follow, size=follow)
    follow()
    return c
