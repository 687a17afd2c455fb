"""The on-screen barcode a staff hand scanner reads: bar/space widths drawn as rectangles.

The widths come from kiosk/core/barcode_symbols.py (in the model, never the number itself).
Every module is a whole number of pixels (a scanner reading a screen sees pixel edges; a
fractional module smears into grey), as close to `TARGET_MM` as fits, never below
`MIN_MM`; black bars on white with the quiet zone on both sides, whatever the theme
(a dark or high-contrast palette would invert the symbol and no scanner reads that).
"""

from __future__ import annotations

import math

from kivy.graphics import Color, Rectangle
from kivy.uix.widget import Widget

from kiosk.core.barcode_symbols import QUIET_MODULES
from kiosk.screens.theme import Theme

TARGET_MM = 0.5         # module width: comfortable for a hand scanner held at the screen
MIN_MM = 0.25
MIN_HEIGHT_MM = 12.0


class BarcodeSymbol(Widget):
    def __init__(self, theme: Theme, **kw) -> None:
        super().__init__(**kw)
        self.theme = theme
        self.bars: tuple[int, ...] = ()
        self.module_px = 0
        self.bind(pos=self._draw, size=self._draw)

    def set_bars(self, bars: list[int] | tuple[int, ...] | None) -> None:
        self.bars = tuple(bars or ())
        self._draw()

    def needed_px(self) -> tuple[float, float]:
        """The smallest size that draws the symbol at MIN_MM modules and MIN_HEIGHT_MM."""
        modules = sum(self.bars) + 2 * QUIET_MODULES
        module = max(1, math.ceil(self.theme.mm(MIN_MM)))
        return modules * module, self.theme.mm(MIN_HEIGHT_MM)

    def _draw(self, *_args) -> None:
        self.canvas.clear()
        self.module_px = 0
        if not self.bars or self.width <= 0 or self.height <= 0:
            return
        modules = sum(self.bars) + 2 * QUIET_MODULES
        module = min(max(1, round(self.theme.mm(TARGET_MM))), int(self.width // modules))
        if module < 1:
            return                          # too narrow to be read: draw nothing rather than a bad symbol
        self.module_px = module
        width = modules * module
        height = min(self.height, max(self.theme.mm(MIN_HEIGHT_MM), width * 0.3))
        x0 = int(self.x + (self.width - width) / 2)
        y0 = int(self.y + (self.height - height) / 2)
        with self.canvas:
            Color(1, 1, 1, 1)
            Rectangle(pos=(x0, y0), size=(width, int(height)))
            Color(0, 0, 0, 1)
            x = x0 + QUIET_MODULES * module
            for i, w in enumerate(self.bars):
                if i % 2 == 0:
                    Rectangle(pos=(x, y0), size=(w * module, int(height)))
                x += w * module

    @property
    def module_mm(self) -> float:
        return self.theme.px_to_mm(self.module_px)
