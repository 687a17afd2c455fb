"""Waiting screens: reading the card, authenticating, confirming the last loans.

One screen shown under three names: the same turning arc, title and line, only the
words differ (WORDS). The arc shows the kiosk is working; the words say whether the
card must stay on the reader (it must, until the signature is checked).
"""

from __future__ import annotations

from typing import Callable

from kivy.uix.anchorlayout import AnchorLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets.drawings import Spinner
from kiosk.screens.widgets.layout import TextColumn
from kiosk.screens.widgets.text import Text


def _reading_card(model: dict, t: Translator) -> tuple[str, str]:
    return t("reading.title"), t("common.keep_card")


def _authenticating(model: dict, t: Translator) -> tuple[str, str]:
    if model.get("stage") == "patron":
        return t("auth.title.patron"), t("common.please_wait")
    return t("auth.title.card"), t("common.keep_card")


def _finishing(model: dict, t: Translator) -> tuple[str, str]:
    return t("finishing.title"), t.plural("finishing.pending", int(model.get("pending") or 0))


# The title and the line under the arc, by the name the screen is shown under.
WORDS: dict[str, Callable[[dict, Translator], tuple[str, str]]] = {
    "reading_card": _reading_card,
    "authenticating": _authenticating,
    "finishing": _finishing,
}


class ProgressScreen(KioskScreen):
    """Made by the view under each name in WORDS (kiosk/screens/view.py, SCREEN_CLASSES)."""
    reserve_countdown = False       # never times out

    language_bar = False

    def build_body(self) -> Widget:
        th = self.ctx.theme
        body = TextColumn(spacing=th.gap)
        self.title = Text(th, size=th.font_title, bold=True)
        holder = AnchorLayout()
        self.spinner = Spinner(th, size_hint=(None, None), size=(0, 0))
        holder.add_widget(self.spinner)

        def follow(_w, size) -> None:
            edge = max(0.0, min(size[0], size[1], th.height * 0.3) * 0.9)
            self.spinner.size = (edge, edge)

        holder.bind(size=follow)
        self.detail = Text(th, size=th.font_body, color=th.palette.muted)
        body.add_widget(self.title)
        body.add_widget(holder)
        body.add_widget(self.detail)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        self.title.text, self.detail.text = WORDS[self.screen](model, t)

    def clear_body(self) -> None:
        self.detail.text = ""           # finishing counts the patron's loans there

    def activate(self) -> None:
        self.spinner.start()

    def deactivate(self) -> None:
        self.spinner.stop()
