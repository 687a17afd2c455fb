"""Text that fits its box, and the icons and escaping every text uses.

Every text shrinks to fit its box instead of being cut off, because a Portuguese or
Vietnamese sentence can be twice as long as the Japanese one and the same screen has
to work from 800x480 to 1920x1080.
"""

from __future__ import annotations

import math

from kivy.clock import Clock
from kivy.core.text import Label as CoreLabel
from kivy.properties import BooleanProperty, NumericProperty
from kivy.uix.label import Label
from kivy.utils import get_hex_from_color

from kiosk.screens import fonts, linebreak
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


# Fitted sizes by (text, font, box): a re-render or a language switch back costs a
# lookup. It holds texts, so the view empties it whenever a patron's session ends.
_FITS: dict[tuple, tuple] = {}


# Widths of phrases by (font, size, bold, string): typesetting measures the same phrases
# at every size a text is tried at. Cleared with the fits (it holds texts too).
_WIDTHS: dict[tuple, float] = {}
_RULERS: dict[tuple, CoreLabel] = {}


def forget_fits() -> None:
    _FITS.clear()
    _WIDTHS.clear()


class FitMixin:
    """Fit the text to the box: shrink the font and wrap as needed, never below the
    theme's readable minimum (`least_for`; else 45 %): a text that still does not fit is
    `overflowing`, a layout fault the display matrix test reports.

    `prefer_single` (buttons, headings) first tries one line down to 70 % of the size,
    so "全部消す" shrinks a little rather than breaking in the middle of a word.
    `grow` (paragraphs in lists) keeps the size and makes the widget as tall as the text.
    """

    base_size = NumericProperty(20)
    fixed_font = BooleanProperty(False)     # keeps its own font across language switches
    grow = BooleanProperty(False)
    prefer_single = BooleanProperty(False)
    overflowing = BooleanProperty(False)    # even the smallest size did not fit (layout tests)
    shown_text = ""                         # the text as drawn: `text` with its line breaks
    least_for = None                        # base size -> smallest readable size (Theme.least_size)
    single_floor = 0.7                      # prefer_single shrinks this far (Theme.single_floor)

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

    def typeset(self, text: str) -> str:
        """`text` with its line breaks placed between phrases and by the kinsoku rules
        (kiosk/screens/linebreak.py) for the current box and font size: Kivy would cut a
        Japanese or Chinese line at any character. Other scripts wrap at spaces as before."""
        width = self.text_size[0]
        if width is None or not text or not linebreak.is_cjk(text):
            return text
        pad = self.padding
        avail = width - pad[0] - pad[2] - 1
        key = (self.font_name, max(1, int(self.font_size)), bool(self.bold))
        # A label of its own per font and size: a widget's core label measures with the
        # font of its last render, which during fitting is often another size.
        ruler = _RULERS.get(key)
        if ruler is None:
            ruler = _RULERS[key] = CoreLabel(font_name=key[0], font_size=key[1], bold=key[2])

        def measure(s: str) -> float:
            k = (*key, s)
            w = _WIDTHS.get(k)
            if w is None:
                if len(_WIDTHS) > 20000:
                    _WIDTHS.clear()
                w = _WIDTHS[k] = ruler.get_extents(s)[0]
            return w

        if self.markup:
            # Icons are drawn in the icon font, measured here in the text's: keep half an
            # em spare so that Kivy never breaks such a line again at a space.
            spare = self.font_size * 0.5 if "[/font] " in text else 0
            return linebreak.break_markup(text, avail - spare, measure)
        # Measured widths are cached and phrases measured one by one: a whole line, measured
        # afresh, can come out a few pixels wider; then set it again a little narrower, or
        # Kivy breaks it a second time where it likes.
        for _ in range(3):
            starts = linebreak.breaks(text, avail, measure)
            over = max(ruler.get_extents(line)[0] for line in linebreak.lines_at(text, starts)) - avail
            if over <= 0 or over > avail * 0.05:     # fits, or a word longer than the line
                break
            avail -= over
        return "\n".join(linebreak.lines_at(text, starts)) if starts else text

    def texture_update(self, *largs) -> None:
        """Kivy's Label.texture_update, drawing the typeset text instead of `text`."""
        if not self.text:
            super().texture_update(*largs)
            return
        shown = self.typeset(self.text)
        self.shown_text = shown
        if not self.markup:
            self._label.text = shown
            super().texture_update(*largs)
            return
        if shown == self.text:
            super().texture_update(*largs)
            return
        # The markup branch of Label.texture_update, with the typeset text.
        self.texture = None
        color = self.disabled_color if self.disabled else self.color
        self._label.text = "".join(("[color=", get_hex_from_color(color), "]", shown, "[/color]"))
        self._label.refresh()
        if self._label.texture:
            self._label.texture.bind()
        self.refs = self._label.refs
        self.anchors = self._label.anchors
        if self._label.texture is not None:
            self.texture = self._label.texture
            self.texture_size = list(self.texture.size)
        self.is_shortened = self._label.is_shortened

    def natural_height(self, width: float) -> float:
        """How tall the text is at its full size set in `width` (TextColumn shares by it)."""
        if not self.text or width <= 4:
            return 0.0
        key = ("natural", self.text, self.font_name, self.bold, self.base_size, int(width), tuple(self.padding))
        known = _FITS.get(key)
        if known is None:
            saved = (self.font_size, self.text_size)
            _, h = self._measure(self.base_size, (width, None))
            self.font_size, self.text_size = saved
            self._fit_trigger()
            known = _FITS[key] = (h,)
        return known[0]

    def least_height(self, width: float) -> float:
        """How tall the text is at the smallest size it may be shrunk to, set in `width`."""
        if not self.text or width <= 4:
            return 0.0
        least = max(self.base_size * 0.45, self.least_for(self.base_size) if self.least_for else 0)
        key = ("least", self.text, self.font_name, self.bold, least, int(width), tuple(self.padding))
        known = _FITS.get(key)
        if known is None:
            saved = (self.font_size, self.text_size)
            _, h = self._measure(least, (width, None))
            self.font_size, self.text_size = saved
            self._fit_trigger()
            known = _FITS[key] = (h,)
        return known[0]

    def _measure(self, size: float, text_size) -> tuple[float, float]:
        self.font_size = max(1, math.ceil(size - 0.01))      # whole pixels: the font cache is per size
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
        least = max(base * 0.45, self.least_for(base) if self.least_for else 0)
        if self.prefer_single:
            tw, th = self._measure(base, (None, None))
            scale = 1.0 if (tw <= w - 2 and th <= h) else min((w - 2) / tw, h / th) * 0.98
            single = base if scale >= 1.0 else math.floor(base * scale)     # whole pixels, rounded down
            if scale >= self.single_floor and single >= math.ceil(least - 0.01):
                if scale < 1.0:
                    tw, th = self._measure(single, (None, None))
                if tw <= w - 2 and th <= h:
                    # Unbounded and boxed layouts differ by a few pixels for markup with
                    # several fonts: check the height as it will be drawn.
                    _, th = self._measure(single, (w, None))
                if tw <= w - 2 and th <= h + 0.5:
                    self.text_size = (w, h)
                    self.overflowing = False
                    self._remember(key)
                    return
        # Wrapped text: its height grows about with the square of the size, so one
        # guess usually lands; step down from there.
        size = base
        _, th = self._measure(size, (w, None))
        if th > h + 0.5:
            size = max(least, base * (h / th) ** 0.5 * 0.97)
            _, th = self._measure(size, (w, None))
            while th > h + 0.5 and size > least:
                size = max(least, size * 0.9)
                _, th = self._measure(size, (w, None))
        self.overflowing = th > h + 0.5
        # No height: Kivy lays a text with a newline out from its middle line when given a
        # height and then drops a line the box has just room for; the label centres the
        # texture in its box anyway.
        self.text_size = (w, None)
        self._remember(key)

    def _remember(self, key: tuple, height: float = 0.0) -> None:
        if len(_FITS) > 4000:           # bounded; it holds titles too: forget_fits empties it at every session end
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
        self.least_for = theme.least_size
        self.single_floor = theme.single_floor
        self._init_fit()
