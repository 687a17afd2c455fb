"""Staff screens (sign-in, menu, status, review, self-test, confirm, counter
registration); the hidden corner that opens them is kiosk/screens/staff_corner.py.

They draw kiosk/staff.py's plain models exactly as the patron screens draw the
session's: touches go back only as kiosk.core.events.Press, nothing is kept once a
screen is left (the review list holds library card numbers, so `clear_body`
empties it). Switches are shown with words and a tick, never by colour alone.
Staff screens have no language bar: staff use the site's default language.
"""

from __future__ import annotations

import math

from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from kiosk.i18n import Translator, format_due
from kiosk.screens import fonts
from kiosk.screens.base import KioskScreen, side_by_side
from kiosk.screens.error import error_text
from kiosk.screens.pin_pad import KeypadLayout, masked
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.context import paint
from kiosk.screens.widgets.drawings import BarcodeArt, CardArt, Spinner
from kiosk.screens.widgets.text import ICON_BACK, ICON_INFO, ICON_OK, ICON_WARN, Text, escape, icon

# Notices that report progress rather than a problem.
STAFF_INFO_NOTICES = {"reset_done", "sync_started"}


def _press(screen: KioskScreen):
    return lambda a, v: screen.ctx.press(a, v)


def _pin_pad(screen: KioskScreen) -> tuple[GridLayout, dict[str, KButton]]:
    """The phone-layout pad of the patron PIN screen (same sizes: keys >= 12 mm)."""
    th = screen.ctx.theme
    press = _press(screen)
    keys: dict[str, KButton] = {}
    pad = GridLayout(cols=3, spacing=th.gap, size_hint=(None, None),
                     width=th.key * 3 + th.gap * 2, height=th.key * 4 + th.gap * 3)
    for label in "1234567890":
        keys[label] = KButton(th, press, "digit", label, kind="key", size=th.font_key, text=label)
    keys["clear"] = KButton(th, press, "clear", size=th.font_small)
    keys["delete"] = KButton(th, press, "delete", size=th.font_small)
    for name in list("123456789") + ["clear", "0", "delete"]:
        pad.add_widget(keys[name])
    return pad, keys


def _label_pad_keys(keys: dict[str, KButton], t: Translator) -> None:
    keys["clear"].text = t("pin.clear")
    keys["delete"].text = icon(ICON_BACK) + "\n" + t("pin.delete")


class StaffScreen(KioskScreen):
    language_bar = False

    def after_build(self) -> None:
        # An empty banner strip keeps Kivy's default 100 px until its first banner
        # (minimum_height never changes from 0): give that room to the body.
        self.banners.height = self.banners.minimum_height

    def notice_text(self, notice: str, model: dict, t: Translator) -> str:
        msgid = "staff.notice." + notice
        return t(msgid) if t.has(msgid) else super().notice_text(notice, model, t)

    def banner_specs(self, model: dict, t: Translator) -> list[tuple[str, str, str]]:
        info = "notice:" + str(model.get("notice")) if model.get("notice") in STAFF_INFO_NOTICES else None
        return [("info" if ident == info else kind, text, ident) for kind, text, ident in super().banner_specs(model, t)]

    def title_row(self) -> Text:
        th = self.ctx.theme
        self.title = Text(th, size=th.font_title, bold=True, size_hint_y=None, height=th.font_title * 1.7,
                          halign="left", prefer_single=True)
        return self.title

    def back_button(self, **kw) -> KButton:
        th = self.ctx.theme
        kw.setdefault("size_hint_y", None)
        kw.setdefault("height", th.touch)
        return KButton(th, _press(self), "back", **kw)


# -- sign-in ----------------------------------------------------------------------------


