"""Barcode symbols for the counter's on-screen hand-over: text in, bar/space widths out.

Pure: the counter screen draws the widths as rectangles, so the symbol a staff hand scanner
reads is exactly what is encoded here, and a test decodes a screenshot of it with zbar.
Libraries in Japan label patron cards in NW-7 (Codabar) most often, some in Code 39 or
Code 128; the site picks one (`counter.barcode_symbology`).

`encode` returns `Symbol.widths`: module counts of alternating bar, space, bar, ...
starting and ending with a bar, without the quiet zones (the drawing adds them:
`QUIET_MODULES` on each side). NW-7 and Code 39 are two-width codes drawn at a wide:narrow
ratio of 3:1 with a one-module gap between characters.
"""

from __future__ import annotations

from dataclasses import dataclass

SYMBOLOGIES = ("nw7", "code39", "code128")
WIDE = 3                    # two-width codes: wide elements are this many modules
QUIET_MODULES = 10          # each side; ISO/IEC 15417 and 16388 ask for at least 10 X


class SymbolError(ValueError):
    """The text cannot be written in this symbology."""


@dataclass(frozen=True)
class Symbol:
    symbology: str
    text: str                       # what a scanner reports (NW-7 start/stop characters included)
    widths: tuple[int, ...]         # bar, space, bar, ... in modules; odd count, bars first and last

    @property
    def modules(self) -> int:
        return sum(self.widths)


# -- NW-7 / Codabar: 7 elements a character (4 bars, 3 spaces), 1 = wide --------------------------

_CODABAR = {
    "0": 0x003, "1": 0x006, "2": 0x009, "3": 0x060, "4": 0x012, "5": 0x042, "6": 0x021, "7": 0x024,
    "8": 0x030, "9": 0x048, "-": 0x00C, "$": 0x018, ":": 0x045, "/": 0x051, ".": 0x054, "+": 0x015,
    "A": 0x01A, "B": 0x029, "C": 0x00B, "D": 0x00E,
}
CODABAR_GUARDS = "ABCD"


def _two_width(bits: int, count: int) -> list[int]:
    return [WIDE if bits >> (count - 1 - i) & 1 else 1 for i in range(count)]


def _codabar(text: str, guards: str) -> Symbol:
    if len(guards) != 2 or any(g not in CODABAR_GUARDS for g in guards):
        raise SymbolError("NW-7 start/stop must be two of A, B, C, D")
    if not text or any(c not in _CODABAR or c in CODABAR_GUARDS for c in text):
        raise SymbolError("NW-7 carries digits and - $ : / . + only")
    full = guards[0] + text + guards[1]
    widths: list[int] = []
    for i, c in enumerate(full):
        if i:
            widths.append(1)                # the inter-character gap
        widths += _two_width(_CODABAR[c], 7)
    return Symbol("nw7", full, tuple(widths))


# -- Code 39: 9 elements a character (5 bars, 4 spaces), three of them wide ------------------------

_CODE39_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-. $/+%"
_CODE39_BITS = (
    0x034, 0x121, 0x061, 0x160, 0x031, 0x130, 0x070, 0x025, 0x124, 0x064,
    0x109, 0x049, 0x148, 0x019, 0x118, 0x058, 0x00D, 0x10C, 0x04C, 0x01C,
    0x103, 0x043, 0x142, 0x013, 0x112, 0x052, 0x007, 0x106, 0x046, 0x016,
    0x181, 0x0C1, 0x1C0, 0x091, 0x190, 0x0D0, 0x085, 0x184, 0x0C4, 0x0A8,
    0x0A2, 0x08A, 0x02A,
)
_CODE39 = dict(zip(_CODE39_CHARS, _CODE39_BITS)) | {"*": 0x094}


def _code39(text: str) -> Symbol:
    if not text or any(c not in _CODE39 or c == "*" for c in text):
        raise SymbolError("Code 39 carries 0-9, A-Z, space and - . $ / + % only")
    widths: list[int] = []
    for i, c in enumerate("*" + text + "*"):
        if i:
            widths.append(1)
        widths += _two_width(_CODE39[c], 9)
    return Symbol("code39", text, tuple(widths))


# -- Code 128: subset C for pairs of digits, subset B otherwise ------------------------------------

_CODE128 = (
    "212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312", "132212", "221213",
    "221312", "231212", "112232", "122132", "122231", "113222", "123122", "123221", "223211", "221132",
    "221231", "213212", "223112", "312131", "311222", "321122", "321221", "312212", "322112", "322211",
    "212123", "212321", "232121", "111323", "131123", "131321", "112313", "132113", "132311", "211313",
    "231113", "231311", "112133", "112331", "132131", "113123", "113321", "133121", "313121", "211331",
    "231131", "213113", "213311", "213131", "311123", "311321", "331121", "312113", "312311", "332111",
    "314111", "221411", "431111", "111224", "111422", "121124", "121421", "141122", "141221", "112214",
    "112412", "122114", "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111",
    "111242", "121142", "121241", "114212", "124112", "124211", "411212", "421112", "421211", "212141",
    "214121", "412121", "111143", "111341", "131141", "114113", "114311", "411113", "411311", "113141",
    "114131", "311141", "411131", "211412", "211214", "211232", "2331112",
)
_CODE_B, _START_B, _START_C, _STOP = 100, 104, 105, 106


def _code128(text: str) -> Symbol:
    if not text or any(not 32 <= ord(c) <= 126 for c in text):
        raise SymbolError("Code 128 here carries printable ASCII only")
    values: list[int]
    if text.isdigit() and len(text) >= 2:
        even = text[: len(text) - len(text) % 2]
        values = [_START_C] + [int(even[i:i + 2]) for i in range(0, len(even), 2)]
        if len(text) % 2:
            values += [_CODE_B, ord(text[-1]) - 32]
    else:
        values = [_START_B] + [ord(c) - 32 for c in text]
    check = (values[0] + sum(i * v for i, v in enumerate(values[1:], 1))) % 103
    widths = [int(w) for v in (*values, check, _STOP) for w in _CODE128[v]]
    return Symbol("code128", text, tuple(widths))


def encode(text: str, symbology: str = "nw7", codabar_guards: str = "AA") -> Symbol:
    """The symbol for `text`; SymbolError when the symbology cannot carry it."""
    if symbology == "nw7":
        return _codabar(text, codabar_guards)
    if symbology == "code39":
        return _code39(text)
    if symbology == "code128":
        return _code128(text)
    raise SymbolError(f"unknown symbology {symbology!r}; known: {', '.join(SYMBOLOGIES)}")


def module_mm(modules: int, available_mm: float, min_mm: float = 0.25, max_mm: float = 0.5) -> float | None:
    """The module width (mm) to draw `modules` (quiet zones included) in `available_mm`:
    as wide as fits up to `max_mm` (hand scanners read 0.33-0.5 mm modules from a screen
    best); None when even `min_mm` does not fit."""
    if modules <= 0:
        return None
    width = min(max_mm, available_mm / modules)
    return width if width >= min_mm else None
