"""The counter terminal's own staff screen: identify a patron, register a card, the staff
menu, sign out. No self-checkout: a counter terminal never lends."""

from __future__ import annotations

from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.counter.identify import outcome_text
from kiosk.screens.staff.base import StaffScreen, button_grid
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.text import Text, escape

ACTIONS = ("identify", "register", "menu", "exit")


class StaffCounterScreen(StaffScreen):
    screen = "staff_counter"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        body = TextColumn(spacing=th.gap)
        body.add_widget(self.title_row(fixed=False))
        kinds = {"identify": "primary", "register": "primary"}
        self.grid, self.buttons = button_grid(self, ACTIONS, 1 if th.portrait else 2, kinds)
        body.add_widget(self.grid)
        self.last = Text(th, size=th.font_body, prefer_single=True)
        self.last.ident = "last"
        body.add_widget(self.last)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        staff_id = model.get("staff_id") or ""
        self.title.text = t("counter.title") + "  —  " + t("staff.menu.signed_in", staff_id=escape(staff_id))
        for action, b in self.buttons.items():
            b.text = t(f"counter.action.{action}")
        last = model.get("last")
        self.last.text = t("counter.last", outcome=outcome_text(last, t)) if last else t("counter.ready")

    def clear_body(self) -> None:
        self.last.text = ""
