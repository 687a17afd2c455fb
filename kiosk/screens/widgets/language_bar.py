"""The language buttons: each language written in its own language and font."""

from __future__ import annotations

from kivy.uix.gridlayout import GridLayout

from kiosk.i18n import language_name
from kiosk.screens import fonts
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.context import Context
from kiosk.screens.widgets.text import ICON_OK, escape, icon


class LanguageBar(GridLayout):
    """One button per language, each written in its own language and font; the current
    one is marked with ✓ as well as colour."""

    def __init__(self, ctx: Context, compact: bool = False, cols: int | None = None, **kw) -> None:
        th = ctx.theme
        n = len(ctx.languages)
        cols = cols or n
        rows = -(-n // cols)
        height = th.small_touch if compact else th.action
        kw.setdefault("size_hint_y", None)
        super().__init__(cols=cols, height=height * rows + th.gap * (rows - 1), spacing=th.gap, **kw)
        self.ctx = ctx
        self.compact = compact
        self.buttons: dict[str, KButton] = {}
        self._current: str | None = None
        for lang in ctx.languages:
            b = KButton(th, lambda a, v: ctx.press(a, v), "language", lang,
                        size=th.font_small if compact else th.font_body, fixed_font=True,
                        font_name=fonts.registered(lang))
            b.selected = False
            if compact:         # narrow header buttons: each language name in full
                b.padding = (th.gap * 0.3, th.gap * 0.2)
            self.buttons[lang] = b
            self.add_widget(b)

    def render(self, current: str) -> None:
        if current == self._current:
            return
        self._current = current
        th = self.ctx.theme
        for lang, b in self.buttons.items():
            name = language_name(lang)
            if self.compact:
                name = _short_name(lang, name)
            chosen = lang == current
            b._bg = th.palette.selected if chosen else th.palette.secondary
            b.background_color = b._bg
            b.color = th.palette.on_selected if chosen else th.palette.on_secondary
            if self.compact:
                # The narrow header buttons have no room for a tick beside the name: the
                # current one is bold and underlined (a shape as well as the colour).
                b.text = f"[b][u]{escape(name)}[/u][/b]" if chosen else escape(name)
            else:
                b.text = (icon(ICON_OK) + " " if chosen else "") + escape(name)
            b.selected = chosen


def _short_name(lang: str, name: str) -> str:
    """Header buttons are narrow: 'English' -> 'EN', but 日本語/中文/한국어 stay readable."""
    short = {"en": "EN", "pt-BR": "PT", "vi": "VI", "zh-Hans": "中文"}
    return short.get(lang, name)
