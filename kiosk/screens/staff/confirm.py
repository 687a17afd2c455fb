"""Restart or shut down: asked once more, with the warning colour and icon."""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.staff.base import StaffScreen, press_for
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.text import ICON_WARN, Text, icon


class StaffConfirmScreen(StaffScreen):
    screen = "staff_confirm"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        body = TextColumn(spacing=th.gap)
        body.add_widget(self.title_row(fixed=False))
        self.message = Text(th, size=th.font_body)
        body.add_widget(self.message)
        actions = BoxLayout(orientation="vertical" if th.portrait else "horizontal", spacing=th.gap,
                            size_hint_y=None, height=th.action * (2 if th.portrait else 1) + (th.gap if th.portrait else 0))
        self.back = KButton(th, press_for(self), "back")
        self.confirm = KButton(th, press_for(self), "confirm", kind="warn")
        actions.add_widget(self.back)
        actions.add_widget(self.confirm)
        body.add_widget(actions)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        action = model.get("action") if model.get("action") in ("restart", "shutdown") else "restart"
        self.title.text = icon(ICON_WARN) + " " + t(f"staff.confirm.{action}.title")
        self.message.text = t(f"staff.confirm.{action}.body")
        self.back.text = t("common.cancel")
        self.confirm.text = t(f"staff.confirm.{action}.yes")
