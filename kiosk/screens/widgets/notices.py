"""What the kiosk tells the patron besides the screen's own words: banners, badges and
the countdown with its "more time" button. Never colour alone: always an icon and words."""

from __future__ import annotations

from kivy.graphics import Color, RoundedRectangle
from kivy.properties import NumericProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.screens.theme import RGBA, Theme
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.context import Context, paint
from kiosk.screens.widgets.text import ICON_INFO, ICON_OK, ICON_WARN, Text, icon


class Banner(BoxLayout):
    """A coloured strip with an icon and words (never colour alone), as tall as its text."""

    def __init__(self, theme: Theme, text: str, kind: str = "warn", font_name: str | None = None,
                 ident: str = "") -> None:
        p = theme.palette
        bg, fg, mark = {
            "warn": (p.warn, p.on_warn, ICON_WARN), "error": (p.error, p.on_error, ICON_WARN),
            "info": (p.info, p.on_info, ICON_INFO), "ok": (p.ok, p.on_ok, ICON_OK),
        }[kind]
        pad_y = theme.gap
        super().__init__(orientation="horizontal", size_hint_y=None, height=theme.font_body * 1.6 + 2 * pad_y,
                         padding=(theme.pad, pad_y), spacing=theme.gap)
        self.ident = ident
        self.kind = kind
        paint(self, bg, radius=theme.gap)
        self.add_widget(Text(theme, text=icon(mark), color=fg, size=theme.font_body * 1.2, size_hint_x=None,
                             width=theme.font_body * 1.6, fixed_font=True))
        kw = {"font_name": font_name} if font_name else {}
        self.message = Text(theme, text=text, color=fg, halign="left", grow=True, size_hint_y=None, **kw)
        self.add_widget(self.message)
        self.message.bind(height=lambda _w, h: setattr(self, "height", max(h, theme.font_body * 1.6) + 2 * pad_y))


class Badge(Text):
    def __init__(self, theme: Theme, text: str, color: RGBA, on_color: RGBA, ident: str = "", **kw) -> None:
        super().__init__(theme, text=text, size=theme.font_small, color=on_color, bold=True,
                         size_hint_x=None, **kw)
        self.ident = ident
        self.padding = (theme.gap, 0)
        self.font_size = self.base_size
        self.texture_update()
        self.width = max(theme.font_small * 3, self.texture_size[0] + theme.pad * 1.5)
        paint(self, color, radius=theme.gap)


class Bar(Widget):
    """A plain progress bar (the countdown): `fraction` of the width is filled."""

    fraction = NumericProperty(1.0)

    def __init__(self, theme: Theme, **kw) -> None:
        super().__init__(**kw)
        p = theme.palette
        with self.canvas:
            Color(*p.secondary)
            self._back = RoundedRectangle(radius=[theme.gap])
            Color(*p.warn)
            self._fill = RoundedRectangle(radius=[theme.gap])
        self.bind(pos=self._draw, size=self._draw, fraction=self._draw)

    def _draw(self, *_) -> None:
        self._back.pos = self.pos
        self._back.size = self.size
        self._fill.pos = self.pos
        self._fill.size = (self.width * max(0.0, min(1.0, self.fraction)), self.height)


class CountdownBar(BoxLayout):
    """'Returning to the start in 12 s' with a bar and a big 'more time' button."""

    def __init__(self, ctx: Context) -> None:
        th = ctx.theme
        # "Returning to the start in 12 s" is about 20 em long: a narrow or large-text
        # screen wraps it, so the bar makes room for two lines at the smallest readable size.
        button = max(th.touch * 2.6, th.width * 0.26)
        label_width = th.width - 2 * th.pad - button - th.gap - 2 * th.pad
        lines = 1 if label_width >= 20 * th.least_size(th.font_body) else 2
        super().__init__(orientation="horizontal", size_hint_y=None,
                         height=max(th.touch, th.line * lines + th.gap * 2.5 + th.touch * 0.12),
                         spacing=th.gap, padding=(0, 0))
        paint(self, th.palette.surface, radius=th.gap)
        self._start: int | None = None
        left = BoxLayout(orientation="vertical", padding=(th.pad, th.gap), spacing=th.gap * 0.5)
        self.label = Text(th, halign="left", size=th.font_body)
        self.bar = Bar(th, size_hint_y=None, height=th.touch * 0.12)
        left.add_widget(self.label)
        left.add_widget(self.bar)
        self.add_widget(left)
        self.button = KButton(th, lambda a, v: ctx.press(a, v), "more_time", kind="warn",
                              size_hint_x=None, width=button)
        self.add_widget(self.button)
        self.seconds: int | None = None

    def render(self, seconds: int | None, t, font: str) -> None:
        self.seconds = seconds
        if seconds is None:
            self._start = None
            return
        if self._start is None or seconds > self._start:
            self._start = max(1, seconds)
        self.label.font_name = font
        self.button.font_name = font
        self.label.text = t.plural("common.time_left", seconds, seconds=seconds)
        self.button.text = t("common.more_time")
        self.bar.fraction = seconds / self._start
