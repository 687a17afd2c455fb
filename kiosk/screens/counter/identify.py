"""Counter identification: the patron's card and PIN on the terminal, then the hand-over.

One screen for the whole identification; the body follows the model's `step`
(kiosk/core/counter.py). Once identified it shows "identified", the barcode for the staff
hand scanner (drawn from bar widths: the number itself is never on the screen as text)
and whether the USB keyboard typed it; nothing about the patron. Errors show the reason.
"""

from __future__ import annotations

from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens import fonts
from kiosk.screens.base import side_by_side
from kiosk.screens.counter.barcode import BarcodeSymbol
from kiosk.screens.pin_pad import masked
from kiosk.screens.staff.base import StaffScreen, label_pad_keys, press_for, staff_pin_pad
from kiosk.screens.staff.register import registration_error
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.drawings import CardArt, Spinner
from kiosk.screens.widgets.text import ICON_OK, ICON_WARN, Text, icon

BUSY_STEPS = ("reading", "authenticating", "resolving")


def outcome_text(code: str | None, t: Translator) -> str:
    """"Identified", or why not, in staff words where there are some."""
    if code == "identified":
        return t("counter.identified")
    msgid = f"counter.error.{code}"
    return t(msgid) if code and t.has(msgid) else registration_error(code, t)


