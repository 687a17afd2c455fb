"""Counter registration: link a patron's My Number Card to their library card.

One screen for the whole registration; the body shown follows the model's `step`.
"""

from __future__ import annotations

from kivy.uix.gridlayout import GridLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator, format_due
from kiosk.screens.error import error_text
from kiosk.screens.staff.base import press_for
from kiosk.screens.staff.card_steps import CardStepScreen
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.drawings import BarcodeArt
from kiosk.screens.widgets.text import ICON_INFO, ICON_OK, ICON_WARN, Text, escape, icon

BUSY_STEPS = {"authenticating": "staff.register.authenticating", "reading": "staff.register.reading",
              "linking": "staff.register.linking"}


def registration_error(code: str | None, t: Translator) -> str:
    """Staff words where the patron's would mislead (the counter is here), else the patron's."""
    msgid = f"staff.reg_error.{code}"
    return t(msgid) if code and t.has(msgid) else error_text(code, t)


class StaffRegisterScreen(CardStepScreen):
    """One screen for the whole registration; the body shown follows model["step"]."""

    screen = "staff_register"
    busy_steps = BUSY_STEPS

    def build_body(self) -> Widget:
        th = self.ctx.theme
        press = press_for(self)
        body = self.card_step_body()
        self.buttons = {
            "cancel": KButton(th, press, "cancel"),
            "ok": KButton(th, press, "ok", kind="primary"),
            "confirm_last_try": KButton(th, press, "confirm_last_try", kind="warn"),
            "link": KButton(th, press, "link", kind="primary"),
            "unlink": KButton(th, press, "unlink", kind="warn"),
            "again": KButton(th, press, "again"),
            "done": KButton(th, press, "done", kind="primary"),
        }
        self.barcode_art = BarcodeArt(th)
        # confirm: what will be linked
        # Rows with room for a label that wraps to two lines (large text on a narrow panel).
        fact_row = max(th.font_title * 1.8, th.line * 2 + th.gap)
        self._fact_row = fact_row
        self.facts = GridLayout(cols=2, spacing=(th.pad, th.gap), size_hint_y=None,
                                height=fact_row * 2 + th.gap)
        self.card_label = Text(th, halign="left", color=th.palette.muted, prefer_single=True)
        self.card_value = Text(th, halign="left", bold=True, size=th.font_title, prefer_single=True)
        self.card_value.ident = "patron_id"
        # The catalogue's name for the card: staff check it is the person at the desk.
        self.name_label = Text(th, halign="left", color=th.palette.muted, prefer_single=True)
        self.name_value = Text(th, halign="left", bold=True, prefer_single=True)
        self.name_value.ident = "patron_name"
        self.valid_label = Text(th, halign="left", color=th.palette.muted, prefer_single=True)
        self.valid_value = Text(th, halign="left", bold=True, prefer_single=True)
        self.valid_value.ident = "valid_until"
        self._show_facts(False)
        self.linked_before = Text(th, size=th.font_body, bold=True, color=th.palette.warn)
        self.linked_before.ident = "linked_before"
        return body

    def _show_facts(self, named: bool) -> None:
        th = self.ctx.theme
        rows = [(self.card_label, self.card_value)]
        if named:
            rows.append((self.name_label, self.name_value))
        rows.append((self.valid_label, self.valid_value))
        self.facts.clear_widgets()
        for label, value in rows:
            self.facts.add_widget(label)
            self.facts.add_widget(value)
        self.facts.height = self._fact_row * len(rows) + th.gap * (len(rows) - 1)

    def step_widgets(self) -> tuple[Widget, ...]:
        return (self.barcode_art, self.facts, self.linked_before)

    def place(self, step: str, *shape) -> list[KButton]:
        (linked_before,) = shape
        b = self.buttons
        if step in ("pin", "pin2"):
            self.pin.show(self.stage, self.message, self.detail)
            return [b["cancel"], b["ok"]]
        if step == "insert":
            for w in (self.card_art, self.message, self.detail):
                self.stage.add_widget(w)
            return [b["cancel"]]
        if step in ("last_try", "last_try2"):
            self.stage.add_widget(self.message)
            self.stage.add_widget(self.detail)
            return [b["cancel"], b["confirm_last_try"]]
        if step in BUSY_STEPS:
            self.show_busy()
            return [] if step == "linking" else [b["cancel"]]
        if step == "scan":
            self.stage.add_widget(self.barcode_art)
            self.stage.add_widget(self.message)
            return [b["cancel"]]
        if step == "confirm":
            self.stage.add_widget(self.facts)
            if linked_before:
                self.stage.add_widget(self.linked_before)
            self.stage.add_widget(Widget())
            return [b["cancel"]] + ([b["unlink"]] if linked_before else []) + [b["link"]]
        self.stage.add_widget(self.message)     # done, error
        self.stage.add_widget(self.detail)
        return [b["again"], b["done"]]

    def render_body(self, model: dict, t: Translator) -> None:
        th = self.ctx.theme
        step = model.get("step") or "insert"
        self.step = step
        linked_before = bool(model.get("linked_before"))
        self.arrange(step, linked_before)
        self.title.text = t("staff.register.title") + "  —  " + t(f"staff.register.step.{step}")
        self.reset_words()
        if step == "insert":
            self.message.text = t("staff.register.insert")
            self.detail.text = t("staff.register.insert_hint")
        elif step in ("pin", "pin2"):
            self.message.text = t(f"staff.register.{step}")
            self.pin.render(model, t)
            self.detail.text = t("staff.register.pin_hint")
            if step == "pin2" and model.get("first_pin_tried"):
                self.detail.text = t("staff.register.pin2_tried") + "\n" + self.detail.text
        elif step in ("last_try", "last_try2"):
            self.message.text = icon(ICON_WARN) + " " + t(f"staff.register.{step}")
            self.message.color = th.palette.warn
            self.message.bold = True
            self.detail.text = t(f"staff.register.{step}_body")
        elif step in BUSY_STEPS:
            self.message.text = t(BUSY_STEPS[step])
            self.detail.text = t("common.keep_card") if step != "linking" else ""
        elif step == "scan":
            self.message.text = t("staff.register.scan")
        elif step == "confirm":
            self.card_label.text = t("staff.register.library_card")
            self.card_value.text = escape(str(model.get("patron_id") or ""))
            name = model.get("patron_name")
            self.name_label.text = t("staff.register.patron_name")
            self.name_value.text = escape(str(name)) if name else ""
            self._show_facts(bool(name))
            self.valid_label.text = t("staff.register.valid_until")
            valid = model.get("valid_until") or ""
            self.valid_value.text = format_due(valid, t.lang) if valid else "—"
            self.linked_before.text = icon(ICON_INFO) + " " + t("staff.register.linked_before")
        elif step == "done":
            self.message.text = icon(ICON_OK) + " " + t("staff.register.done")
            self.message.bold = True
            self.detail.text = t("staff.register.take_card")
        else:
            self.message.text = icon(ICON_WARN) + " " + registration_error(model.get("error"), t)
            self.message.color = th.palette.error
            self.detail.text = t("staff.register.take_card")
        b = self.buttons
        b["cancel"].text = t("common.cancel")
        b["ok"].text = icon(ICON_OK) + " " + t("pin.ok")
        b["ok"].disabled = int(model.get("digits") or 0) < 4
        b["confirm_last_try"].text = t("last_try.confirm")
        b["link"].text = icon(ICON_OK) + " " + t("staff.register.link")
        b["unlink"].text = t("staff.register.unlink")
        b["again"].text = t("staff.register.again")
        b["done"].text = t("staff.back")

    def clear_body(self) -> None:
        self.card_value.text = ""
        self.name_value.text = ""
        self.valid_value.text = ""
        super().clear_body()
