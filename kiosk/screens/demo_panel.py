"""The demo's control panel beside the kiosk screen: simulated card and scanner.

It stands in for the hardware a demo laptop lacks: put a virtual My Number Card on
the reader or take it away, "scan" sample barcodes, and see the status LEDs and
sound cues the kiosk would drive. It talks only to a `DemoControls` given by the
app builder (kiosk.shell.demo.DemoDevices), never to the session: the kiosk must react
to the simulated devices exactly as to real ones.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from kivy.graphics import Color, Ellipse, Line
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.scrollview import ScrollView
from kivy.uix.widget import Widget

from kiosk.i18n import translator
from kiosk.screens import fonts
from kiosk.screens.theme import Theme
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.context import paint
from kiosk.screens.widgets.layout import set_font
from kiosk.screens.widgets.notices import Badge
from kiosk.screens.widgets.text import Text, escape


@runtime_checkable
class DemoControls(Protocol):
    """What the panel needs from the demo's simulated devices.

    Optional extras used when present: `card_description(name) -> str` and
    `reset_cards()` (give the demo cards their PIN tries back).
    """

    def card_names(self) -> list[str]: ...

    def insert_card(self, name: str) -> None: ...

    def remove_card(self) -> None: ...

    def sample_barcodes(self) -> list[tuple[str, str]]: ...

    def scan(self, code: str) -> None: ...


# Which of the three lamps (green, yellow, red) each pattern lights.
LAMPS = {
    "ready": (True, False, False), "busy": (False, True, False), "success": (True, False, False),
    "refused": (False, False, True), "error": (False, False, True), "card_left": (False, True, True),
    "out_of_service": (False, False, True), "off": (False, False, False),
}
_LAMP_COLORS = ((0.1, 0.75, 0.25, 1), (1.0, 0.75, 0.0, 1), (0.9, 0.15, 0.1, 1))


class LampRow(Widget):
    """Three round lamps; the words next to them say the same (not colour alone)."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.states = (False, False, False)
        self.bind(pos=self._draw, size=self._draw)

    def set(self, states: tuple[bool, bool, bool]) -> None:
        self.states = states
        self._draw()

    def _draw(self, *_) -> None:
        self.canvas.clear()
        d = min(self.height * 0.8, self.width / 4)
        gap = (self.width - 3 * d) / 4
        with self.canvas:
            for i, (on, rgba) in enumerate(zip(self.states, _LAMP_COLORS)):
                x = self.x + gap + i * (d + gap)
                y = self.center_y - d / 2
                r, g, b, a = rgba
                Color(r, g, b, 1 if on else 0.15)
                Ellipse(pos=(x, y), size=(d, d))
                Color(0.2, 0.2, 0.2, 1)
                Line(circle=(x + d / 2, y + d / 2, d / 2), width=1.2)


class DemoPanel(BoxLayout):
    def __init__(self, controls: DemoControls, theme: Theme, language: str = "ja", **kw) -> None:
        super().__init__(orientation="vertical", padding=theme.pad * 0.6, spacing=theme.gap, **kw)
        self.controls = controls
        self.theme = theme
        self.lang = language
        self.pattern = "off"
        self.sound: str | None = None
        p = theme.palette
        paint(self, (0.16, 0.17, 0.2, 1))
        small = theme.font_small
        row_h = max(theme.small_touch, small * 2.4)
        head = BoxLayout(orientation="horizontal", size_hint_y=None, height=row_h, spacing=theme.gap)
        self.badge = Badge(theme, "DEMO", p.error, p.on_error, ident="demo:badge", fixed_font=True,
                           font_name=fonts.registered("en"))
        self.title = Text(theme, size=small, color=(1, 1, 1, 1), halign="left", bold=True)
        head.add_widget(self.badge)
        head.add_widget(self.title)
        self.add_widget(head)

        self.lights_label = Text(theme, size=small, color=(1, 1, 1, 1), halign="left", size_hint_y=None,
                                 height=small * 1.6)
        self.lamps = LampRow(size_hint_y=None, height=row_h)
        self.sound_label = Text(theme, size=small, color=(0.85, 0.85, 0.85, 1), halign="left", size_hint_y=None,
                                height=small * 1.6)
        for w in (self.lights_label, self.lamps, self.sound_label):
            self.add_widget(w)

        self.scroll = scroll = ScrollView(do_scroll_x=False, bar_width=max(4, theme.gap))
        column = BoxLayout(orientation="vertical", size_hint_y=None, spacing=theme.gap)
        column.bind(minimum_height=column.setter("height"))
        self.cards_label = Text(theme, size=small, color=(1, 1, 1, 1), halign="left", bold=True,
                                size_hint_y=None, height=small * 1.8)
        column.add_widget(self.cards_label)
        self.card_buttons: dict[str, KButton] = {}
        for name in controls.card_names():
            b = KButton(theme, lambda _a, v: self.controls.insert_card(v), "demo_insert", name,
                        size=small, size_hint_y=None, height=row_h * 1.3)
            self.card_buttons[name] = b
            column.add_widget(b)
        self.remove = KButton(theme, lambda _a, _v: self.controls.remove_card(), "demo_remove", kind="warn",
                              size=small, size_hint_y=None, height=row_h)
        column.add_widget(self.remove)
        self.reset: KButton | None = None
        if callable(getattr(controls, "reset_cards", None)):
            self.reset = KButton(theme, lambda _a, _v: self.controls.reset_cards(), "demo_reset",
                                 size=small, size_hint_y=None, height=row_h)
            column.add_widget(self.reset)
        self.barcodes_label = Text(theme, size=small, color=(1, 1, 1, 1), halign="left", bold=True,
                                   size_hint_y=None, height=small * 1.8)
        column.add_widget(self.barcodes_label)
        self.barcode_buttons: list[KButton] = []
        for label, code in controls.sample_barcodes():
            b = KButton(theme, lambda _a, v: self.controls.scan(v), "demo_scan", code, size=small,
                        size_hint_y=None, height=row_h * 1.3)
            b.text = f"{escape(label)}\n{escape(code)}"
            self.barcode_buttons.append(b)
            column.add_widget(b)
        scroll.add_widget(column)
        self.add_widget(scroll)
        self.render()

    def on_view_event(self, kind: str, value: str) -> None:
        """Listener for KioskView.add_listener: lights, cues and the patron's language."""
        if kind == "lights":
            self.pattern = value
        elif kind == "cue":
            self.sound = value
        elif kind == "language":
            self.lang = value
        self.render()

    def render(self) -> None:
        t = translator(self.lang)
        self.title.text = t("demo.title")
        self.lamps.set(LAMPS.get(self.pattern, LAMPS["off"]))
        words = t(f"lights.{self.pattern}") if t.has(f"lights.{self.pattern}") else self.pattern
        self.lights_label.text = f"{t('demo.lights')}: {words}"
        sound = t(f"cue.{self.sound}") if self.sound and t.has(f"cue.{self.sound}") else "—"
        self.sound_label.text = f"{t('demo.sound')}: {sound}"
        self.cards_label.text = t("demo.cards")
        describe = getattr(self.controls, "card_description", None)
        for name, b in self.card_buttons.items():
            text = t("demo.insert", name=escape(name))
            if callable(describe):
                text += "\n" + escape(describe(name))
            b.text = text
        self.remove.text = t("demo.remove")
        if self.reset is not None:
            self.reset.text = t("demo.reset")
        self.barcodes_label.text = t("demo.barcodes")
        set_font(self, fonts.registered(self.lang))
