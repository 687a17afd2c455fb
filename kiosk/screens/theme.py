"""Colours and sizes for the patron screens: normal, high-contrast and large-text.

Pure data computed from the window size and the display's dots per inch (Kivy's
`Metrics.dpi`, which `KIVY_DPI` overrides when a panel reports it wrongly). Touch
targets are sized in millimetres so the PIN keys stay >= 12 mm on every panel from
the 7" 800x480 Pi display to a 21.5" 1920x1080 monitor; text grows with the window
but never below a physical minimum. No Kivy import: the rules are testable alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

RGBA = tuple[float, float, float, float]

MIN_KEY_MM = 12.0       # PIN keys and every primary button
MIN_TOUCH_MM = 10.0     # secondary controls (language bar in the header)
# Em heights no text is shrunk below to fit its box (x1.3 in large text): the display
# matrix test (tests/test_display_matrix.py) holds every screen to them on every panel.
MIN_TEXT_MM = 3.0       # captions, notes, small print
MIN_BODY_MM = 3.4       # body text and everything larger


def _hex(code: str, alpha: float = 1.0) -> RGBA:
    code = code.lstrip("#")
    return (int(code[0:2], 16) / 255, int(code[2:4], 16) / 255, int(code[4:6], 16) / 255, alpha)


@dataclass(frozen=True)
class Palette:
    bg: RGBA
    surface: RGBA           # cards, rows, overlays
    text: RGBA
    muted: RGBA
    primary: RGBA           # the one button that moves the patron on
    on_primary: RGBA
    secondary: RGBA         # cancel, help, language
    on_secondary: RGBA
    key: RGBA               # PIN keys
    on_key: RGBA
    ok: RGBA
    on_ok: RGBA
    warn: RGBA
    on_warn: RGBA
    error: RGBA
    on_error: RGBA
    info: RGBA
    on_info: RGBA
    selected: RGBA          # the current language
    on_selected: RGBA


NORMAL = Palette(
    bg=_hex("F6F4EF"), surface=_hex("FFFFFF"), text=_hex("1B1B1B"), muted=_hex("4F4F4F"),
    primary=_hex("1C5BA8"), on_primary=_hex("FFFFFF"), secondary=_hex("DCE2EA"), on_secondary=_hex("1B1B1B"),
    key=_hex("DCE2EA"), on_key=_hex("111111"),
    ok=_hex("1D7436"), on_ok=_hex("FFFFFF"), warn=_hex("9A4F00"), on_warn=_hex("FFFFFF"),
    error=_hex("A8231B"), on_error=_hex("FFFFFF"), info=_hex("E3ECF8"), on_info=_hex("1B1B1B"),
    selected=_hex("1C5BA8"), on_selected=_hex("FFFFFF"),
)

HIGH_CONTRAST = Palette(
    bg=_hex("000000"), surface=_hex("111111"), text=_hex("FFFFFF"), muted=_hex("FFFFFF"),
    primary=_hex("FFE000"), on_primary=_hex("000000"), secondary=_hex("FFFFFF"), on_secondary=_hex("000000"),
    key=_hex("FFFFFF"), on_key=_hex("000000"),
    ok=_hex("00E070"), on_ok=_hex("000000"), warn=_hex("FFE000"), on_warn=_hex("000000"),
    error=_hex("FF6B6B"), on_error=_hex("000000"), info=_hex("FFFFFF"), on_info=_hex("000000"),
    selected=_hex("FFE000"), on_selected=_hex("000000"),
)


@dataclass(frozen=True)
class Theme:
    palette: Palette
    high_contrast: bool
    large_text: bool
    width: int
    height: int
    dpi: float
    font_small: float
    font_body: float
    font_title: float
    font_huge: float
    font_key: float
    key: float              # PIN key height, px
    key_width: float        # PIN key width, px: wider than tall, so "全部消す" fits on one line
    touch: float            # primary button height, px
    small_touch: float      # header controls, px
    pad: float
    gap: float
    header: float           # header bar height, px
    least_text: float       # px: no text is fitted smaller than this
    least_body: float       # px: nor body-sized text (and larger) smaller than this
    line: float             # height of one line of body text at its smallest (Noto CJK: 1.45 em)
    single_floor: float     # a button or heading shrinks this far to stay on one line, no further

    @property
    def two_line_touch(self) -> float:
        """A button high enough for a label that wraps to two lines at the smallest body size."""
        return max(self.touch, self.line * 2 + self.gap * 1.5)

    @property
    def action(self) -> float:
        """Height of a row of action buttons: room for two-line labels in large text."""
        return self.two_line_touch if self.large_text else self.touch

    @property
    def portrait(self) -> bool:
        return self.height > self.width

    def least_size(self, base: float) -> float:
        """The smallest size a text of `base` size may be shrunk to when its box is tight."""
        least = self.least_body if base >= self.font_body - 0.01 else self.least_text
        if self.large_text:
            # Large text stays larger than normal text at full size (its base is 1.3x that),
            # by more than a rounding to whole pixels.
            least = max(least, base * 0.85)
        return min(base, least)

    def mm(self, value: float) -> float:
        return value * self.dpi / 25.4

    def px_to_mm(self, px: float) -> float:
        return px * 25.4 / self.dpi


def make_theme(size: tuple[float, float], dpi: float, high_contrast: bool = False,
               large_text: bool = False) -> Theme:
    """The theme for a window of `size` px on a panel of `dpi`."""
    w, h = max(1, int(size[0])), max(1, int(size[1]))
    dpi = dpi if dpi and dpi > 0 else 96.0
    mm = dpi / 25.4
    short, long_ = min(w, h), max(w, h)
    # 1.0 on the 7" 800x480 panel, growing with bigger windows (sub-linearly: a big
    # monitor is also further from the eyes, but not proportionally).
    scale = min(long_ / 800, short / 480) ** 0.85
    grow = 1.3 if large_text else 1.0
    body = max(MIN_BODY_MM * 1.15 * mm, 20 * scale) * grow
    small = max(body * 0.8, MIN_TEXT_MM * 1.1 * mm * grow)
    # Keys are sized for fingers, which large text does not change: their labels grow inside.
    key = max(MIN_KEY_MM * mm, short / 7.2)
    touch = max(MIN_KEY_MM * mm, short / 8.0)
    small_touch = max(MIN_TOUCH_MM * mm, short / 11.0)
    return Theme(
        palette=HIGH_CONTRAST if high_contrast else NORMAL,
        high_contrast=high_contrast, large_text=large_text,
        width=w, height=h, dpi=dpi,
        font_small=small, font_body=body, font_title=body * 1.4, font_huge=body * 2.0,
        font_key=min(key * 0.45, body * 1.8) * (1.2 if large_text else 1.0),
        key=key, key_width=key * (1.5 if h > w else 1.3), touch=touch, small_touch=small_touch,
        pad=max(2.0 * mm, short / 60), gap=max(1.2 * mm, short / 100),
        header=small_touch + 2 * max(0.8 * mm, short / 150),
        least_text=MIN_TEXT_MM * mm * grow, least_body=MIN_BODY_MM * mm * grow,
        line=math.ceil(max(MIN_BODY_MM * mm * grow, body * 0.85 if large_text else 0)) * 1.5 + 1,
        # Large text shrinks one-line labels less, so that they stay larger than in normal text.
        single_floor=0.86 if large_text else 0.7,
    )
