"""Goodbye: a short screen that returns to idle by itself."""

from __future__ import annotations

from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.base import KioskScreen, centred_button, message_column
from kiosk.screens.widgets.text import ICON_OK, Text, icon


class ThankYouScreen(KioskScreen):
    screen = "thank_you"
    language_bar = False

    def build_body(self) -> Widget:
        th = self.ctx.theme
        self.mark = Text(th, size=th.font_huge * 1.6, color=th.palette.ok, fixed_font=True, size_hint_y=1.2)
        self.title = Text(th, size=th.font_huge, bold=True)
        self.detail = Text(th, size=th.font_body, color=th.palette.muted, size_hint_y=0.6)
        self.ok = centred_button(self, "done", kind="primary")
        return message_column(self, self.mark, self.title, self.detail, self.ok)

    def render_body(self, model: dict, t: Translator) -> None:
        self.mark.text = icon(ICON_OK)
        self.title.text = t("thanks.title")
        self.detail.text = t("thanks.body")
        self.ok.text = t("common.ok")
