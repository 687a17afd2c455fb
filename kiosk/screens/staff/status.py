"""The kiosk's status for staff: reader, catalogue, outbox, versions, in words."""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.staff.base import StaffScreen
from kiosk.screens.widgets.text import Text, escape

STATUS_KEYS = ("reader", "scanner", "catalogue", "catalogue_error", "outbox_pending", "oldest_pending",
               "last_sync", "conflicts", "config_version", "app_version", "disk_free_mb", "uptime_s")


def status_value(key: str, value: object, t: Translator) -> str:
    """A status value in words; unknown values are shown as they came (escaped)."""
    if value is None or value == "":
        return "—"
    if key in ("reader", "catalogue") and isinstance(value, str):
        if value in ("ok", "unavailable"):
            return t(f"staff.value.{value}")
        if value.startswith("failing (") and value.endswith(")") and value[len("failing ("):-1].isdigit():
            return t.plural("staff.value.failing", int(value[len("failing ("):-1]))
    # Config words (hardware.scanner, a site-local configuration) in the staff's language.
    if key == "scanner" and isinstance(value, str) and t.has(f"staff.value.scanner.{value}"):
        return t(f"staff.value.scanner.{value}")
    if key == "config_version" and value == "site":
        return t("staff.value.config_site")
    if key in ("oldest_pending", "last_sync") and isinstance(value, str):
        return escape(value.replace("T", " ")[:16])
    if key == "catalogue_error" and isinstance(value, str) and t.has(f"staff.status.reason.{value}"):
        return t(f"staff.status.reason.{value}")
    if key == "store_problem" and isinstance(value, str) and t.has(f"staff.store_problem.{value}"):
        return t(f"staff.store_problem.{value}")
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
        # Rows as tall as their words (a long name wraps) in the scroll view, never squeezed.
        for key in keys:
            msgid = f"staff.status.{key}"
            name = Text(th, text=t(msgid) if t.has(msgid) else escape(key), halign="left", color=th.palette.muted,
                        size_hint_y=None, grow=True)
            value = Text(th, text=status_value(key, status[key], t), halign="left", bold=True,
                         size_hint_y=None, grow=True)
            value.ident = f"status:{key}"
            self.values[key] = value
            self.table.add_widget(name)
            self.table.add_widget(value)

    def clear_body(self) -> None:
        self.table.clear_widgets()
        self.values = {}
