"""Staff sign-in: a badge and/or a PIN on the patron PIN screen's pad."""

from __future__ import annotations

import math

from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens import fonts
from kiosk.screens.pin_pad import KeypadLayout, keypad_title_size, masked
from kiosk.screens.staff.base import StaffScreen, label_pad_keys, press_for, staff_pin_pad
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.text import ICON_OK, ICON_WARN, Text, icon


class StaffSigninScreen(KeypadLayout, StaffScreen):
    screen = "staff_signin"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        self.pad, self.keys = staff_pin_pad(self)
        self.pad_holder = AnchorLayout(anchor_x="center", anchor_y="center")
        self.pad_holder.add_widget(self.pad)
        self.info = TextColumn(spacing=th.gap)
        self.info.add_widget(self.title_row(fixed=False))
        self.title.base_size = keypad_title_size(th)
        self.hint = Text(th, size=th.font_body)
        self.dots = Text(th, size=th.font_title * 1.25, fixed_font=True, font_name=fonts.ICON_FONT_NAME, prefer_single=True)
        self.locked = Text(th, size=th.font_body, bold=True, color=th.palette.warn)
        self.note = Text(th, size=th.font_small, color=th.palette.muted, size_hint_y=0.6)
        for w in (self.hint, self.dots, self.locked, self.note):
            self.info.add_widget(w)
        self.actions = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=th.touch)
        self.cancel = KButton(th, press_for(self), "cancel")
        self.ok = KButton(th, press_for(self), "ok", kind="primary")
        self.actions.add_widget(self.cancel)
        self.actions.add_widget(self.ok)
        return self.keypad_body()

    def render_body(self, model: dict, t: Translator) -> None:
        locked_for = model.get("locked_for")
        self.title.text = t("staff.signin.title")
        self.hint.text = t("staff.signin.badge_read") if model.get("badge") else t("staff.signin.hint")
        self.dots.text = masked(int(model.get("digits") or 0), 8, "staff")
        if locked_for:
            minutes = max(1, math.ceil(locked_for / 60))
            self.locked.text = icon(ICON_WARN) + " " + t.plural("staff.signin.locked", minutes, minutes=minutes)
        else:
            self.locked.text = ""
        for key in self.keys.values():
            key.disabled = bool(locked_for)
        self.ok.disabled = bool(locked_for)
        self.note.text = t("pin.masked")
        label_pad_keys(self.keys, t)
        self.cancel.text = t("common.cancel")
        self.ok.text = icon(ICON_OK) + " " + t("pin.ok")

    def clear_body(self) -> None:
        self.dots.text = ""
        self.locked.text = ""
