"""Out of service: staff switched the kiosk off, or it cannot work right now.

No patron is here to pick a language (and the screen has no language buttons), so it says
so in the kiosk's default language, large, and then once in each of its other languages,
each in its own font."""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator, translator
from kiosk.screens import fonts
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets.text import Text


class OutOfServiceScreen(KioskScreen):
    reserve_countdown = False       # never times out
    screen = "out_of_service"
    language_bar = False

    def build_body(self) -> Widget:
        th = self.ctx.theme
        body = BoxLayout(orientation="vertical", spacing=th.gap)
        self.title = Text(th, size=th.font_huge, bold=True, size_hint_y=1.3)
        self.detail = Text(th, size=th.font_title, color=th.palette.muted)
        body.add_widget(self.title)
        body.add_widget(self.detail)
        self.others: dict[str, Text] = {}
        for lang in self.ctx.languages:
            if lang != self.ctx.default_language:
                line = Text(th, size=th.font_body, color=th.palette.muted, fixed_font=True,
                            font_name=fonts.registered(lang), size_hint_y=0.55)
                line.ident = f"oos:{lang}"
                self.others[lang] = line
                body.add_widget(line)
        return body

    def render_body(self, model: dict, t: Translator) -> None:
        self.title.text = t("oos.title")
        self.detail.text = t("oos.body")
        for lang, line in self.others.items():
            if lang == t.lang:          # the model's language is already said above
                line.text = ""
                continue
            other = translator(lang)
            line.text = other("oos.title") + " — " + other("oos.body")
