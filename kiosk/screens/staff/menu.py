"""The staff menu. Switches are shown with words and a tick, never by colour alone."""

from __future__ import annotations

from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.staff.base import StaffScreen, button_grid
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.text import ICON_OK, escape, icon

MENU_ACTIONS = ("register", "out_of_service", "offline_lending", "sync_now", "status", "review", "self_test",
                "reset", "restart", "shutdown", "exit")
SWITCHES = ("out_of_service", "offline_lending")


class StaffMenuScreen(StaffScreen):
    screen = "staff_menu"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        body = TextColumn(spacing=th.gap)
        body.add_widget(self.title_row(fixed=False))
        kinds = {"register": "primary", "exit": "primary", "restart": "warn", "shutdown": "warn"}
        self.grid, self.buttons = button_grid(self, MENU_ACTIONS, 2 if th.portrait else 3, kinds)
        body.add_widget(self.grid)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        th = self.ctx.theme
        staff_id = model.get("staff_id") or ""
        self.title.text = t("staff.menu.title") + "  —  " + t("staff.menu.signed_in", staff_id=escape(staff_id))
        for action, b in self.buttons.items():
            words = t(f"staff.menu.{action}")
            if action in SWITCHES:
                on = bool(model.get(action))
                state = t("common.on") if on else t("common.off")
                b.text = (icon(ICON_OK) + " " if on else "") + t("staff.menu.switch", name=words, state=state)
                b._bg = th.palette.selected if on else th.palette.secondary
                b.background_color = b._bg
                b.color = th.palette.on_selected if on else th.palette.on_secondary
                b.switched_on = on
            else:
                b.text = words
        self.buttons["register"].disabled = not model.get("registration", True)
        if model.get("counter"):                # a counter terminal signs out from its counter screen
            self.buttons["exit"].text = t("counter.back_to_counter")
