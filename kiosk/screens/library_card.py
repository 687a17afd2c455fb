"""Sign in with the library card's barcode instead of the My Number Card."""

from __future__ import annotations

from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.base import KioskScreen, centred_button, message_column
from kiosk.screens.widgets.drawings import BarcodeArt
from kiosk.screens.widgets.text import Text


class LibraryCardScreen(KioskScreen):
    screen = "library_card"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        self.title = Text(th, size=th.font_title, bold=True, size_hint_y=0.8)
        self.art = BarcodeArt(th)
        self.detail = Text(th, size=th.font_body, color=th.palette.muted, size_hint_y=0.5)
        self.cancel = centred_button(self, "cancel")
        return message_column(self, self.title, self.art, self.detail, self.cancel)

    def render_body(self, model: dict, t: Translator) -> None:
        self.title.text = t("library_card.title")
        self.detail.text = t("library_card.body")
        self.cancel.text = t("common.cancel")
