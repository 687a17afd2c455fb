"""Sign in with the library card's barcode instead of the My Number Card."""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets import BarcodeArt, KButton, Text


class LibraryCardScreen(KioskScreen):
    screen = "library_card"

    def build_body(self) -> Widget:
        ctx, th = self.ctx, self.ctx.theme
        body = BoxLayout(orientation="vertical", spacing=th.gap)
        self.title = Text(th, size=th.font_title, bold=True, size_hint_y=0.8)
        self.art = BarcodeArt(th)
        self.detail = Text(th, size=th.font_body, color=th.palette.muted, size_hint_y=0.5)
        self.cancel = KButton(th, lambda a, v: ctx.press(a, v), "cancel", size_hint=(None, None),
                              width=max(th.touch * 3, th.width * 0.3), height=th.touch,
                              pos_hint={"center_x": 0.5})
        for w in (self.title, self.art, self.detail, self.cancel):
            body.add_widget(w)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        self.title.text = t("library_card.title")
        self.detail.text = t("library_card.body")
        self.cancel.text = t("common.cancel")
