"""The self-test: lights and sound on request, the scanner and reader as they are used."""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.staff.base import StaffScreen, press_for
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.text import ICON_INFO, ICON_OK, Text, escape, icon

SELFTEST_PARTS = ("lights", "sound", "scanner", "reader")


def selftest_value(value: str | dict | None, t: Translator) -> str:
    """One self-test line in the staff member's language (the core sends codes, not words)."""
    if not value:
        return t("staff.selftest.not_tested")
    if isinstance(value, str):
        return t(f"staff.selftest.{value}")                  # running, done
    result = value["result"]
    if result == "scanned":
        return icon(ICON_OK) + " " + t.plural("staff.selftest.scanned", int(value["n"]))
    if result == "card":
        kind = t(f"staff.selftest.kind.{value['kind']}")
        tries = value["tries"]
        text = kind if tries is None else t.plural("staff.selftest.card", int(tries), kind=kind, tries=tries)
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
        self.test_lights = KButton(th, press_for(self), "test_lights", kind="primary")
        self.test_sound = KButton(th, press_for(self), "test_sound", kind="primary")
        buttons.add_widget(self.test_lights)
        buttons.add_widget(self.test_sound)
        body.add_widget(buttons)
        # The results and hints as tall as their words, in a scroll view on a small panel.
        scroll = ScrollView(do_scroll_x=False, bar_width=max(4, th.gap))
        content = BoxLayout(orientation="vertical", spacing=th.gap, size_hint_y=None)
        content.bind(minimum_height=content.setter("height"))
        table = GridLayout(cols=2, spacing=(th.pad, th.gap * 0.5), size_hint_y=None)
        table.bind(minimum_height=table.setter("height"))
        self.names: dict[str, Text] = {}
        self.results: dict[str, Text] = {}
        for part in SELFTEST_PARTS:
            self.names[part] = Text(th, halign="left", color=th.palette.muted, size_hint_y=None, grow=True)
            self.results[part] = Text(th, halign="left", bold=True, size_hint_y=None, grow=True)
            self.results[part].ident = f"result:{part}"
            table.add_widget(self.names[part])
            table.add_widget(self.results[part])
        content.add_widget(table)
        self.hints = Text(th, size=th.font_small, color=th.palette.muted, halign="left", size_hint_y=None,
                          grow=True)
        content.add_widget(self.hints)
        scroll.add_widget(content)
        body.add_widget(scroll)
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