class CounterIdentifyScreen(StaffScreen):
    screen = "counter_identify"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        press = press_for(self)
        body = TextColumn(spacing=th.gap)
        body.add_widget(self.title_row(fixed=False))
        self.stage = TextColumn(spacing=th.gap)
        body.add_widget(self.stage)
        self.actions = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=th.action)
        if th.portrait:
            body.add_widget(self.actions)
        self.buttons = {
            "back": KButton(th, press, "back"),
            "ok": KButton(th, press, "ok", kind="primary"),
            "confirm_last_try": KButton(th, press, "confirm_last_try", kind="warn"),
            "next": KButton(th, press, "next", kind="primary"),
        }
        self.message = Text(th, size=th.font_body, prefer_single=True)
        self.message.ident = "message"
        self.detail = Text(th, size=th.font_small, color=th.palette.muted, size_hint_y=0.6)
        self.card_art = CardArt(th, "down")
        self.symbol = BarcodeSymbol(th)
        self.symbol.ident = "barcode"
        self.spinner_holder = AnchorLayout()
        self.spinner = Spinner(th, size_hint=(None, None), size=(0, 0))
        self.spinner_holder.add_widget(self.spinner)

        def follow(_w, size) -> None:
            edge = max(0.0, min(size[0], size[1], th.touch * 1.6) * 0.9)
            self.spinner.size = (edge, edge)

        self.spinner_holder.bind(size=follow)
        self.pad, self.keys = staff_pin_pad(self)
        self.pad_holder = AnchorLayout(anchor_x="center", anchor_y="center")
        self.pad_holder.add_widget(self.pad)
        self.dots = Text(th, size=th.font_title * 1.25, fixed_font=True, font_name=fonts.ICON_FONT_NAME, prefer_single=True)
        self.tries = Text(th, size=th.font_body, prefer_single=True, size_hint_y=0.7)
        self.pin_words = TextColumn(spacing=th.gap)
        # Portrait: the pad under the words; landscape: in a side column as tall as the
        # screen below the header (as on the registration screen), empty on other steps.
        self.pin_row = TextColumn(spacing=th.pad)
        self.pin_row.add_widget(self.pin_words)
        self.side = BoxLayout(orientation="vertical", size_hint_x=None, width=0)
        if th.portrait:
            self.pad_holder.size_hint_y = None
            self.pad_holder.height = self.pad.height
            self.pin_row.add_widget(self.pad_holder)
        else:
            self.pad_holder.size_hint_x = None
            self.pad_holder.width = self.pad.width
        self.handover = Text(th, size=th.font_small, prefer_single=True)
        self.handover.ident = "handover"
        self.step: str | None = None
        self._layout: tuple | None = None
        return body

    def compose(self) -> Widget:
        if self.ctx.theme.portrait:
            return super().compose()
        # The buttons stay under the words, out of their scroll: a notice and a PIN hint
        # can make the words scroll on a 7" panel, and a scrolling view holds a tap back.
        return side_by_side(self, (self.banners, self.body), self.side, self.footer, under_left=self.actions)

    def _arrange(self, step: str, barcode: bool) -> None:
        key = (step, barcode)
        if key == self._layout:
            return
        self._layout = key
        for w in (self.message, self.detail, self.card_art, self.symbol, self.spinner_holder, self.dots,
                  self.tries, self.pin_row, self.handover):
            if w.parent is not None:
                w.parent.remove_widget(w)
        self.stage.clear_widgets()
        self.pin_words.clear_widgets()
        self.actions.clear_widgets()
        self.side.clear_widgets()
        self.side.width = 0
        self.spinner.stop()
        b = self.buttons
        if step == "pin":
            for w in (self.message, self.dots, self.tries, self.detail):
                self.pin_words.add_widget(w)
            self.stage.add_widget(self.pin_row)
            if not self.ctx.theme.portrait:
                self.side.add_widget(self.pad_holder)
                self.side.width = self.pad.width
            buttons = [b["back"], b["ok"]]
        elif step == "insert":
            for w in (self.card_art, self.message, self.detail):
                self.stage.add_widget(w)
            buttons = [b["back"]]
        elif step == "last_try":
            self.stage.add_widget(self.message)
            self.stage.add_widget(self.detail)
            buttons = [b["back"], b["confirm_last_try"]]
        elif step in BUSY_STEPS:
            self.stage.add_widget(self.message)
            self.stage.add_widget(self.spinner_holder)
            self.stage.add_widget(self.detail)
            self.spinner.start()
            buttons = [b["back"]]
        elif step == "identified":
            self.stage.add_widget(self.message)
            if barcode:
                self.stage.add_widget(self.symbol)
            self.stage.add_widget(self.handover)
            buttons = [b["back"], b["next"]]
        else:                                   # error
            self.stage.add_widget(self.message)
            self.stage.add_widget(self.detail)
            buttons = [b["back"], b["next"]]
        for button in buttons:
            self.actions.add_widget(button)

    def render_body(self, model: dict, t: Translator) -> None:
        th = self.ctx.theme
        step = model.get("step") or "insert"
        self.step = step
        bars = model.get("bars")
        self._arrange(step, bool(bars))
        self.title.text = t("counter.identify.title") + "  —  " + t(f"counter.identify.step.{step}")
        self.message.color = th.palette.text
        self.message.bold = False
        self.detail.text = ""
        self.handover.text = ""
        if step == "insert":
            self.message.text = t("counter.identify.insert")
            self.detail.text = t("counter.identify.insert_hint")
        elif step == "pin":
            self.message.text = t("counter.identify.pin")
            self.dots.text = masked(int(model.get("digits") or 0), 4, "card")
            tries = model.get("tries_left")
            if tries is not None:
                warn = tries <= 2
                self.tries.text = (icon(ICON_WARN) + " " if warn else "") + t.plural("pin.tries_left", tries)
                self.tries.color = th.palette.warn if warn else th.palette.text
            else:
                self.tries.text = ""
            self.detail.text = t("counter.identify.pin_hint")
            label_pad_keys(self.keys, t)
        elif step == "last_try":
            self.message.text = icon(ICON_WARN) + " " + t("staff.register.last_try")
            self.message.color = th.palette.warn
            self.message.bold = True
            self.detail.text = t("staff.register.last_try_body")
        elif step in BUSY_STEPS:
            self.message.text = t(f"counter.identify.{step}")
            self.detail.text = t("common.keep_card") if step != "resolving" else ""
        elif step == "identified":
            self.message.text = icon(ICON_OK) + " " + t("counter.identified")
            self.message.bold = True
            self.message.color = th.palette.ok
            self.symbol.set_bars(bars)
            parts = []
            wipe_in = model.get("wipe_in")
            if bars and wipe_in is not None:
                parts.append(t.plural("counter.barcode_wiped_in", wipe_in))
            keyboard = model.get("keyboard")
            if keyboard:
                parts.append(t(f"counter.keyboard.{keyboard}"))
            self.handover.text = "  ".join(parts)
            if keyboard == "failed":
                self.handover.color = th.palette.error
            else:
                self.handover.color = th.palette.text
        else:
            self.message.text = icon(ICON_WARN) + " " + outcome_text(model.get("error"), t)
            self.message.color = th.palette.error
            self.detail.text = t("staff.register.take_card")
        if step != "identified":
            self.symbol.set_bars(None)
        b = self.buttons
        b["back"].text = t("counter.back")
        b["ok"].text = icon(ICON_OK) + " " + t("pin.ok")
        b["ok"].disabled = int(model.get("digits") or 0) < 4
        b["confirm_last_try"].text = t("last_try.confirm")
        b["next"].text = t("counter.identify.next")

    def clear_body(self) -> None:
        self.symbol.set_bars(None)
        self.dots.text = ""
        self.message.text = ""
        self.detail.text = ""
        self.handover.text = ""
        self._layout = None
        self.stage.clear_widgets()
        self.actions.clear_widgets()
        self.side.clear_widgets()
        self.side.width = 0
        self.spinner.stop()
        self.step = None

    def deactivate(self) -> None:
        self.spinner.stop()

    def activate(self) -> None:
        if self.step in BUSY_STEPS:
            self.spinner.start()
