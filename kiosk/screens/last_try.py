"""One PIN try left: say plainly what a wrong PIN does and ask for an explicit yes.

A third wrong PIN locks the certificate and only the city office can unlock it, so
the kiosk never lets that happen by accident: the pad is reached only through the
confirm button, and cancelling is just as easy.
"""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.text import ICON_WARN, Text, icon


class LastTryScreen(KioskScreen):
    screen = "last_try"

    def build_body(self) -> Widget:
        ctx, th = self.ctx, self.ctx.theme
        press = lambda a, v: ctx.press(a, v)  # noqa: E731
        body = TextColumn(spacing=th.gap)
        self.title = Text(th, size=th.font_title, bold=True, color=th.palette.warn, size_hint_y=0.9)
        self.body_text = Text(th, size=th.font_body, size_hint_y=1.1)
        self.advice = Text(th, size=th.font_body, color=th.palette.muted)
        for w in (self.title, self.body_text, self.advice):
            body.add_widget(w)
        actions = BoxLayout(orientation="vertical" if th.portrait else "horizontal", spacing=th.gap,
                            size_hint_y=None, height=th.touch * (2 if th.portrait else 1) + (th.gap if th.portrait else 0))
        self.cancel = KButton(th, press, "cancel", kind="secondary")
        self.confirm = KButton(th, press, "confirm_last_try", kind="warn")
        actions.add_widget(self.cancel)
        actions.add_widget(self.confirm)
        body.add_widget(actions)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        self.title.text = icon(ICON_WARN) + " " + t("last_try.title")
        self.body_text.text = t("last_try.body")
        self.advice.text = t("last_try.advice")
        self.cancel.text = t("common.cancel")
        self.confirm.text = t("last_try.confirm")
