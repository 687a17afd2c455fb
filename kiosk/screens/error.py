"""Why the kiosk cannot go on, in friendly words, and whether staff can help.

Every CardError and Refusal value and "timeout" has its own message (a test checks
all of them in every language); the catalogue's own text is never shown here. Where a
library card would get the patron their books today, the screen offers that sign-in.
"""

from __future__ import annotations

from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.text import ICON_INFO, ICON_WARN, Text, icon


def error_text(code: str | None, t: Translator) -> str:
    msgid = f"error.{code}"
    return t(msgid) if code and t.has(msgid) else t("error.unknown")


class ErrorScreen(KioskScreen):
    screen = "error"

    def build_body(self) -> Widget:
        ctx, th = self.ctx, self.ctx.theme
        body = TextColumn(spacing=th.gap)
        self.title = Text(th, size=th.font_title, bold=True, color=th.palette.error, size_hint_y=0.7)
        self.message = Text(th, size=th.font_title, size_hint_y=1.4)
        self.counter = Text(th, size=th.font_body, bold=True)
        self.ok = KButton(th, lambda a, v: ctx.press(a, v), "ok", kind="primary", size_hint=(None, None),
                          width=max(th.touch * 3.5, th.width * 0.36), height=th.touch, pos_hint={"center_x": 0.5})
        # Offered where a library card gets the patron their books today (a card refused for
        # its certificate, its PIN lock or its kind); added to the column only then.
        self.library_card = KButton(th, lambda a, v: ctx.press(a, v), "library_card", kind="secondary",
                                    size_hint=(None, None), width=min(th.width * 0.9, max(th.touch * 5, th.width * 0.5)),
                                    height=th.two_line_touch, pos_hint={"center_x": 0.5})
        self.body = body
        for w in (self.title, self.message, self.counter, self.ok):
            body.add_widget(w)
        return body

    def _offer_library_card(self, wanted: bool) -> None:
        shown = self.library_card.parent is not None
        if wanted and not shown:
            self.body.add_widget(self.library_card, index=1)     # just above OK
        elif shown and not wanted:
            self.body.remove_widget(self.library_card)

    def render_body(self, model: dict, t: Translator) -> None:
        self.code = model.get("code")
        self.title.text = icon(ICON_WARN) + " " + t("error.title")
        self.message.text = error_text(self.code, t)
        if model.get("counter"):
            self.counter.text = icon(ICON_INFO) + " " + t("common.go_to_counter")
        else:
            self.counter.text = ""
        self._offer_library_card(False)
        self.ok.text = t("error.ok")
        self._offer_library_card(bool(model.get("library_card")))
        self.library_card.text = t("idle.library_card")

    def clear_body(self) -> None:
        self.code = None
        self.message.text = ""
        self.counter.text = ""
        self._offer_library_card(False)
