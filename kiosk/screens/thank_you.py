"""Goodbye: a short screen that returns to idle by itself, with the date to bring the books back."""

from __future__ import annotations

from kivy.uix.widget import Widget

from kiosk.i18n import Translator, format_due
from kiosk.screens.base import KioskScreen, centred_button, message_column
from kiosk.screens.widgets.text import ICON_OK, Text, escape, icon


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
        due, lent = model.get("due"), int(model.get("lent") or 0)
        if due:
            key = "thanks.due_first" if model.get("several_dates") else "thanks.due"
            self.detail.text = t(key, date=escape(format_due(str(due), t.lang)))
        else:           # borrowed without a date from the catalogue, or nothing borrowed
            self.detail.text = t("thanks.body") if lent else ""
        self.ok.text = t("common.ok")

    def clear_body(self) -> None:
        self.detail.text = ""          # the due date is the last patron's
