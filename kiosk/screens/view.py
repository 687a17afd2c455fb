"""The patron's screen: kiosk.core.interfaces.View on top of a Kivy ScreenManager.

The controller calls `show(screen, model)` on the UI thread; the view checks the plain
model against the screen's type (kiosk/core/screen_models.py), draws it, and sends
touches back only as kiosk.core.events.Press through the `post` it was given (barcodes
typed by a keyboard-wedge scanner as kiosk.core.events.Barcode). It keeps no patron
data of its own: leaving a screen clears it, and reaching idle clears them all.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from typing import Callable

from kivy.clock import Clock
from kivy.core.window import Window
from kivy.metrics import Metrics
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.screenmanager import NoTransition, ScreenManager
from kivy.uix.widget import Widget

from kiosk.core import events as ev
from kiosk.core.screen_models import ScreenModelError, check_model
from kiosk.i18n import format_due, translator
from kiosk.logs import log_event
from kiosk.screens.base import KioskScreen
from kiosk.screens.staff_corner import StaffCorner
from kiosk.screens.theme import Theme, make_theme
from kiosk.screens.wedge import BACKSPACE, ENTER, TAB, Key, Scan, WedgeDecoder
from kiosk.screens.widgets.context import Context
from kiosk.screens.widgets.layout import layout_now, walk_texts
from kiosk.screens.widgets.text import forget_fits

log = logging.getLogger("kiosk.screens")

# Where each screen is defined. A screen's module is imported and the screen made
# when it is first shown, so the kiosk starts by paying for the idle screen alone.
# A class may draw several screens (ProgressScreen): it is made once per name.
SCREEN_CLASSES: dict[str, str] = {
    "idle": "kiosk.screens.idle:IdleScreen",
    "reading_card": "kiosk.screens.progress:ProgressScreen",
    "pin": "kiosk.screens.pin_pad:PinScreen",
    "last_try": "kiosk.screens.last_try:LastTryScreen",
    "authenticating": "kiosk.screens.progress:ProgressScreen",
    "library_card": "kiosk.screens.library_card:LibraryCardScreen",
    "card_number": "kiosk.screens.card_number:CardNumberScreen",
    "take_card": "kiosk.screens.take_card:TakeCardScreen",
    "scanning": "kiosk.screens.scanning:ScanningScreen",
    "finishing": "kiosk.screens.progress:ProgressScreen",
    "summary": "kiosk.screens.summary:SummaryScreen",
    "thank_you": "kiosk.screens.thank_you:ThankYouScreen",
    "error": "kiosk.screens.error:ErrorScreen",
    "out_of_service": "kiosk.screens.out_of_service:OutOfServiceScreen",
    "staff_signin": "kiosk.screens.staff.signin:StaffSigninScreen",
    "staff_menu": "kiosk.screens.staff.menu:StaffMenuScreen",
    "staff_status": "kiosk.screens.staff.status:StaffStatusScreen",
    "staff_review": "kiosk.screens.staff.review:StaffReviewScreen",
    "staff_selftest": "kiosk.screens.staff.selftest:StaffSelftestScreen",
    "staff_confirm": "kiosk.screens.staff.confirm:StaffConfirmScreen",
    "staff_register": "kiosk.screens.staff.register:StaffRegisterScreen",
    "staff_counter": "kiosk.screens.counter.home:StaffCounterScreen",
    "counter_identify": "kiosk.screens.counter.identify:CounterIdentifyScreen",
    "account": "kiosk.screens.account:AccountScreen",
    "returns": "kiosk.screens.returns:ReturnsScreen",
}


def screen_class(name: str) -> type[KioskScreen]:
    """The class that draws screen `name` (KeyError for a screen the view does not know)."""
    module, _, cls = SCREEN_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


class Screens(dict):
    """name -> KioskScreen, each made (not yet built) the first time it is asked for."""

    def __init__(self, make: Callable[[str], KioskScreen]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, name: str) -> KioskScreen:
        screen = self[name] = self._make(name)
        return screen

_KEYS = {13: ENTER, 271: ENTER, 9: TAB, 8: BACKSPACE}


@dataclass(frozen=True)
class UiOptions:
    languages: tuple[str, ...] = ("ja", "en", "pt-BR", "zh-Hans", "ko", "vi")
    default_language: str = "ja"
    high_contrast: bool = False
    large_text: bool = False
    font: str = ""
    help_text: str = ""
    scan_picture: str = ""
    library_name: str = ""
    demo: bool = False
    keyboard_wedge: bool = True
    kiosk_mode: bool = False
    fullscreen: bool = False

    @classmethod
    def from_config(cls, ui: dict | None, library_name: str = "", demo: bool = False,
                    keyboard_wedge: bool = True) -> UiOptions:
        ui = ui or {}
        base = cls()
        return cls(
            languages=tuple(ui.get("languages") or base.languages),
            default_language=ui.get("default_language") or base.default_language,
            high_contrast=bool(ui.get("high_contrast", False)),
            large_text=bool(ui.get("large_text", False)),
            font=ui.get("font") or "",
            help_text=ui.get("help_text") or "",
            scan_picture=ui.get("scan_picture") or "",
            library_name=library_name,
            demo=demo,
            keyboard_wedge=keyboard_wedge,
            kiosk_mode=bool(ui.get("kiosk_mode", False)),
            fullscreen=bool(ui.get("fullscreen", False)),
        )


class KioskView(FloatLayout):
    """kiosk.core.interfaces.View for Kivy. Create it on the UI thread after fonts are registered."""

    def __init__(self, options: UiOptions, post: Callable[[ev.Event], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, strict_text: bool = False, **kw) -> None:
        super().__init__(**kw)
        self.options = options
        # Tests pass strict_text so that an untranslated string fails instead of falling back.
        self._translate = (lambda lang: translator(lang, strict=True)) if strict_text else translator
        self._post = post
        self._clock = clock
        self.high_contrast = options.high_contrast
        self.large_text = options.large_text
        self.manager = ScreenManager(transition=NoTransition())
        self.theme = self._make_theme()
        self._ctx = self._context()
        # Screens are made and built when first shown and built again after a theme
        # change (size, contrast, text size): only the one on screen pays for it.
        self.screens: dict[str, KioskScreen] = Screens(self._make_screen)
        self.add_widget(self.manager)
        self.staff_corner = StaffCorner(self)       # the hidden long press that opens staff mode
        self.add_widget(self.staff_corner)
        self.current: str | None = None
        self._model: dict | None = None
        self.language = options.default_language
        self.light_pattern = "off"
        self.last_cue: str | None = None
        self._listeners: list[Callable[[str, str], None]] = []
        self._built_for = self._theme_key()
        self._rebuild_trigger = Clock.create_trigger(lambda *_: self._maybe_rebuild())
        self.bind(size=lambda *_: self._rebuild_trigger())
        self.wedge = WedgeDecoder()
        self._wedge_poll = Clock.create_trigger(lambda *_: self._poll_wedge(), self.wedge.hold + 0.01)
        self._wedge_flush = Clock.create_trigger(lambda *_: self._poll_wedge(), self.wedge.flush_after + 0.05)
        self._keyboard_bound = False
        if options.keyboard_wedge:
            self.attach_keyboard()

    # -- kiosk.core.interfaces.View ----------------------------------------------------

    def show(self, screen: str, model: dict) -> None:
        if screen not in SCREEN_CLASSES:
            log.warning("view.unknown_screen", extra={"kiosk_fields": {"screen": screen}})
            return
        try:
            check_model(screen, model)
        except ScreenModelError as e:
            # A screen drawn from a broken model would show blanks or stale words: keep the
            # last good screen. The log names the key, never its value (it may be a patron's).
            log_event(log, "view.model_refused", level=logging.ERROR, screen=screen, key=e.key, problem=e.problem)
            return
        target = self.screens[screen]
        if screen != self.current:
            previous = self.current
            if previous is not None:
                old = self.screens[previous]
                old.deactivate()
                old.clear()
            if screen == "idle":
                self._model = None
                for s in self.screens.values():
                    s.clear()
                forget_fits()
                if previous not in (None, "idle") and (
                        self.high_contrast != self.options.high_contrast
                        or self.large_text != self.options.large_text):
                    # The next patron starts from the site's settings (screens are
                    # rebuilt when next shown; nothing of the last one is redrawn).
                    self.high_contrast = self.options.high_contrast
                    self.large_text = self.options.large_text
                    self._retheme()
            self.current = screen
            self._ensure_built(target)
            self.manager.current = screen
            layout_now(self)
            self.wedge.reset(pin_mode=screen == "pin")
            target.activate()
        self._model = model
        lang = model.get("language") or self.options.default_language
        target.render(model, self._translate(lang))
        if lang != self.language:
            self.language = lang
            self._notify("language", lang)

    def lights(self, pattern: str) -> None:
        self.light_pattern = pattern
        self._notify("lights", pattern)

    def cue(self, sound: str) -> None:
        self.last_cue = sound
        self._notify("cue", sound)

    # -- wiring -----------------------------------------------------------------

    def set_post(self, post: Callable[[ev.Event], None]) -> None:
        self._post = post

    def post(self, event: ev.Event) -> None:
        if self._post is not None:
            self._post(event)

    def add_listener(self, fn: Callable[[str, str], None]) -> None:
        """fn(kind, value) for lights and cues: the demo panel's LED indicator."""
        self._listeners.append(fn)

    def _notify(self, kind: str, value: str) -> None:
        for fn in list(self._listeners):
            fn(kind, value)

    def close(self) -> None:
        """Release the keyboard and stop animations (the app calls this on stop)."""
        self.detach_keyboard()
        if self.current is not None:
            self.screens[self.current].deactivate()
        self._listeners.clear()

    def warm_up(self) -> None:
        """Import every screen and load the date formats now, while the kiosk waits at
        idle after its first frame, rather than during the first patron's session."""
        for name in SCREEN_CLASSES:
            screen_class(name)
        for lang in self.options.languages:
            format_due("2000-01-01", lang)

    # -- theme --------------------------------------------------------------------

    def _theme_key(self) -> tuple:
        return (int(self.width), int(self.height), float(Metrics.dpi), self.high_contrast, self.large_text)

    def _make_theme(self) -> Theme:
        return make_theme(self.size, Metrics.dpi, self.high_contrast, self.large_text)

    def _context(self) -> Context:
        o = self.options
        return Context(theme=self.theme, post=self.post, library_name=o.library_name, languages=o.languages,
                       default_language=o.default_language, demo=o.demo, help_text=o.help_text,
                       scan_picture=o.scan_picture, toggle=self.toggle)

    def toggle(self, what: str) -> None:
        """Idle's larger-text / high-contrast buttons: the view's own state, not the session's."""
        if what == "large_text":
            self.large_text = not self.large_text
        elif what == "high_contrast":
            self.high_contrast = not self.high_contrast
        else:
            return
        self._rebuild()

    def _maybe_rebuild(self) -> None:
        if self._theme_key() != self._built_for:
            self._rebuild()

    def rebuild(self) -> None:
        """Build every screen again for the current size, DPI and accessibility modes."""
        self._rebuild()

    def _make_screen(self, name: str) -> KioskScreen:
        screen = screen_class(name)(self._ctx, name)
        self.manager.add_widget(screen)
        return screen

    def _ensure_built(self, screen: KioskScreen) -> None:
        if self._theme_key() != self._built_for:
            # Laid out since the theme was made (the first show): build once, at the real size.
            self._retheme()
        if screen.built_for is not self.theme:
            screen.build(self._ctx)

    def _retheme(self) -> None:
        self._built_for = self._theme_key()
        self.theme = self._make_theme()
        self._ctx = self._context()

    def _rebuild(self) -> None:
        self._retheme()
        if self.current is not None:
            current = self.screens[self.current]
            current.deactivate()
            self._ensure_built(current)
            layout_now(self)
            current.activate()
            if self._model is not None:
                self.screens[self.current].render(
                    self._model, self._translate(self._model.get("language") or self.options.default_language))

    # -- keyboard wedge -------------------------------------------------------------

    def attach_keyboard(self) -> None:
        if not self._keyboard_bound:
            Window.bind(on_textinput=self._on_textinput, on_key_down=self._on_key_down)
            self._keyboard_bound = True

    def detach_keyboard(self) -> None:
        if self._keyboard_bound:
            Window.unbind(on_textinput=self._on_textinput, on_key_down=self._on_key_down)
            self._keyboard_bound = False

    def _on_textinput(self, _window, text: str) -> None:
        self._emit(self.wedge.char(text, self._clock()))
        self._wedge_poll()
        self._wedge_flush()

    def _on_key_down(self, _window, key: int, _scancode=None, _codepoint=None, modifiers=None) -> bool:
        name = _KEYS.get(key)
        if name is None or (modifiers and any(m in ("ctrl", "alt", "meta") for m in modifiers)):
            return False
        self._emit(self.wedge.key(name, self._clock()))
        return True

    def _poll_wedge(self) -> None:
        self._emit(self.wedge.poll(self._clock()))

    def _emit(self, outputs: list) -> None:
        for out in outputs:
            if isinstance(out, Scan):
                self.post(ev.Barcode(out.code))
            elif isinstance(out, Key):
                self.post(ev.Press(out.action, out.value))

    # -- inspection (tests, privacy checks) ----------------------------------------

    def find(self, ident: str, screen: str | None = None) -> Widget | None:
        """The widget with this ident on `screen` (default: the current one)."""
        root = self.screens[screen or self.current or "idle"]
        for w in root.walk(restrict=True):
            if getattr(w, "ident", None) == ident:
                return w
        return None

    def texts(self) -> list[str]:
        """Every text on every screen, shown or not."""
        out: list[str] = []
        for screen in self.screens.values():
            if screen.built_for is not None:
                out.extend(walk_texts(screen))
        return out
