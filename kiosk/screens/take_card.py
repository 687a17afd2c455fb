"""Take your card back: the card is no longer needed once the patron is known.

Forgotten cards are the most common self-check complaint, so the card is asked back
before the books are scanned; the picture shows it leaving the reader and the
controller beeps.
"""

from __future__ import annotations

from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.base import KioskScreen, centred_button, message_column
from kiosk.screens.widgets.drawings import CardArt
from kiosk.screens.widgets.text import Text


class TakeCardScreen(KioskScreen):
    screen = "take_card"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        self.title = Text(th, size=th.font_huge if not th.portrait else th.font_title * 1.2, bold=True,
                          size_hint_y=0.7)
        self.art = CardArt(th, "up")
        self.detail = Text(th, size=th.font_body, color=th.palette.muted, size_hint_y=0.4)
        self.cancel = centred_button(self, "cancel")
        return message_column(self, self.title, self.art, self.detail, self.cancel)

    def render_body(self, model: dict, t: Translator) -> None:
        self.title.text = t("take_card.title")
        self.detail.text = t("take_card.body")
        self.cancel.text = t("common.cancel")

    def activate(self) -> None:
        self.art.start()

    def deactivate(self) -> None:
        self.art.stop()
