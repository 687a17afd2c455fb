"""The frame every patron screen shares: header, banners, body, countdown.

A screen is built once per theme (window size, contrast, text size) and rendered
from the session's plain model as often as the model changes. `clear()` empties
everything that came from a patron; the view calls it whenever a screen is left,
so nothing of a session stays in the widget tree.
"""

from __future__ import annotations

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.screenmanager import Screen
from kivy.uix.widget import Widget

from kiosk.i18n import Translator, translator
from kiosk.screens import fonts
from kiosk.screens.widgets.buttons import KButton
from kiosk.screens.widgets.context import Context, paint
from kiosk.screens.widgets.language_bar import LanguageBar
from kiosk.screens.widgets.layout import Slot, TextColumn, scroll_fit, set_font
from kiosk.screens.widgets.notices import Badge, Banner, CountdownBar
from kiosk.screens.widgets.text import Text, escape

# Notices that report progress rather than a problem.
INFO_NOTICES = {"printing", "already_on_list"}


class Header(BoxLayout):
    """Library name, TEST/DEMO badges and (on most screens) a compact language bar.

    In portrait the language buttons get a row of their own above the name, so that each
    language name is readable in full; in landscape with large text the name is left out
    to give them the width (idle, which has no compact bar, always shows it)."""

    def __init__(self, ctx: Context, language_bar: bool) -> None:
        th = ctx.theme
        two_rows = language_bar and th.portrait
        name_row = th.font_body * 1.5
        super().__init__(orientation="vertical" if two_rows else "horizontal", size_hint_y=None,
                         height=th.header + name_row + th.gap if two_rows else th.header, spacing=th.gap)
        self.ctx = ctx
        # Badges that share the row with the language buttons keep one width in every
        # language (else a swap moves the buttons); in portrait the buttons have a row of
        # their own and the name needs the room on a narrow panel, so they fit their words
        # (held at their widest, Vietnamese, wording they would clip a library's name in
        # large text on the 720-px Touch Display 2; nothing a finger touches moves).
        self._steady_badges = language_bar and not two_rows
        self.name = Text(th, text=escape(ctx.library_name), halign="left", size=th.font_body, bold=True,
                         color=th.palette.muted, fixed_font=True, font_name=fonts.registered(ctx.default_language),
                         prefer_single=True)
        self.badges = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_x=None, width=0)
        self.languages: LanguageBar | None = None
        if language_bar:
            self.languages = LanguageBar(ctx, compact=True)
            if two_rows:
                below = BoxLayout(orientation="horizontal", spacing=th.gap, size_hint_y=None, height=name_row)
                below.add_widget(self.name)
                below.add_widget(self.badges)
                self.languages.size_hint_y = None
                self.languages.height = th.header
                self.add_widget(self.languages)
                self.add_widget(below)
            else:
                if not th.large_text:
                    # Badges as wide as their widest wording (see _badge) leave the language
                    # buttons this share of the rest: still at least 9 mm wide on a 7" panel.
                    self.name.size_hint_x = 0.4
                    self.languages.size_hint_x = 0.6
                    self.add_widget(self.name)
                self.add_widget(self.badges)
                self.add_widget(self.languages)
        else:
            self.add_widget(self.name)
            self.add_widget(self.badges)
        self._badges: tuple | None = None

    def _badge(self, msgid: str, color, on_color, ident: str, t: Translator) -> Badge:
        th = self.ctx.theme
        badge = Badge(th, t(msgid), color, on_color, ident=ident, font_name=fonts.registered(t.lang))
        # As wide as its widest wording in this kiosk's languages (not a fixed guess that
        # squeezes the name): a language swap never resizes it or moves what is beside it.
        for lang in self.ctx.languages if self._steady_badges else ():
            if lang != t.lang:
                other = Badge(th, translator(lang)(msgid), color, on_color, font_name=fonts.registered(lang))
                badge.width = max(badge.width, other.width)
        return badge

    def render(self, model: dict, t: Translator) -> None:
        th = self.ctx.theme
        wanted = (bool(model.get("test_pki")), self.ctx.demo, t.lang)
        if wanted != self._badges:
            self._badges = wanted
            self.badges.clear_widgets()
            if wanted[0]:
                self.badges.add_widget(self._badge("common.test_badge", th.palette.warn, th.palette.on_warn,
                                                   "badge:test", t))
            if wanted[1]:
                self.badges.add_widget(self._badge("common.demo_badge", th.palette.error, th.palette.on_error,
                                                   "badge:demo", t))
            self.badges.width = sum(b.width for b in self.badges.children) + th.gap * len(self.badges.children)
        if self.languages is not None:
            self.languages.render(t.lang)


