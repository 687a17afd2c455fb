"""Pictures drawn on the canvas: the spinner, the card on its reader, a barcode.

Drawn rather than loaded from image files, so they follow the theme's colours and
any panel size (a site may show a photo of its own scanner instead of the drawing)."""

from __future__ import annotations

import logging

from kivy.animation import Animation
from kivy.clock import Clock
from kivy.graphics import Color, Ellipse, Line, Rectangle, RoundedRectangle, Triangle
from kivy.properties import NumericProperty, StringProperty
from kivy.uix.widget import Widget

from kiosk.screens.theme import Theme

log = logging.getLogger(__name__)


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


class ScannerArt(Widget):
    """A book held with its barcode over the scanner's window, the red beam on the stripes:
    where and how to scan, before the first book (the scanning screen's empty list)."""

    def __init__(self, theme: Theme, **kw) -> None:
        super().__init__(**kw)
        p = theme.palette
        self._colors = (p.muted, p.bg, p.primary, p.on_primary, p.text, p.error)
        self.bind(pos=self._draw, size=self._draw)

    def _draw(self, *_) -> None:
        self.canvas.clear()
        muted, bg, book, page, ink, beam = self._colors
        unit = max(1.0, min(self.width / 1.6, self.height / 1.3))
        cx, base = self.center_x, self.center_y - unit * 0.6
        sw, sh = unit * 1.1, unit * 0.2                  # the scanner, lying under the book
        bw, bh = unit * 0.62, unit * 0.78                # the book, spine up, back cover facing the scanner
        bx, by = cx - bw / 2, base + sh + unit * 0.22
        with self.canvas:
            Color(*muted)
            RoundedRectangle(pos=(cx - sw / 2, base), size=(sw, sh), radius=[unit * 0.05])
            Color(*bg)
            Rectangle(pos=(cx - sw * 0.3, base + sh * 0.62), size=(sw * 0.6, sh * 0.18))   # its window
            Color(*beam[:3], 0.35)
            Triangle(points=[cx - sw * 0.28, base + sh * 0.8, cx + sw * 0.28, base + sh * 0.8,
                             cx, by + bh * 0.2])
            Color(*book)
            RoundedRectangle(pos=(bx, by), size=(bw, bh), radius=[unit * 0.03])
            Color(*page)
            label_w, label_h = bw * 0.7, bh * 0.3
            lx, ly = cx - label_w / 2, by + bh * 0.06
            Rectangle(pos=(lx, ly), size=(label_w, label_h))
            Color(*ink)
            x = lx + label_w * 0.15
            for stripe in (2, 1, 1, 3, 1, 2, 1, 1, 2, 3, 1, 2):
                Rectangle(pos=(x, ly + label_h * 0.15), size=(stripe * label_w * 0.018, label_h * 0.7))
                x += (stripe + 1.2) * label_w * 0.018
            Color(*beam)
            Line(points=[lx - bw * 0.08, ly + label_h / 2, lx + label_w + bw * 0.08, ly + label_h / 2],
                 width=max(1.5, unit * 0.015))


def where_to_scan(theme: Theme, picture: str = "") -> Widget:
    """This site's own photo of its scanner (`ui.scan_picture`) when it loads, else the
    drawing: a picture gone missing or damaged since the configuration check never
    leaves the patron a blank where they look for the scanner."""
    if picture:
        from kivy.uix.image import Image

        try:
            image = Image(source=picture, fit_mode="contain")
        except Exception:  # noqa: BLE001 - Kivy's loaders raise anything; the drawing stands in
            image = None
        if image is not None and image.texture is not None:
            return image
        log.warning("ui.scan_picture could not be loaded; showing the drawing instead")
    return ScannerArt(theme)
