"""Idle / attract screen: how to start, languages, library-card sign-in, help.

The help overlay is opened by the session (`help` in the model) so that its
timeout and reset rules are the session's; the larger-text and high-contrast
toggles are the view's own business (they change no session state) and are reset
by the view whenever a patron's session ends.
"""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.widget import Widget

from kiosk.i18n import Translator
from kiosk.screens import fonts
from kiosk.screens.base import KioskScreen
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.context import paint
from kiosk.screens.widgets.drawings import CardArt
from kiosk.screens.widgets.language_bar import LanguageBar
from kiosk.screens.widgets.layout import ModalLayer, TextColumn, TextRow, set_font
from kiosk.screens.widgets.text import ICON_INFO, ICON_OK, Text, escape, icon


class IdleScreen(KioskScreen):
    reserve_countdown = False       # never times out
    screen = "idle"
    language_bar = False

    def build(self, ctx) -> None:
        # Large text on a landscape panel: the language buttons move to the header, as on
        # every other screen, so that the words keep a readable size.
        th = ctx.theme
        self.language_bar = th.large_text and not th.portrait
        super().build(ctx)

    def build_body(self) -> Widget:
        ctx, th = self.ctx, self.ctx.theme
        body = TextColumn(spacing=th.gap)
        self.title = Text(th, size=th.font_title, bold=True)
        self.subtitle = Text(th, size=th.font_body, color=th.palette.muted)
        self.art = CardArt(th, "down")
        if th.portrait:
            self.title.size_hint_y = 1.2
            self.subtitle.size_hint_y = 0.8
            body.add_widget(self.title)
            body.add_widget(self.subtitle)
            body.add_widget(self.art)
        else:
            top = TextRow(spacing=th.gap)
            self.art.size_hint_x = 0.4
            words = TextColumn(spacing=th.gap)
            words.add_widget(self.title)
            self.subtitle.size_hint_y = 0.6
            words.add_widget(self.subtitle)
            top.add_widget(self.art)
            top.add_widget(words)
            body.add_widget(top)
        press = lambda a, v: ctx.press(a, v)  # noqa: E731
        cols = 2 if th.portrait or th.large_text else 4     # large text: two-line labels need the width
        self.actions = GridLayout(cols=cols, spacing=th.gap, size_hint_y=None,
                                  height=th.two_line_touch * (4 // cols) + th.gap * (4 // cols - 1))
        self.library_card = KButton(th, press, "library_card", kind="primary")
        self.help = KButton(th, press, "help")
        toggle = lambda what, _v: ctx.toggle(what)  # noqa: E731
        self.large_text = KButton(th, toggle, "large_text", kind="selected" if th.large_text else "secondary")
        self.high_contrast = KButton(th, toggle, "high_contrast", kind="selected" if th.high_contrast else "secondary")
        for b in (self.library_card, self.help, self.large_text, self.high_contrast):
            self.actions.add_widget(b)
        self.return_books = KButton(th, press, "return_books", kind="primary")   # added when configured
        self.card_number = KButton(th, press, "card_number")       # added when configured (loans.manual_card_entry)
        body.add_widget(self.actions)
        self.languages: LanguageBar | None = None
        if not self.language_bar:
            self.languages = LanguageBar(ctx, compact=False, cols=3 if th.portrait else None)
            body.add_widget(self.languages)
        return body

    def after_build(self) -> None:
        self.help_overlay: ModalLayer | None = None

    def banner_specs(self, model: dict, t: Translator) -> list[tuple[str, str, str]]:
        specs = []
        if model.get("reader_ok") is False:
            msgid = "idle.reader_unavailable" if model.get("library_card") else "idle.reader_unavailable_counter"
            specs.append(("error", t(msgid), "reader_unavailable"))
        return specs + super().banner_specs(model, t)

    def render_body(self, model: dict, t: Translator) -> None:
        th = self.ctx.theme
        # With the reader down, the steps that follow the card would contradict the banner
        # (and their room is what the banner needs on a small panel in large text).
        reader_ok = model.get("reader_ok") is not False
        self.title.text = t("idle.title")
        self.subtitle.text = t("idle.subtitle") if reader_ok else ""
        self.art.opacity = 1 if reader_ok else 0
        self.library_card.text = t("idle.library_card")
        self.library_card.disabled = not model.get("library_card", True)
        self.library_card.opacity = 1 if model.get("library_card", True) else 0
        self.help.text = icon(ICON_INFO) + " " + t("idle.help")
        self._render_return_button(bool(model.get("return_button")), t)
        self._in_actions(self.card_number, bool(model.get("card_number")))
        self.card_number.text = t("idle.card_number")
        for button, msgid, on in ((self.large_text, "idle.large_text", th.large_text),
                                  (self.high_contrast, "idle.high_contrast", th.high_contrast)):
            state = t("common.on") if on else t("common.off")
            button.text = (icon(ICON_OK) + " " if on else "") + f"{t(msgid)}: {state}"
        if self.languages is not None:
            self.languages.render(t.lang)
        self._render_help(bool(model.get("help")), t)

    def _render_return_button(self, wanted: bool, t: Translator) -> None:
        """The optional "return books" button, one more cell of the action grid."""
        self._in_actions(self.return_books, wanted)
        self.return_books.text = t("idle.return_books")

    def _in_actions(self, button: KButton, wanted: bool) -> None:
        """An optional button, one more cell of the action grid (after the library card)."""
        th = self.ctx.theme
        if wanted != (button.parent is not None):
            if wanted:
                self.actions.add_widget(button, index=len(self.actions.children) - 1)
            else:
                self.actions.remove_widget(button)
            n = len(self.actions.children)
            rows = -(-n // self.actions.cols)
            self.actions.height = th.two_line_touch * rows + th.gap * (rows - 1)

    def _render_help(self, open_: bool, t: Translator) -> None:
        if not open_:
            if self.help_overlay is not None:
                self.remove_widget(self.help_overlay)
                self.help_overlay = None
            return
        if self.help_overlay is None:
            self.help_overlay = self._build_help()
            self.add_widget(self.help_overlay)
        self._help_title.text = t("help.title")
        paragraphs = [t("help.card"), t("help.notification_card"), t("help.pin"), t("help.counter"),
                      t("help.privacy")]
        if self.ctx.help_text:
            paragraphs.append(escape(self.ctx.help_text))
        for label, text in zip(self._help_texts, paragraphs):
            label.text = "•\u00a0" + text
        self._help_close.text = t("help.close")
        set_font(self.help_overlay, fonts.registered(t.lang))

    def _build_help(self) -> ModalLayer:
        from kivy.uix.scrollview import ScrollView  # only the help overlay scrolls

        ctx, th = self.ctx, self.ctx.theme
        layer = ModalLayer()
        paint(layer, (0, 0, 0, 0.55))
        panel = BoxLayout(orientation="vertical", size_hint=(0.92, 0.9), pos_hint={"center_x": 0.5, "center_y": 0.5},
                          padding=th.pad, spacing=th.gap)
        paint(panel, th.palette.surface, radius=th.gap * 2)
        self._help_title = Text(th, size=th.font_title, bold=True, size_hint_y=None, height=th.font_title * 1.8)
        panel.add_widget(self._help_title)
        scroll = ScrollView(do_scroll_x=False, bar_width=max(4, th.gap))
        column = BoxLayout(orientation="vertical", size_hint_y=None, spacing=th.gap * 1.5)
        column.bind(minimum_height=column.setter("height"))
        count = 6 if ctx.help_text else 5
        self._help_texts = [Text(th, halign="left", grow=True, size_hint_y=None) for _ in range(count)]
        for label in self._help_texts:
            column.add_widget(label)
        scroll.add_widget(column)
        panel.add_widget(scroll)
        self._help_close = KButton(th, lambda a, v: ctx.press(a, v), "close_help", kind="primary",
                                   size_hint_y=None, height=th.touch)
        panel.add_widget(self._help_close)
        layer.add_widget(panel)
        return layer

    def clear_body(self) -> None:
        if self.help_overlay is not None:
            self.remove_widget(self.help_overlay)
            self.help_overlay = None

    def activate(self) -> None:
        self.art.start()

    def deactivate(self) -> None:
        self.art.stop()