class KioskScreen(Screen):
    screen = ""                 # the session's screen name
    language_bar = True         # compact language buttons in the header
    # The countdown's room is kept free while it is not shown, so that nothing moves under
    # a finger when it appears (screens that never time out give the room to the body).
    reserve_countdown = True
    # The notice shown while the catalogue cannot be reached (screens that keep working offline).
    offline_msgid = ""

    def __init__(self, ctx: Context, screen: str = "") -> None:
        if screen:
            self.screen = screen    # the name the view made it for (one class may draw several)
        super().__init__(name=self.screen)
        self.ctx = ctx
        self.built_for: object | None = None       # the theme it was built with (None: not yet)
        self._banner_specs: list | None = None
        self.model: dict = {}

    # -- building ---------------------------------------------------------------

    def build(self, ctx: Context) -> None:
        self.ctx = ctx
        th = ctx.theme
        self.clear_widgets()
        self.header = Header(ctx, self.language_bar)
        self.banners = self._strip()
        # Standing notices (holds ready, offline, an account's blocks) go here when the
        # screen places this strip among its words; else they join the banners.
        self.notes = self._strip()
        self.notes.bind(height=self._notes_resized)
        self.body = self.build_body()
        self.footer = Slot()
        self.countdown = CountdownBar(ctx)
        self.countdown_room = Widget(size_hint_y=None, height=self.countdown.height)
        self.frame = self.compose()
        paint(self.frame, th.palette.bg)
        self.add_widget(self.frame)
        self._banner_specs = self._note_specs = None
        self.after_build()
        self.built_for = th

    def _strip(self) -> BoxLayout:
        strip = BoxLayout(orientation="vertical", size_hint_y=None, height=0, spacing=self.ctx.theme.gap)
        strip.bind(minimum_height=strip.setter("height"))
        return strip

    def _notes_resized(self, *_) -> None:
        if isinstance(self.notes.parent, TextColumn):
            self.notes.parent.poke()

    def build_body(self) -> Widget:
        raise NotImplementedError

    def compose(self) -> Widget:
        """Header, banners, body and countdown top to bottom; a screen may arrange them otherwise."""
        th = self.ctx.theme
        frame = BoxLayout(orientation="vertical", padding=th.pad, spacing=th.gap)
        for w in (self.header, self.banners, scroll_fit(self.body), self.footer):
            frame.add_widget(w)
        return frame

    def after_build(self) -> None:
        """Overlays on top of the frame (help)."""

    # -- rendering ----------------------------------------------------------------

    def render(self, model: dict, t: Translator) -> None:
        self.model = model
        font = fonts.registered(t.lang)
        self.header.render(model, t)
        banners, notes = self.banner_specs(model, t), self.note_specs(model, t)
        if self.notes.parent is None:
            banners, notes = banners + notes, []
        self._banner_specs = self._render_strip(self.banners, banners, self._banner_specs, font)
        self._note_specs = self._render_strip(self.notes, notes, self._note_specs, font)
        seconds = model.get("countdown")
        if seconds is None:
            self.footer.set(self.countdown_room if self.reserve_countdown else None)
        else:
            if self.countdown.parent is None:
                self.footer.set(self.countdown, self.countdown.height)
        self.countdown.render(seconds, t, font)
        self.render_body(model, t)
        set_font(self.frame, font)

    def banner_specs(self, model: dict, t: Translator) -> list[tuple[str, str, str]]:
        """(kind, text, ident) for each strip above the body."""
        specs = []
        if model.get("card_reminder"):
            specs.append(("warn", t("common.card_reminder"), "card_reminder"))
        notice = model.get("notice")
        if notice:
            kind = "info" if notice in INFO_NOTICES else "warn"
            specs.append((kind, self.notice_text(notice, model, t), "notice:" + notice))
        return specs

    def note_specs(self, model: dict, t: Translator) -> list[tuple[str, str, str]]:
        """(kind, text, ident) for each standing notice: true for the whole visit, so on a
        screen with a list they sit with its words and leave the list its room."""
        if self.offline_msgid and model.get("offline"):
            return [("info", t(self.offline_msgid), "offline")]
        return []

    def notice_text(self, notice: str, model: dict, t: Translator) -> str:
        msgid = "notice." + notice
        if notice == "pin_incomplete":
            msgid += "." + (model.get("purpose") or "card")
        return t(msgid) if t.has(msgid) else t("error.unknown")

    def _render_strip(self, strip: BoxLayout, specs: list, shown: list | None, font: str) -> list:
        if specs != shown:
            strip.clear_widgets()
            for kind, text, ident in specs:
                strip.add_widget(Banner(self.ctx.theme, text, kind, font_name=font, ident=ident))
        return specs

    def render_body(self, model: dict, t: Translator) -> None:
        raise NotImplementedError

    # -- leaving ------------------------------------------------------------------

    def clear(self) -> None:
        """Forget the patron: rows, digits, names, notices."""
        self.model = {}
        if self.built_for is None:
            return
        self._banner_specs = self._note_specs = None
        self.banners.clear_widgets()
        self.notes.clear_widgets()
        self.footer.set(self.countdown_room if self.reserve_countdown else None)
        self.countdown.render(None, None, "")
        self.clear_body()

    def clear_body(self) -> None:
        pass

    def activate(self) -> None:
        """The screen became visible: start its animation."""

    def deactivate(self) -> None:
        """Stop animations so a hidden screen costs nothing."""


