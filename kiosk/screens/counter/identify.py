"""Counter identification: the patron's card and PIN on the terminal, then the hand-over.

One screen for the whole identification; the body follows the model's `step`
(kiosk/core/counter.py). Once identified it shows "identified", the barcode for the staff
hand scanner (drawn from bar widths: the number itself is never on the screen as text)
and whether the USB keyboard typed it; nothing about the patron. Errors show the reason.
"""

from __future__ import annotations

from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.counter.barcode import BarcodeSymbol
from kiosk.screens.staff.base import press_for
from kiosk.screens.staff.card_steps import CardStepScreen
from kiosk.screens.staff.register import registration_error
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.text import ICON_OK, ICON_WARN, Text, icon

BUSY_STEPS = ("reading", "authenticating", "resolving")


def outcome_text(code: str | None, t: Translator) -> str:
    """"Identified", or why not, in staff words where there are some."""
    if code == "identified":
        return t("counter.identified")
    msgid = f"counter.error.{code}"
    return t(msgid) if code and t.has(msgid) else registration_error(code, t)


class CounterIdentifyScreen(CardStepScreen):
    screen = "counter_identify"
    busy_steps = BUSY_STEPS
    # The buttons stay under the words, out of their scroll: a notice and a PIN hint
    # can make the words scroll on a 7" panel, and a scrolling view holds a tap back.
    actions_out_of_scroll = True

    def build_body(self) -> Widget:
        th = self.ctx.theme
        press = press_for(self)
        body = self.card_step_body()
        self.buttons = {
            "back": KButton(th, press, "back"),
            "ok": KButton(th, press, "ok", kind="primary"),
            "confirm_last_try": KButton(th, press, "confirm_last_try", kind="warn"),
            "next": KButton(th, press, "next", kind="primary"),
        }
        self.message.ident = "message"
        self.symbol = BarcodeSymbol(th)
        self.symbol.ident = "barcode"
        self.handover = Text(th, size=th.font_small, prefer_single=True)
        self.handover.ident = "handover"
        return body

    def step_widgets(self) -> tuple[Widget, ...]:
        return (self.symbol, self.handover)

    def place(self, step: str, *shape) -> list[KButton]:
        (barcode,) = shape
        b = self.buttons
        if step == "pin":
            self.pin.show(self.stage, self.message, self.detail)
            return [b["back"], b["ok"]]
        if step == "insert":
            for w in (self.card_art, self.message, self.detail):
                self.stage.add_widget(w)
            return [b["back"]]
        if step == "last_try":
            self.stage.add_widget(self.message)
            self.stage.add_widget(self.detail)
            return [b["back"], b["confirm_last_try"]]
        if step in BUSY_STEPS:
            self.show_busy()
            return [b["back"]]
        if step == "identified":
            self.stage.add_widget(self.message)
            if barcode:
                self.stage.add_widget(self.symbol)
            self.stage.add_widget(self.handover)
            return [b["back"], b["next"]]
        self.stage.add_widget(self.message)     # error
        self.stage.add_widget(self.detail)
        return [b["back"], b["next"]]

    def render_body(self, model: dict, t: Translator) -> None:
        th = self.ctx.theme
        step = model.get("step") or "insert"
        self.step = step
        bars = model.get("bars")
        self.arrange(step, bool(bars))
        self.title.text = t("counter.identify.title") + "  —  " + t(f"counter.identify.step.{step}")
        self.reset_words()
        self.handover.text = ""
        if step == "insert":
            self.message.text = t("counter.identify.insert")
            self.detail.text = t("counter.identify.insert_hint")
        elif step == "pin":
            self.message.text = t("counter.identify.pin")
            self.pin.render(model, t)
            self.detail.text = t("counter.identify.pin_hint")
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
        self.handover.text = ""
        super().clear_body()
