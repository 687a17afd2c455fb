"""The kiosk's one button: big, flat, icon and words.

Buttons post `kiosk.core.events.Press` and carry an `ident` ("digit:1", "more_time",
"language:ko") so tests press the real widget. Nothing here knows about the session
beyond the press names.
"""

from __future__ import annotations

from typing import Callable

from kivy.properties import StringProperty
from kivy.uix.button import Button

from kiosk.screens.theme import Theme
from kiosk.screens.widgets.text import FitMixin


class KButton(FitMixin, Button):
    """A big flat button: solid colour, icon + words, darker while pressed."""

    ident = StringProperty("")
    action = StringProperty("")
    value = StringProperty(allownone=True)

    def __init__(self, theme: Theme, post: Callable[[str, str | None], None] | None = None,
                 action: str = "", value: str | None = None, kind: str = "secondary",
                 size: float | None = None, **kw) -> None:
        kw.setdefault("markup", True)
        super().__init__(background_normal="", background_down="", halign="center", valign="middle", **kw)
        p = theme.palette
        bg, fg = {
            "primary": (p.primary, p.on_primary), "secondary": (p.secondary, p.on_secondary),
            "key": (p.key, p.on_key), "warn": (p.warn, p.on_warn), "ok": (p.ok, p.on_ok),
            "selected": (p.selected, p.on_selected), "error": (p.error, p.on_error),
        }[kind]
        self._bg = bg
        self.background_color = bg
        self.color = fg
        self.padding = (theme.gap, theme.gap * 0.5)
        self.prefer_single = True
        self.base_size = size or theme.font_body
        self.action = action
        self.value = value
        self.ident = action if value is None else f"{action}:{value}"
        self._post = post
        self.min_state_time = 0.05
        self.least_for = theme.least_size
        self.single_floor = theme.single_floor
        self._init_fit()

    def on_state(self, _inst, state: str) -> None:
        if state == "down":
            r, g, b, a = self._bg
            self.background_color = (r * 0.75, g * 0.75, b * 0.75, a)
        else:
            self.background_color = self._bg

    def on_release(self) -> None:
        if self._post is not None and self.action:
            self._post(self.action, self.value)