def message_column(screen: KioskScreen, *widgets: Widget) -> Widget:
    """The body of a message screen (take your card, scan your library card, thank you):
    its parts stacked top to bottom."""
    body = TextColumn(spacing=screen.ctx.theme.gap)
    for w in widgets:
        body.add_widget(w)
    return body


def centred_button(screen: KioskScreen, action: str, **kw: object) -> KButton:
    """The one wide button under a message (cancel, done), centred."""
    ctx, th = screen.ctx, screen.ctx.theme
    return KButton(th, lambda a, v: ctx.press(a, v), action, size_hint=(None, None),
                   width=max(th.touch * 3, th.width * 0.3), height=th.touch, pos_hint={"center_x": 0.5}, **kw)


def side_by_side(screen: KioskScreen, left: tuple[Widget, ...], right: Widget,
                 bottom: Widget | None = None, under_left: Widget | None = None) -> Widget:
    """Landscape frame: the header across the top, `left` stacked in a column, `right`
    (a keypad or a side panel) beside it at full height, `bottom` (the countdown) under both.
    `under_left` (the action buttons) stays in view under the column, which may scroll."""
    th = screen.ctx.theme
    frame = BoxLayout(orientation="vertical", padding=th.pad, spacing=th.gap)
    frame.add_widget(screen.header)
    row = BoxLayout(orientation="horizontal", spacing=th.pad)
    column = TextColumn(spacing=th.gap)
    for w in left:
        column.add_widget(w)
    if under_left is None:
        row.add_widget(scroll_fit(column))
    else:
        stack = BoxLayout(orientation="vertical", spacing=th.gap)
        stack.add_widget(scroll_fit(column))
        stack.add_widget(under_left)
        row.add_widget(stack)
    row.add_widget(right)
    frame.add_widget(row)
    if bottom is not None:
        frame.add_widget(bottom)
    return frame


def list_below(screen: KioskScreen, under: Widget) -> Widget:
    """Portrait frame of the screens with a book list: notices on top, then the words and
    the list (which keeps a whole row; on a crowded panel the words shrink to their
    readable least, then all of it scrolls), and `under`, the buttons, always in view."""
    th = screen.ctx.theme
    frame = BoxLayout(orientation="vertical", padding=th.pad, spacing=th.gap)
    for w in (screen.header, screen.banners, scroll_fit(screen.body), under, screen.footer):
        frame.add_widget(w)
    return frame



def list_beside(screen: KioskScreen, under_list: Widget | None = None, under_words: Widget | None = None) -> Widget:
    """Landscape frame of the screens with a book list (scanning, summary): instructions on
    the left keep their room (they scroll rather than shrink on a small panel in large
    text, with `under_words`, the main button, always in view below them); notices sit
    above the list on the right, `under_list` (the summary's receipt choice) below it;
    footer below all."""
    th = screen.ctx.theme
    frame = BoxLayout(orientation="vertical", padding=th.pad, spacing=th.gap)
    frame.add_widget(screen.header)
    row = BoxLayout(orientation="horizontal", spacing=th.pad)
    words = scroll_fit(screen.body)
    if under_words is None:
        row.add_widget(words)
    else:
        left = BoxLayout(orientation="vertical", spacing=th.gap, size_hint_x=words.size_hint_x)
        words.size_hint_x = 1
        left.add_widget(words)
        left.add_widget(under_words)
        row.add_widget(left)
    right = TextColumn(spacing=th.gap)
    right.add_widget(screen.banners)
    right.add_widget(screen.list)
    if under_list is not None:
        right.add_widget(under_list)
    row.add_widget(scroll_fit(right))
    frame.add_widget(row)
    frame.add_widget(screen.footer)
    return frame
