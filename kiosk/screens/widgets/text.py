"""Building blocks shared by the patron screens.

Every text shrinks to fit its box instead of being cut off, because a Portuguese or
Vietnamese sentence can be twice as long as the Japanese one and the same screen has
to work from 800x480 to 1920x1080. Buttons post `kiosk.core.events.Press` and carry an
`ident` ("digit:1", "more_time", "language:ko") so tests press the real widget.
Nothing here knows about the session beyond the press names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from kivy.animation import Animation
from kivy.clock import Clock
from kivy.graphics import Color, Ellipse, Line, Rectangle, RoundedRectangle, Triangle
from kivy.properties import BooleanProperty, NumericProperty, StringProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.layout import Layout
from kivy.uix.widget import Widget

from kiosk.core.events import Press
from kiosk.i18n import language_name
from kiosk.screens import fonts
from kiosk.screens.theme import RGBA, Theme

# Icons come from the icon font (DejaVu): the CJK fonts have no ✕ or ⌫.
ICON_OK = "✓"
ICON_NO = "✕"
ICON_WARN = "⚠"
ICON_INFO = "ℹ"
ICON_WAIT = "…"
ICON_UNKNOWN = "?"
ICON_BACK = "⌫"


def icon(symbol: str) -> str:
    """Markup for one icon glyph inside a translated text."""
    return f"[font={fonts.ICON_FONT_NAME}]{symbol}[/font]"


def escape(text: str) -> str:
    """Text from outside (titles, library name) must never be read as markup."""
    return text.replace("&", "&amp;").replace("[", "&bl;").replace("]", "&br;")


@dataclass
class Context:
    """What every screen needs to draw itself; the view owns and replaces it."""

    theme: Theme
    post: Callable[[object], None]
    library_name: str = ""
    languages: tuple[str, ...] = ("ja",)
    default_language: str = "ja"
    demo: bool = False
    help_text: str = ""
    toggle: Callable[[str], None] = lambda what: None     # view-local: "large_text", "high_contrast"

    def press(self, action: str, value: str | None = None) -> None:
        self.post(Press(action, value))


def paint(widget: Widget, color: RGBA, radius: float = 0) -> Color:
    """A background in `color` that follows the widget; returns the Color to recolour."""
    with widget.canvas.before:
        c = Color(*color)
        rect = RoundedRectangle(radius=[radius]) if radius else Rectangle()

    def follow(*_):
        rect.pos = widget.pos
        rect.size = widget.size

    widget.bind(pos=follow, size=follow)
    follow()
    return c


# Fitted sizes by (text, font, box): a re-render or a language switch back costs a
# lookup. It holds texts, so the view empties it whenever a patron's session ends.
_FITS: dict[tuple, tuple] = {}


def forget_fits() -> None:
    _FITS.clear()


class FitMixin:
    """Fit the text to the box: shrink the font (never below 45 %) and wrap as needed.

    `prefer_single` (buttons, headings) first tries one line down to 70 % of the size,
    so "全部消す" shrinks a little rather than breaking in the middle of a word.
    `grow` (paragraphs in lists) keeps the size and makes the widget as tall as the text.
    """

    base_size = NumericProperty(20)
    fixed_font = BooleanProperty(False)     # keeps its own font across language switches
    grow = BooleanProperty(False)
    prefer_single = BooleanProperty(False)
    overflowing = BooleanProperty(False)    # even the smallest size did not fit (layout tests)

    def _init_fit(self) -> None:
        # Kivy's own first render of the label comes before the fit: at the base size it
        # opens no font at a size nothing uses.
        self.font_size = max(1, int(self.base_size))
        self._fit_trigger = Clock.create_trigger(self._fit, -1)
        for prop in ("size", "text", "base_size", "font_name", "bold", "parent"):
            self.fbind(prop, self._fit_trigger)
        self.fbind("text", self._markup_if_needed)
        self._markup_if_needed(self, self.text)
        self._fit_trigger()

    def _markup_if_needed(self, _w, text: str) -> None:
        # Markup layout is several times slower; most texts have no icon or escape.
        self.markup = "[" in text or "&" in text

    def _measure(self, size: float, text_size) -> tuple[float, float]:
        self.font_size = max(1, int(size))      # whole pixels: the font cache is per size
        self.text_size = text_size
        self.texture_update()
        return self.texture_size

    def _fit(self, *_) -> None:
        # Kivy 2.3: text_size is the whole texture, padding included.
        w, h = self.width, self.height
        if w <= 4 or self.parent is None:
            return
        base = self.base_size
        if not self.text:
            self.overflowing = False
            self.font_size = base
            return
        key = (self.text, self.font_name, self.bold, base, int(w), int(h), self.grow, self.prefer_single,
               tuple(self.padding))
        known = _FITS.get(key)
        if known is not None:
            size, text_size, self.overflowing, height = known
            self.font_size, self.text_size = size, text_size
            if self.grow:
                self.height = height
            return
        if self.grow:
            _, th = self._measure(base, (w, None))
            self.height = th
            self.overflowing = False
            self._remember(key, th)
            return
        if h <= 4:
            return
        if self.prefer_single:
            tw, th = self._measure(base, (None, None))
            scale = 1.0 if (tw <= w - 2 and th <= h) else min((w - 2) / tw, h / th) * 0.98
            if scale >= 0.7:
                if scale < 1.0:
                    tw, th = self._measure(base * scale, (None, None))
                if tw <= w - 2 and th <= h:
                    self.text_size = (w, h)
                    self.overflowing = False
                    self._remember(key)
                    return
        # Wrapped text: its height grows about with the square of the size, so one
        # guess usually lands; step down from there.
        size = base
        _, th = self._measure(size, (w, None))
        if th > h + 0.5:
            size = max(base * 0.45, base * (h / th) ** 0.5 * 0.97)
            _, th = self._measure(size, (w, None))
            while th > h + 0.5 and size > base * 0.45:
                size = max(base * 0.45, size * 0.9)
                _, th = self._measure(size, (w, None))
        self.overflowing = th > h + 0.5
        self.text_size = (w, h)
        self._remember(key)

    def _remember(self, key: tuple, height: float = 0.0) -> None:
        if len(_FITS) > 4000:           # language switches and resizes: bounded, never patron data
            _FITS.clear()
        _FITS[key] = (self.font_size, self.text_size, self.overflowing, height)

    @property
    def fits(self) -> bool:
        return not self.overflowing


class Text(FitMixin, Label):
    def __init__(self, theme: Theme, size: float | None = None, color: RGBA | None = None,
                 halign: str = "center", valign: str = "middle", **kw) -> None:
        kw.setdefault("markup", True)
        super().__init__(halign=halign, valign=valign, **kw)
        self.base_size = size or theme.font_body
        self.color = color or theme.palette.text
        self._init_fit()


class KButton(FitMixin, Button):
    """A big flat button: solid colour, icon + words, darker while pressed."""

    ident = StringProperty("")
    action = StringProperty("")
    value = StringProperty(allownone=True)

    def __init__(self, theme: Theme, post: Callable[[str, str | None], None] | None = None,
                 action: str = "", value: str | None = None, kind: str = "secondary",
                 size: float | None = None, **kw) -> None:
        kw.setdefault("markup", True)
        super().__init__(background_normal="", background_down="", halign="center", valign="middle", **kw)
        p = theme.palette
        bg, fg = {
            "primary": (p.primary, p.on_primary), "secondary": (p.secondary, p.on_secondary),
            "key": (p.key, p.on_key), "warn": (p.warn, p.on_warn), "ok": (p.ok, p.on_ok),
            "selected": (p.selected, p.on_selected), "error": (p.error, p.on_error),
        }[kind]
        self._bg = bg
        self.background_color = bg
        self.color = fg
        self.padding = (theme.gap, theme.gap * 0.5)
        self.prefer_single = True
        self.base_size = size or theme.font_body
        self.action = action
        self.value = value
        self.ident = action if value is None else f"{action}:{value}"
        self._post = post
        self.min_state_time = 0.05
        self._init_fit()

    def on_state(self, _inst, state: str) -> None:
        if state == "down":
            r, g, b, a = self._bg
            self.background_color = (r * 0.75, g * 0.75, b * 0.75, a)
        else:
            self.background_color = self._bg

    def on_release(self) -> None:
        if self._post is not None and self.action:
            self._post(self.action, self.value)


class Slot(BoxLayout):
    """Holds at most one widget; empty slots take no room."""

    def __init__(self, **kw) -> None:
        kw.setdefault("size_hint_y", None)
        super().__init__(**kw)
        self.height = 0

    def set(self, widget: Widget | None, height: float | None = None) -> None:
        self.clear_widgets()
        if widget is None:
            self.height = 0
            return
        self.add_widget(widget)
        self.height = height if height is not None else widget.height


class ModalLayer(FloatLayout):
    """An overlay that keeps touches away from the screen under it."""

    def on_touch_down(self, touch) -> bool:
        super().on_touch_down(touch)
        return True

    def on_touch_move(self, touch) -> bool:
        super().on_touch_move(touch)
        return True

    def on_touch_up(self, touch) -> bool:
        super().on_touch_up(touch)
        return True


class Banner(BoxLayout):
    """A coloured strip with an icon and words (never colour alone), as tall as its text."""

    def __init__(self, theme: Theme, text: str, kind: str = "warn", font_name: str | None = None,
                 ident: str = "") -> None:
        p = theme.palette
        bg, fg, mark = {
            "warn": (p.warn, p.on_warn, ICON_WARN), "error": (p.error, p.on_error, ICON_WARN),
            "info": (p.info, p.on_info, ICON_INFO), "ok": (p.ok, p.on_ok, ICON_OK),
        }[kind]
        pad_y = theme.gap
        super().__init__(orientation="horizontal", size_hint_y=None, height=theme.font_body * 1.6 + 2 * pad_y,
                         padding=(theme.pad, pad_y), spacing=theme.gap)
        self.ident = ident
        self.kind = kind
        paint(self, bg, radius=theme.gap)
        self.add_widget(Text(theme, text=icon(mark), color=fg, size=theme.font_body * 1.2, size_hint_x=None,
                             width=theme.font_body * 1.6, fixed_font=True))
        kw = {"font_name": font_name} if font_name else {}
        self.message = Text(theme, text=text, color=fg, halign="left", grow=True, size_hint_y=None, **kw)
        self.add_widget(self.message)
        self.message.bind(height=lambda _w, h: setattr(self, "height", max(h, theme.font_body * 1.6) + 2 * pad_y))


class Badge(Text):
    def __init__(self, theme: Theme, text: str, color: RGBA, on_color: RGBA, ident: str = "", **kw) -> None:
        super().__init__(theme, text=text, size=theme.font_small, color=on_color, bold=True,
                         size_hint_x=None, **kw)
        self.ident = ident
        self.padding = (theme.gap, 0)
        self.font_size = self.base_size
        self.texture_update()
        self.width = max(theme.font_small * 3, self.texture_size[0] + theme.pad * 1.5)
        paint(self, color, radius=theme.gap)


class Bar(Widget):
    """A plain progress bar (the countdown): `fraction` of the width is filled."""

    fraction = NumericProperty(1.0)

    def __init__(self, theme: Theme, **kw) -> None:
        super().__init__(**kw)
        p = theme.palette
        with self.canvas:
            Color(*p.secondary)
            self._back = RoundedRectangle(radius=[theme.gap])
            Color(*p.warn)
            self._fill = RoundedRectangle(radius=[theme.gap])
        self.bind(pos=self._draw, size=self._draw, fraction=self._draw)

    def _draw(self, *_) -> None:
        self._back.pos = self.pos
        self._back.size = self.size
        self._fill.pos = self.pos
        self._fill.size = (self.width * max(0.0, min(1.0, self.fraction)), self.height)


class CountdownBar(BoxLayout):
    """'Returning to the start in 12 s' with a bar and a big 'more time' button."""

    def __init__(self, ctx: Context) -> None:
        th = ctx.theme
        super().__init__(orientation="horizontal", size_hint_y=None, height=th.touch,
                         spacing=th.gap, padding=(0, 0))
        paint(self, th.palette.surface, radius=th.gap)
        self._start: int | None = None
        left = BoxLayout(orientation="vertical", padding=(th.pad, th.gap), spacing=th.gap * 0.5)
        self.label = Text(th, halign="left", size=th.font_body)
        self.bar = Bar(th, size_hint_y=0.25)
        left.add_widget(self.label)
        left.add_widget(self.bar)
        self.add_widget(left)
        self.button = KButton(th, lambda a, v: ctx.press(a, v), "more_time", kind="warn",
                              size_hint_x=None, width=max(th.touch * 2.6, th.width * 0.26))
        self.add_widget(self.button)
        self.seconds: int | None = None

    def render(self, seconds: int | None, t, font: str) -> None:
        self.seconds = seconds
        if seconds is None:
            self._start = None
            return
        if self._start is None or seconds > self._start:
            self._start = max(1, seconds)
        self.label.font_name = font
        self.button.font_name = font
        self.label.text = t("common.time_left", seconds=seconds)
        self.button.text = t("common.more_time")
        self.bar.fraction = seconds / self._start


class LanguageBar(GridLayout):
    """One button per language, each written in its own language and font; the current
    one is marked with ✓ as well as colour."""

    def __init__(self, ctx: Context, compact: bool = False, cols: int | None = None, **kw) -> None:
        th = ctx.theme
        n = len(ctx.languages)
        cols = cols or n
        rows = -(-n // cols)
        height = th.small_touch if compact else th.touch
        kw.setdefault("size_hint_y", None)
        super().__init__(cols=cols, height=height * rows + th.gap * (rows - 1), spacing=th.gap, **kw)
        self.ctx = ctx
        self.compact = compact
        self.buttons: dict[str, KButton] = {}
        self._current: str | None = None
        for lang in ctx.languages:
            b = KButton(th, lambda a, v: ctx.press(a, v), "language", lang,
                        size=th.font_small if compact else th.font_body, fixed_font=True,
                        font_name=fonts.registered(lang))
            b.selected = False
            self.buttons[lang] = b
            self.add_widget(b)

    def render(self, current: str) -> None:
        if current == self._current:
            return
        self._current = current
        th = self.ctx.theme
        for lang, b in self.buttons.items():
            name = language_name(lang)
            if self.compact:
                name = _short_name(lang, name)
            chosen = lang == current
            b._bg = th.palette.selected if chosen else th.palette.secondary
            b.background_color = b._bg
            b.color = th.palette.on_selected if chosen else th.palette.on_secondary
            b.text = (icon(ICON_OK) + " " if chosen else "") + escape(name)
            b.selected = chosen


def _short_name(lang: str, name: str) -> str:
    """Header buttons are narrow: 'English' -> 'EN', but 日本語/中文/한국어 stay readable."""
    short = {"en": "EN", "pt-BR": "PT", "vi": "VI", "zh-Hans": "中文"}
    return short.get(lang, name)


class Spinner(Widget):
    """A turning arc: the kiosk is working, not frozen."""

    angle = NumericProperty(0)

    def __init__(self, theme: Theme, **kw) -> None:
        super().__init__(**kw)
        self._event = None
        with self.canvas:
            Color(*theme.palette.secondary)
            self._ring = Line(width=max(2.0, theme.gap))
            Color(*theme.palette.primary)
            self._arc = Line(width=max(2.0, theme.gap))
        self.bind(pos=self._draw, size=self._draw, angle=self._draw)

    def _draw(self, *_) -> None:
        r = max(1.0, min(self.width, self.height) / 2 - 4)
        cx, cy = self.center
        self._ring.circle = (cx, cy, r)
        self._arc.circle = (cx, cy, r, self.angle, self.angle + 100)

    def start(self) -> None:
        if self._event is None:
            self._event = Clock.schedule_interval(self._step, 1 / 20)

    def stop(self) -> None:
        if self._event is not None:
            self._event.cancel()
            self._event = None

    def _step(self, dt: float) -> None:
        self.angle = (self.angle + 360 * dt * 0.8) % 360


class CardArt(Widget):
    """A card above a reader with an arrow: down = place the card, up = take it."""

    phase = NumericProperty(0.0)
    direction = StringProperty("down")

    def __init__(self, theme: Theme, direction: str = "down", **kw) -> None:
        super().__init__(**kw)
        self.direction = direction
        self._anim: Animation | None = None
        p = theme.palette
        r = theme.gap
        with self.canvas:
            Color(*p.muted)
            self._reader = RoundedRectangle(radius=[r * 2])
            Color(*p.bg)
            self._slot = Rectangle()
            Color(*p.primary)
            self._card = RoundedRectangle(radius=[r])
            Color(*p.on_primary)
            self._chip = RoundedRectangle(radius=[r * 0.5])
            self._photo = Ellipse()
            Color(*p.warn)
            self._shaft = Rectangle()
            self._head = Triangle()
        self.bind(pos=self._draw, size=self._draw, phase=self._draw)

    def _draw(self, *_) -> None:
        x, y, w, h = self.x, self.y, self.width, self.height
        unit = max(1.0, min(w / 1.7, h / 1.35))
        cx = x + w / 2 - unit * 0.15
        base = y + (h - unit * 1.25) / 2
        rw, rh = unit * 1.05, unit * 0.22
        self._reader.pos = (cx - rw / 2, base)
        self._reader.size = (rw, rh)
        self._slot.pos = (cx - rw * 0.4, base + rh * 0.7)
        self._slot.size = (rw * 0.8, rh * 0.12)
        cw, ch = unit * 0.86, unit * 0.54
        lifted = self.phase if self.direction == "up" else 1 - self.phase
        cy = base + rh + unit * 0.04 + unit * 0.38 * lifted
        self._card.pos = (cx - cw / 2, cy)
        self._card.size = (cw, ch)
        self._chip.pos = (cx - cw * 0.38, cy + ch * 0.35)
        self._chip.size = (cw * 0.16, ch * 0.24)
        self._photo.pos = (cx + cw * 0.1, cy + ch * 0.18)
        self._photo.size = (cw * 0.28, cw * 0.28)
        ax = cx + cw / 2 + unit * 0.22
        sw = unit * 0.07
        top, bottom = base + unit * 1.2, base + rh + unit * 0.05
        head = unit * 0.2
        if self.direction == "down":
            self._shaft.pos = (ax - sw / 2, bottom + head * 0.9)
            self._shaft.size = (sw, top - bottom - head)
            self._head.points = [ax - head * 0.7, bottom + head, ax + head * 0.7, bottom + head, ax, bottom]
        else:
            self._shaft.pos = (ax - sw / 2, bottom)
            self._shaft.size = (sw, top - bottom - head * 0.9)
            self._head.points = [ax - head * 0.7, top - head, ax + head * 0.7, top - head, ax, top]

    def start(self) -> None:
        if self._anim is None:
            self.phase = 0
            self._anim = Animation(phase=1, duration=0.9, t="in_out_quad") + Animation(phase=0, duration=0.6)
            self._anim.repeat = True
            self._anim.start(self)

    def stop(self) -> None:
        if self._anim is not None:
            self._anim.cancel(self)
            self._anim = None


class BarcodeArt(Widget):
    """Stripes of a barcode: 'scan your library card'."""

    def __init__(self, theme: Theme, **kw) -> None:
        super().__init__(**kw)
        self._color = theme.palette.text
        self._surface = theme.palette.surface
        self.bind(pos=self._draw, size=self._draw)

    def _draw(self, *_) -> None:
        self.canvas.clear()
        widths = [2, 1, 1, 3, 1, 2, 1, 1, 2, 3, 1, 1, 2, 1, 3, 1, 2, 1, 1, 2, 1, 3, 1, 2]
        unit_w = min(self.width * 0.7, self.height * 1.6) / (sum(widths) * 1.5)
        total = sum(widths) * unit_w * 1.5
        x = self.center_x - total / 2
        h = min(self.height * 0.8, total * 0.5)
        y = self.center_y - h / 2
        with self.canvas:
            Color(*self._surface)
            Rectangle(pos=(x - unit_w * 4, y - unit_w * 4), size=(total + unit_w * 8, h + unit_w * 8))
            Color(*self._color)
            for i, bw in enumerate(widths):
                Rectangle(pos=(x, y), size=(bw * unit_w, h))
                x += (bw + 1 + (i % 2) * 0.5) * unit_w


def layout_now(root: Widget) -> None:
    """Lay the tree out top-down at once rather than over several rounds of layout
    triggers, so that each text is fitted once, at its final size, not at every size
    its box passes through (fitting is most of the cost of building a screen)."""
    stack = [root]
    while stack:
        w = stack.pop()
        if isinstance(w, Layout):
            w.do_layout()
        stack.extend(w.children)


def walk_texts(root: Widget) -> Iterable[str]:
    """Every text a widget tree shows (privacy tests and the language switch use it)."""
    for w in root.walk(restrict=True):
        text = getattr(w, "text", None)
        if isinstance(text, str) and text:
            yield text


def set_font(root: Widget, font: str) -> None:
    """Draw every text under `root` in `font`, except those that keep their own."""
    for w in root.walk(restrict=True):
        if isinstance(w, FitMixin) and not w.fixed_font and w.font_name != font:
            w.font_name = font


def layout_overflow(root: Widget, window_size: tuple[float, float]) -> list[str]:
    """Widgets drawn outside the window or texts that do not fit their box.

    Used by the layout tests for every panel size; children of a scroll view are
    clipped by it, so only the scroll view itself is checked.
    """
    from kivy.uix.scrollview import ScrollView

    problems: list[str] = []
    W, H = window_size

    def name(w: Widget) -> str:
        return f"{type(w).__name__}({getattr(w, 'ident', '') or getattr(w, 'text', '')[:30]!r})"

    def visit(w: Widget, box: tuple[float, float, float, float]) -> None:
        if w.opacity == 0:
            return
        x, y = w.to_window(w.x, w.y)
        if w.width > 0 and w.height > 0:
            bx, by, bw, bh = box
            if x < bx - 1 or y < by - 1 or x + w.width > bx + bw + 1 or y + w.height > by + bh + 1:
                problems.append(f"{name(w)} at {x:.0f},{y:.0f} {w.width:.0f}x{w.height:.0f}"
                                f" outside its container {bx:.0f},{by:.0f} {bw:.0f}x{bh:.0f}")
            if isinstance(w, FitMixin) and w.text and w.overflowing:
                problems.append(f"text does not fit: {w.text[:40]!r} {w.texture_size} in {w.size}")
        if isinstance(w, ScrollView):
            return
        inner = (x, y, w.width, w.height) if w.width > 0 and w.height > 0 else box
        for c in w.children:
            visit(c, inner)

    visit(root, (0, 0, W, H))
    return problems