class StaffSigninScreen(KeypadLayout, StaffScreen):
    screen = "staff_signin"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        self.pad, self.keys = _pin_pad(self)
        self.pad_holder = AnchorLayout(anchor_x="center", anchor_y="center")
        self.pad_holder.add_widget(self.pad)
        self.info = BoxLayout(orientation="vertical", spacing=th.gap)
        self.info.add_widget(self.title_row())
        self.hint = Text(th, size=th.font_body)
        self.dots = Text(th, size=th.font_huge, fixed_font=True, font_name=fonts.ICON_FONT_NAME, prefer_single=True)
        self.locked = Text(th, size=th.font_body, bold=True, color=th.palette.warn)
        self.note = Text(th, size=th.font_small, color=th.palette.muted, size_hint_y=0.6)
        for w in (self.hint, self.dots, self.locked, self.note):
            self.info.add_widget(w)
        self.actions = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=th.touch)
        self.cancel = KButton(th, _press(self), "cancel")
        self.ok = KButton(th, _press(self), "ok", kind="primary")
        self.actions.add_widget(self.cancel)
        self.actions.add_widget(self.ok)
        return self.keypad_body()

    def render_body(self, model: dict, t: Translator) -> None:
        locked_for = model.get("locked_for")
        self.title.text = t("staff.signin.title")
        self.hint.text = t("staff.signin.badge_read") if model.get("badge") else t("staff.signin.hint")
        self.dots.text = masked(int(model.get("digits") or 0), 8, "staff")
        if locked_for:
            self.locked.text = icon(ICON_WARN) + " " + t("staff.signin.locked",
                                                        minutes=max(1, math.ceil(locked_for / 60)))
        else:
            self.locked.text = ""
        for key in self.keys.values():
            key.disabled = bool(locked_for)
        self.ok.disabled = bool(locked_for)
        self.note.text = t("pin.masked")
        _label_pad_keys(self.keys, t)
        self.cancel.text = t("common.cancel")
        self.ok.text = icon(ICON_OK) + " " + t("pin.ok")

    def clear_body(self) -> None:
        self.dots.text = ""
        self.locked.text = ""


# -- menu -------------------------------------------------------------------------------

MENU_ACTIONS = ("register", "out_of_service", "offline_lending", "sync_now", "status", "review", "self_test",
                "reset", "restart", "shutdown", "exit")
SWITCHES = ("out_of_service", "offline_lending")


