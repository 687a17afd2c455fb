"""Out of service: staff switched the kiosk off, or it cannot work right now."""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets.text import Text


class OutOfServiceScreen(KioskScreen):
    reserve_countdown = False       # never times out
    screen = "out_of_service"
    language_bar = False

    def build_body(self) -> Widget:
        th = self.ctx.theme
        body = BoxLayout(orientation="vertical", spacing=th.gap)
        self.title = Text(th, size=th.font_huge, bold=True)
        self.detail = Text(th, size=th.font_title, color=th.palette.muted)
        body.add_widget(self.title)
        body.add_widget(self.detail)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        self.title.text = t("oos.title")
        self.detail.text = t("oos.body")
