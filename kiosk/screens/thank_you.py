"""Goodbye: a short screen that returns to idle by itself."""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets import ICON_OK, KButton, Text, icon


class ThankYouScreen(KioskScreen):
    screen = "thank_you"
    language_bar = False

    def build_body(self) -> Widget:
        ctx, th = self.ctx, self.ctx.theme
        body = BoxLayout(orientation="vertical", spacing=th.gap)
        self.mark = Text(th, size=th.font_huge * 1.6, color=th.palette.ok, fixed_font=True, size_hint_y=1.2)
        self.title = Text(th, size=th.font_huge, bold=True)
        self.detail = Text(th, size=th.font_body, color=th.palette.muted, size_hint_y=0.6)
        self.ok = KButton(th, lambda a, v: ctx.press(a, v), "done", kind="primary", size_hint=(None, None),
                          width=max(th.touch * 3, th.width * 0.3), height=th.touch, pos_hint={"center_x": 0.5})
        for w in (self.mark, self.title, self.detail, self.ok):
            body.add_widget(w)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        self.mark.text = icon(ICON_OK)
        self.title.text = t("thanks.title")
        self.detail.text = t("thanks.body")
        self.ok.text = t("common.ok")
