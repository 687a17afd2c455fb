"""Counter registration: link a patron's My Number Card to their library card.

One screen for the whole registration; the body shown follows the model's `step`.
"""

from __future__ import annotations

from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator, format_due
from kiosk.screens import fonts
from kiosk.screens.base import side_by_side
from kiosk.screens.error import error_text
from kiosk.screens.pin_pad import masked
from kiosk.screens.staff.base import StaffScreen, label_pad_keys, press_for, staff_pin_pad
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.drawings import BarcodeArt, CardArt, Spinner
from kiosk.screens.widgets.text import ICON_INFO, ICON_OK, ICON_WARN, Text, escape, icon

BUSY_STEPS = {"authenticating": "staff.register.authenticating", "reading": "staff.register.reading",
              "linking": "staff.register.linking"}


def registration_error(code: str | None, t: Translator) -> str:
    """Staff words where the patron's would mislead (the counter is here), else the patron's."""
    msgid = f"staff.reg_error.{code}"
    return t(msgid) if code and t.has(msgid) else error_text(code, t)


class StaffRegisterScreen(StaffScreen):
    """One screen for the whole registration; the body shown follows model["step"]."""

    screen = "staff_register"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        press = press_for(self)
        body = TextColumn(spacing=th.gap)
        body.add_widget(self.title_row(fixed=False))
        self.stage = TextColumn(spacing=th.gap)
        body.add_widget(self.stage)
        self.actions = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=th.action)
        body.add_widget(self.actions)
        self.buttons = {
            "cancel": KButton(th, press, "cancel"),
            "ok": KButton(th, press, "ok", kind="primary"),
            "confirm_last_try": KButton(th, press, "confirm_last_try", kind="warn"),
            "link": KButton(th, press, "link", kind="primary"),
            "unlink": KButton(th, press, "unlink", kind="warn"),
            "again": KButton(th, press, "again"),
            "done": KButton(th, press, "done", kind="primary"),
        }
        self.message = Text(th, size=th.font_body, prefer_single=True)
        self.detail = Text(th, size=th.font_small, color=th.palette.muted, size_hint_y=0.6)
        self.card_art = CardArt(th, "down")
        self.barcode_art = BarcodeArt(th)
        self.spinner_holder = AnchorLayout()
        self.spinner = Spinner(th, size_hint=(None, None), size=(0, 0))
        self.spinner_holder.add_widget(self.spinner)

        def follow(_w, size) -> None:
            edge = max(0.0, min(size[0], size[1], th.touch * 1.6) * 0.9)
            self.spinner.size = (edge, edge)

        self.spinner_holder.bind(size=follow)
        # pin / pin2: words on the left, the pad on the right (stacked in portrait)
        self.pad, self.keys = staff_pin_pad(self)
        self.pad_holder = AnchorLayout(anchor_x="center", anchor_y="center")
        self.pad_holder.add_widget(self.pad)
        self.dots = Text(th, size=th.font_title * 1.25, fixed_font=True, font_name=fonts.ICON_FONT_NAME, prefer_single=True)
        self.tries = Text(th, size=th.font_body, prefer_single=True, size_hint_y=0.7)
        self.pin_words = TextColumn(spacing=th.gap)
        # Portrait: the pad goes under the words; landscape: in a side column as tall as
        # the screen below the header (as on the patron PIN screen), empty on other steps.
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
        self.step: str | None = None
        self._layout: tuple | None = None
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

    def compose(self) -> Widget:
        if self.ctx.theme.portrait:
            return super().compose()
        return side_by_side(self, (self.banners, self.body), self.side, self.footer)

    def _arrange(self, step: str, linked_before: bool) -> None:
        """Put the step's widgets in the stage and its buttons in the action row."""
        key = (step, linked_before)
        if key == self._layout:
            return
        self._layout = key
        for w in (self.message, self.detail, self.card_art, self.barcode_art, self.spinner_holder, self.dots,
                  self.tries, self.pin_row, self.facts, self.linked_before):
            if w.parent is not None:
                w.parent.remove_widget(w)
        self.stage.clear_widgets()
        self.pin_words.clear_widgets()
        self.actions.clear_widgets()
        self.side.clear_widgets()
        self.side.width = 0
        self.spinner.stop()
        b = self.buttons
        if step in ("pin", "pin2"):
            for w in (self.message, self.dots, self.tries, self.detail):
                self.pin_words.add_widget(w)
            self.stage.add_widget(self.pin_row)
            if not self.ctx.theme.portrait:
                self.side.add_widget(self.pad_holder)
                self.side.width = self.pad.width
            buttons = [b["cancel"], b["ok"]]
        elif step == "insert":
            self.stage.add_widget(self.card_art)
            self.stage.add_widget(self.message)
            self.stage.add_widget(self.detail)
            buttons = [b["cancel"]]
        elif step in ("last_try", "last_try2"):
            self.stage.add_widget(self.message)
            self.stage.add_widget(self.detail)
            buttons = [b["cancel"], b["confirm_last_try"]]
        elif step in BUSY_STEPS:
            self.stage.add_widget(self.message)
            self.stage.add_widget(self.spinner_holder)
            self.stage.add_widget(self.detail)
            self.spinner.start()
            buttons = [] if step == "linking" else [b["cancel"]]
        elif step == "scan":
            self.stage.add_widget(self.barcode_art)
            self.stage.add_widget(self.message)
            buttons = [b["cancel"]]
        elif step == "confirm":
            self.stage.add_widget(self.facts)
            if linked_before:
                self.stage.add_widget(self.linked_before)
            self.stage.add_widget(Widget())
            buttons = [b["cancel"]] + ([b["unlink"]] if linked_before else []) + [b["link"]]
        else:                                   # done, error
            self.stage.add_widget(self.message)
            self.stage.add_widget(self.detail)
            buttons = [b["again"], b["done"]]
        for button in buttons:
            self.actions.add_widget(button)

    def render_body(self, model: dict, t: Translator) -> None:
        th = self.ctx.theme
        step = model.get("step") or "insert"
        self.step = step
        linked_before = bool(model.get("linked_before"))
        self._arrange(step, linked_before)
        self.title.text = t("staff.register.title") + "  —  " + t(f"staff.register.step.{step}")
        self.message.color = th.palette.text
        self.message.bold = False
        self.detail.text = ""
        if step == "insert":
            self.message.text = t("staff.register.insert")
            self.detail.text = t("staff.register.insert_hint")
        elif step in ("pin", "pin2"):
            self.message.text = t(f"staff.register.{step}")
            self.dots.text = masked(int(model.get("digits") or 0), 4, "card")
            tries = model.get("tries_left")
            if tries is not None:
                warn = tries <= 2
                self.tries.text = (icon(ICON_WARN) + " " if warn else "") + t.plural("pin.tries_left", tries)
                self.tries.color = th.palette.warn if warn else th.palette.text
            else:
                self.tries.text = ""
            self.detail.text = t("staff.register.pin_hint")
            if step == "pin2" and model.get("first_pin_tried"):
                self.detail.text = t("staff.register.pin2_tried") + "\n" + self.detail.text
            label_pad_keys(self.keys, t)
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
        self.dots.text = ""
        self.card_value.text = ""
        self.name_value.text = ""
        self.valid_value.text = ""
        self.message.text = ""
        self.detail.text = ""
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