class StaffMenuScreen(StaffScreen):
    screen = "staff_menu"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        body = BoxLayout(orientation="vertical", spacing=th.gap)
        body.add_widget(self.title_row())
        cols = 2 if th.portrait else 3
        rows = -(-len(MENU_ACTIONS) // cols)
        self.grid = GridLayout(cols=cols, rows=rows, spacing=th.gap)
        kinds = {"register": "primary", "exit": "primary", "restart": "warn", "shutdown": "warn"}
        self.buttons: dict[str, KButton] = {}
        for action in MENU_ACTIONS:
            b = KButton(th, _press(self), action, kind=kinds.get(action, "secondary"))
            self.buttons[action] = b
            self.grid.add_widget(b)
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
                b.text = (icon(ICON_OK) + " " if on else "") + f"{words}: {t('common.on') if on else t('common.off')}"
                b._bg = th.palette.selected if on else th.palette.secondary
                b.background_color = b._bg
                b.color = th.palette.on_selected if on else th.palette.on_secondary
                b.switched_on = on
            else:
                b.text = words
        self.buttons["register"].disabled = not model.get("registration", True)


# -- status -------------------------------------------------------------------------------

STATUS_KEYS = ("reader", "scanner", "catalogue", "catalogue_error", "outbox_pending", "oldest_pending",
               "last_sync", "conflicts", "config_version", "app_version", "disk_free_mb", "uptime_s")


def status_value(key: str, value: object, t: Translator) -> str:
    """A status value in words; unknown values are shown as they came (escaped)."""
    if value is None or value == "":
        return "—"
    if key in ("reader", "catalogue") and isinstance(value, str):
        if value in ("ok", "unavailable"):
            return t(f"staff.value.{value}")
        if value.startswith("failing (") and value.endswith(")"):
            return t("staff.value.failing", n=value[len("failing ("):-1])
    if key in ("oldest_pending", "last_sync") and isinstance(value, str):
        return escape(value.replace("T", " ")[:16])
    if key == "disk_free_mb":
        return f"{value} MB"
    if key == "uptime_s" and isinstance(value, int):
        return t("staff.value.uptime", h=value // 3600, m=value % 3600 // 60)
    return escape(str(value))


class StaffStatusScreen(StaffScreen):
    screen = "staff_status"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        body = BoxLayout(orientation="vertical", spacing=th.gap)
        body.add_widget(self.title_row())
        self.scroll = ScrollView(do_scroll_x=False, bar_width=max(4, th.gap))
        # Landscape: two label/value pairs a row, so the whole table fits without scrolling.
        self.table = GridLayout(cols=2 if th.portrait else 4, spacing=(th.pad, th.gap * 0.5), size_hint_y=None)
        self.table.bind(minimum_height=self.table.setter("height"))
        self.scroll.add_widget(self.table)
        body.add_widget(self.scroll)
        self.values: dict[str, Text] = {}
        self.back = self.back_button()
        body.add_widget(self.back)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        th = self.ctx.theme
        self.title.text = t("staff.status.title")
        self.back.text = t("staff.back")
        status = model.get("status") or {}
        keys = [k for k in STATUS_KEYS if k in status] + sorted(k for k in status if k not in STATUS_KEYS)
        self.table.clear_widgets()
        self.values = {}
        if not keys:
            self.table.add_widget(Text(th, text=t("staff.status.loading"), halign="left", grow=True,
                                       size_hint_y=None))
            return
        row_h = th.font_body * 1.8
        for key in keys:
            msgid = f"staff.status.{key}"
            name = Text(th, text=t(msgid) if t.has(msgid) else escape(key), halign="left", color=th.palette.muted,
                        size_hint_y=None, height=row_h, prefer_single=True)
            value = Text(th, text=status_value(key, status[key], t), halign="left", bold=True,
                         size_hint_y=None, height=row_h, prefer_single=True)
            value.ident = f"status:{key}"
            self.values[key] = value
            self.table.add_widget(name)
            self.table.add_widget(value)

    def clear_body(self) -> None:
        self.table.clear_widgets()
        self.values = {}


# -- review ------------------------------------------------------------------------------


class ConflictRow(BoxLayout):
    """One loan the catalogue refused after it was lent offline: what, whose, why, when."""

    def __init__(self, screen: KioskScreen, conflict: dict, t: Translator) -> None:
        th = screen.ctx.theme
        super().__init__(orientation="horizontal", size_hint_y=None, height=th.touch * 1.9, spacing=th.gap,
                         padding=(th.pad, th.gap))
        paint(self, th.palette.surface, radius=th.gap)
        self.conflict_id = str(conflict.get("id"))
        words = BoxLayout(orientation="vertical")
        refusal = conflict.get("refusal")
        reason = t(f"refusal.{refusal}") if refusal and t.has(f"refusal.{refusal}") else escape(
            str(conflict.get("reason") or "—"))
        self.heading = Text(th, halign="left", bold=True, prefer_single=True,
                            text=t("staff.review.item", item_id=escape(str(conflict.get("item_id") or "—")))
                            + "   " + t("staff.review.patron", patron_id=escape(str(conflict.get("patron_id") or "—"))))
        self.reason = Text(th, halign="left", size=th.font_small, text=t("staff.review.reason", reason=reason))
        when = str(conflict.get("recorded_at") or "")
        detail = t("staff.review.recorded", time=escape(when.replace("T", " ")[:16]))
        if conflict.get("offline"):
            detail += "  ·  " + t("staff.review.offline")
        self.detail = Text(th, halign="left", size=th.font_small, color=th.palette.muted, text=detail,
                           prefer_single=True)
        for w in (self.heading, self.reason, self.detail):
            words.add_widget(w)
        self.add_widget(words)
        self.resolve = KButton(th, _press(screen), "resolve", self.conflict_id, kind="ok",
                               size_hint_x=None, width=max(th.touch * 2.4, th.width * 0.2),
                               text=icon(ICON_OK) + " " + t("staff.review.resolve"))
        self.add_widget(self.resolve)


class StaffReviewScreen(StaffScreen):
    screen = "staff_review"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        body = BoxLayout(orientation="vertical", spacing=th.gap)
        body.add_widget(self.title_row())
        self.scroll = ScrollView(do_scroll_x=False, bar_width=max(4, th.gap))
        self.column = BoxLayout(orientation="vertical", size_hint_y=None, spacing=th.gap)
        self.column.bind(minimum_height=self.column.setter("height"))
        self.scroll.add_widget(self.column)
        body.add_widget(self.scroll)
        self.rows: dict[str, ConflictRow] = {}
        self.placeholder = Text(th, size=th.font_body, color=th.palette.muted, size_hint_y=None,
                                height=th.touch)
        self.back = self.back_button()
        body.add_widget(self.back)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        self.title.text = t("staff.review.title")
        self.back.text = t("staff.back")
        conflicts = model.get("conflicts") or []
        self.column.clear_widgets()
        self.rows = {}
        if not conflicts:
            self.placeholder.text = t("staff.review.empty")
            self.column.add_widget(self.placeholder)
            return
        for c in conflicts:
            row = ConflictRow(self, c, t)
            self.rows[row.conflict_id] = row
            self.column.add_widget(row)

    def clear_body(self) -> None:
        self.column.clear_widgets()
        self.rows = {}
        self.placeholder.text = ""


# -- self-test ----------------------------------------------------------------------------

SELFTEST_PARTS = ("lights", "sound", "scanner", "reader")


def selftest_value(value: str | dict | None, t: Translator) -> str:
    """One self-test line in the staff member's language (the core sends codes, not words)."""
    if not value:
        return t("staff.selftest.not_tested")
    if isinstance(value, str):
        return t(f"staff.selftest.{value}")                  # running, done
    result = value["result"]
    if result == "scanned":
        return icon(ICON_OK) + " " + t("staff.selftest.scanned", n=value["n"])
    if result == "card":
        kind = t(f"staff.selftest.kind.{value['kind']}")
        text = kind if value["tries"] is None else t("staff.selftest.card", kind=kind, tries=value["tries"])
        return icon(ICON_OK) + " " + escape(text)
    if result == "error":
        return escape(t(f"error.{value['code']}"))
    return t("staff.selftest.reading")


class StaffSelftestScreen(StaffScreen):
    screen = "staff_selftest"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        body = BoxLayout(orientation="vertical", spacing=th.gap)
        body.add_widget(self.title_row())
        buttons = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=th.touch)
        self.test_lights = KButton(th, _press(self), "test_lights", kind="primary")
        self.test_sound = KButton(th, _press(self), "test_sound", kind="primary")
        buttons.add_widget(self.test_lights)
        buttons.add_widget(self.test_sound)
        body.add_widget(buttons)
        table = GridLayout(cols=2, spacing=(th.pad, th.gap * 0.5))
        self.names: dict[str, Text] = {}
        self.results: dict[str, Text] = {}
        for part in SELFTEST_PARTS:
            self.names[part] = Text(th, halign="left", color=th.palette.muted, prefer_single=True)
            self.results[part] = Text(th, halign="left", bold=True)
            self.results[part].ident = f"result:{part}"
            table.add_widget(self.names[part])
            table.add_widget(self.results[part])
        body.add_widget(table)
        self.hints = Text(th, size=th.font_small, color=th.palette.muted, halign="left", size_hint_y=0.5)
        body.add_widget(self.hints)
        self.back = self.back_button()
        body.add_widget(self.back)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        results = model.get("results") or {}
        self.title.text = t("staff.selftest.title")
        self.test_lights.text = t("staff.selftest.test_lights")
        self.test_sound.text = t("staff.selftest.test_sound")
        for part in SELFTEST_PARTS:
            self.names[part].text = t(f"staff.selftest.{part}")
            self.results[part].text = selftest_value(results.get(part), t)
        self.test_lights.disabled = results.get("lights") == "running"
        self.test_sound.disabled = results.get("sound") == "running"
        self.hints.text = (icon(ICON_INFO) + " " + t("staff.selftest.scan_hint") + "\n"
                           + icon(ICON_INFO) + " " + t("staff.selftest.card_hint"))
        self.back.text = t("staff.back")


# -- restart / shutdown ------------------------------------------------------------------


class StaffConfirmScreen(StaffScreen):
    screen = "staff_confirm"

    def build_body(self) -> Widget:
        th = self.ctx.theme
        body = BoxLayout(orientation="vertical", spacing=th.gap)
        body.add_widget(self.title_row())
        self.message = Text(th, size=th.font_body)
        body.add_widget(self.message)
        actions = BoxLayout(orientation="vertical" if th.portrait else "horizontal", spacing=th.gap,
                            size_hint_y=None, height=th.touch * (2 if th.portrait else 1) + (th.gap if th.portrait else 0))
        self.back = KButton(th, _press(self), "back")
        self.confirm = KButton(th, _press(self), "confirm", kind="warn")
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


# -- counter registration ----------------------------------------------------------------

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
        press = _press(self)
        body = BoxLayout(orientation="vertical", spacing=th.gap)
        body.add_widget(self.title_row())
        self.stage = BoxLayout(orientation="vertical", spacing=th.gap)
        body.add_widget(self.stage)
        self.actions = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=th.touch)
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
        self.pad, self.keys = _pin_pad(self)
        self.pad_holder = AnchorLayout(anchor_x="center", anchor_y="center")
        self.pad_holder.add_widget(self.pad)
        self.dots = Text(th, size=th.font_huge, fixed_font=True, font_name=fonts.ICON_FONT_NAME, prefer_single=True)
        self.tries = Text(th, size=th.font_body, prefer_single=True, size_hint_y=0.7)
        self.pin_words = BoxLayout(orientation="vertical", spacing=th.gap)
        # Portrait: the pad goes under the words; landscape: in a side column as tall as
        # the screen below the header (as on the patron PIN screen), empty on other steps.
        self.pin_row = BoxLayout(orientation="vertical", spacing=th.pad)
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
        self.facts = GridLayout(cols=2, spacing=(th.pad, th.gap), size_hint_y=None,
                                height=th.font_title * 1.8 * 2 + th.gap)
        self.card_label = Text(th, halign="left", color=th.palette.muted, prefer_single=True)
        self.card_value = Text(th, halign="left", bold=True, size=th.font_title, prefer_single=True)
        self.card_value.ident = "patron_id"
        self.valid_label = Text(th, halign="left", color=th.palette.muted, prefer_single=True)
        self.valid_value = Text(th, halign="left", bold=True, prefer_single=True)
        self.valid_value.ident = "valid_until"
        for w in (self.card_label, self.card_value, self.valid_label, self.valid_value):
            self.facts.add_widget(w)
        self.linked_before = Text(th, size=th.font_body, bold=True, color=th.palette.warn)
        self.linked_before.ident = "linked_before"
        self.step: str | None = None
        self._layout: tuple | None = None
        return body

    def compose(self) -> Widget:
        if self.ctx.theme.portrait:
            return super().compose()
        return side_by_side(self, (self.banners, self.body, self.footer), self.side)

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
        elif step == "last_try":
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
                self.tries.text = (icon(ICON_WARN) + " " if warn else "") + t("pin.tries_left", n=tries)
                self.tries.color = th.palette.warn if warn else th.palette.text
            else:
                self.tries.text = ""
            self.detail.text = t("staff.register.pin_hint")
            _label_pad_keys(self.keys, t)
        elif step == "last_try":
            self.message.text = icon(ICON_WARN) + " " + t("staff.register.last_try")
            self.message.color = th.palette.warn
            self.message.bold = True
            self.detail.text = t("staff.register.last_try_body")
        elif step in BUSY_STEPS:
            self.message.text = t(BUSY_STEPS[step])
            self.detail.text = t("common.keep_card") if step != "linking" else ""
        elif step == "scan":
            self.message.text = t("staff.register.scan")
        elif step == "confirm":
            self.card_label.text = t("staff.register.library_card")
            self.card_value.text = escape(str(model.get("patron_id") or ""))
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
